"""Atomic file output: write to a hidden temporary name beside the target, then rename.

A killed job therefore never leaves a file under its final name that looks complete, and a
file that already existed is only replaced once the new one is fully written.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.errors import writing
from pipeline_lib.io.json_io import dumps_strict


def temporary_sibling(final: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh, not yet existing hidden path in ``final``'s folder (created if needed) to build
    ``final`` under before renaming it into place.

    The name keeps the target's suffix (libraries such as sleap-io and h5py pick the format
    from it); an unwritable folder is refused up front, naming it.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise type(exc)(  # message only: the line a user sees starts with no "[Errno N]"
            f"Cannot create the output folder {final.parent} for {final.name}: "
            f"{exc.strerror or exc}"
        ) from exc
    if not os.access(final.parent, os.W_OK):
        raise PermissionError(f"Output folder is not writable: {final.parent}")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final.stem}.", suffix=_temporary_suffix(final, suffix), dir=final.parent
        )
    except OSError as exc:  # read-only file system, ACLs, quota: os.access does not see these
        raise PermissionError(
            f"Output folder is not writable: {final.parent} ({exc.strerror or exc})"
        ) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers that refuse to overwrite (h5py 'w-', sleap-io) get a fresh name
    return tmp


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Raise OSError naming ``folder`` unless files can be made in it (or, where it does not
    exist yet, in the nearest folder above it that does, which must be a folder).

    Used before any work starts, e.g. when the workflow is parsed, so a dry run learns that its
    outputs cannot be written; it leaves nothing behind, creating neither ``folder`` nor a file.
    """
    folder = Path(os.path.abspath(folder))
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        why = "it is a file" if existing == folder else f"{existing} is a file"
        raise NotADirectoryError(f"Cannot create the output folder {folder}: {why}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
    except OSError as exc:  # permissions, read-only file system, quota
        where = folder if existing == folder else f"{folder} (in {existing})"
        raise PermissionError(
            f"Output folder is not writable: {where}: {exc.strerror or exc}"
        ) from exc
    os.close(fd)
    os.unlink(probe)


def _temporary_suffix(final: Path, suffix: str | None) -> str:
    """End of a temporary name for ``final``: ``.tmp`` plus the suffix its writer needs."""
    suffix = final.suffix if suffix is None else suffix
    if final.name.endswith(".pkg.slp"):
        suffix = ".pkg.slp"
    return f".tmp{suffix}"


def stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Temporary siblings of ``final`` left by writers that were killed before renaming.

    Only a caller that owns ``final`` exclusively may treat these as stale, such as a Snakemake
    job about to write its declared output: no other writer of that file can be running.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    # tempfile.mkstemp puts 8 characters of [a-z0-9_] between the prefix and the suffix.
    pattern = re.compile(
        re.escape(f".{final.stem}.") + r"[a-z0-9_]{8}" + re.escape(_temporary_suffix(final, None))
    )
    return sorted(p for p in final.parent.iterdir() if pattern.fullmatch(p.name))


def remove_stale_temporaries(finals: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete the :func:`stale_temporaries` of each of ``finals``; returns what was deleted.

    A SIGKILL gives the writer no chance to clean up, so without this each killed job would
    leave its partial file (possibly gigabytes of predictions) beside the output for good.
    """
    removed = []
    for final in finals:
        for tmp in stale_temporaries(final):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over ``final`` on success.

    The temporary name keeps the target's suffix (libraries such as sleap-io and h5py pick the
    format from it). On any exception the temporary file is removed and ``final`` is untouched;
    a full disk is reported as :class:`~pipeline_lib.errors.DiskFullError` naming ``final``
    (the writers themselves rarely say which file they were writing).
    """
    final = Path(final)
    tmp = temporary_sibling(final, suffix)
    with writing(final, cleanup=lambda: tmp.unlink(missing_ok=True)):
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"Nothing was written to the temporary file for {final}")
        os.replace(tmp, final)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(
    path: str | os.PathLike,
    data: Any,
    indent: int = 2,
    why_null: Mapping[str, str] | None = None,
) -> None:
    """Write ``data`` as strict JSON atomically: a NaN or infinity becomes ``null``, explained
    under ``why_null`` in the file (reasons by key path, see :mod:`pipeline_lib.io.json_io`)."""
    write_text_atomic(path, dumps_strict(data, why_null, indent=indent) + "\n")


def write_yaml_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as block-style YAML atomically, keys in insertion order."""
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
