"""Unpack the carried system libraries that the GPU machine's image lacks; print their folder.

skia-python (sleap-nn crops instances with it) links libEGL, libGL and the X11 client
libraries, which a headless CUDA image need not have. ``make wheelhouse`` downloads their Debian
packages into build/gpu-check/debs; run.sh calls this before the check and puts the printed
folder on LD_LIBRARY_PATH. Only packages whose library the loader cannot already find are
unpacked (all of them with ``--force``, which the rehearsal uses to prove they load), and into a
private folder, never into /.

    python syslibs.py DEBS_DIR DEST [--force]
"""

from __future__ import annotations

import argparse
import ctypes
import io
import tarfile
from pathlib import Path

#: Debian package -> the library it provides.
LIBS = {
    "libegl1": "libEGL.so.1",
    "libgl1": "libGL.so.1",
    "libglvnd0": "libGLdispatch.so.0",
    "libglx0": "libGLX.so.0",
    "libx11-6": "libX11.so.6",
    "libxcb1": "libxcb.so.1",
    "libxau6": "libXau.so.6",
    "libxdmcp6": "libXdmcp.so.6",
    "libbsd0": "libbsd.so.0",
    "libmd0": "libmd.so.0",
}
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")


def loadable(soname: str) -> bool:
    """True when the dynamic loader finds ``soname`` as things stand."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def unpack_deb(deb: Path, dest: Path) -> None:
    """Extract a .deb's files (its ``data.tar.*`` member of the ar archive) under ``dest``."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb}: not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                tar.extractall(dest, filter="data")
            return
        pos += 60 + size + (size % 2)
    raise ValueError(f"{deb}: no data.tar member")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("debs", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--force", action="store_true", help="unpack even what the loader finds")
    args = ap.parse_args()
    unpacked = []
    for deb in sorted(args.debs.glob("*.deb")):
        package = deb.name.split("_")[0]
        soname = LIBS.get(package)
        if soname and (args.force or not loadable(soname)):
            unpack_deb(deb, args.dest)
            unpacked.append(package)
    if unpacked:
        print(":".join(str(args.dest / d) for d in LIB_DIRS))


if __name__ == "__main__":
    main()
