"""One training per run directory: an exclusive lock held for the life of a training job.

Snakemake's own lock can be lifted (``snakemake --unlock``) while a run is still alive, and two
commands may name the same folder; two trainings writing the same ``last.ckpt`` would each
resume from the other's state. Both trainers (pose models, ``training.train``; the tracking
transformer, ``tracking.gtr.training``) therefore hold :func:`run_dir_lock` while they run.

The lock is ``fcntl.flock`` on :data:`LOCK_FILE` in the run's working folder (``checkpoints/``,
which the resume logic owns anyway, so the published folder's contents stay as they were). The
operating system releases it when the holder's process ends in any way, SIGKILL included, so a
killed job never leaves a stale lock behind. The file records the holder's pid and host for the
message a second job gets.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from pipeline_lib.errors import KnownFailure
from pipeline_lib.training.run_dir import WORK_DIR

LOCK_FILE = ".training.lock"


class RunDirLocked(KnownFailure):
    """Another process is training into the same run directory."""


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the run directory's training lock while inside; yields the lock file's path.

    Raises :class:`RunDirLocked`, naming the folder and the holder's pid and host, at once and
    before anything is written, when another process holds it. Only rank 0 of a multi-device
    run takes the lock (the others are its own children, started by Lightning).
    """
    run_dir = Path(run_dir)
    path = run_dir / WORK_DIR / LOCK_FILE
    if rank_zero_only.rank != 0:  # the other processes of a multi-device run: rank 0 holds it
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirLocked(
                f"Run directory {run_dir} is in use by another training ({_holder(fd)}); wait "
                "for it to finish or stop it. A killed training releases the folder by itself."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    """What the lock file says about its holder ("pid 123 on host node7")."""
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    return text or "holder unknown"
