"""Failures the pipeline reports as one line rather than a traceback: a full disk, a stop signal.

The command line (``pipeline_lib.cli``) and the workflow's job scripts (``workflow/scripts/
_common.py``) both turn these into the same message and a non-zero exit through
:func:`failure_line`, so a user sees one sentence naming the file or the signal, whichever way
the stage was started.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: errno values that mean "the disk (or the user's quota) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Free bytes below which a failed write counts as a full disk even when the writer's error
#: names no errno (torch.save reports a short write as "unexpected pos ...").
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(OSError):
    """A write failed because the file system is full; names the file being written."""


class KnownFailure(RuntimeError):
    """A failure whose message says all a user needs (e.g. a run folder in use): no traceback."""


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM from a scheduler's time limit, SIGINT from Ctrl-C) ended a stage.

    A ``KeyboardInterrupt`` so that no ``except Exception`` on the way swallows it, and
    context managers such as the atomic writers still remove their partial files.
    """

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        super().__init__(
            message or f"Interrupted by {self.signal_name}; rerun the same command to start again"
        )

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, without looping."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _says_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc)
    # HDF5 reports the errno inside its message and not always as the exception's errno.
    return "No space left on device" in text or "errno = 28," in text


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still use in ``folder``'s file system (None: unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_blocks == 0:  # some network and FUSE file systems report no sizes at all
        return None
    return st.f_bavail * st.f_frsize


def is_disk_full(exc: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether ``exc`` (or an exception it came from) means the disk was full.

    With ``folder``, an OSError or RuntimeError without an errno also counts when that folder's
    file system is (nearly) full right now: some writers (torch.save) report a short write
    without saying why. Call it before the partial file is deleted, which frees the space.
    """
    if any(_says_disk_full(e) for e in _chain(exc)):
        return True
    if folder is None or not isinstance(exc, OSError | RuntimeError):
        return False
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def disk_full_error(exc: BaseException, path: str | os.PathLike) -> DiskFullError:
    """The one-line error for a write of ``path`` that hit a full disk (raise it from exc)."""
    code = next(
        (e.errno for e in _chain(exc) if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS),
        errno.ENOSPC,
    )
    reason = "Disk quota exceeded" if code == errno.EDQUOT else "No space left on device"
    return DiskFullError(code, f"{reason} while writing {path}", str(path))


def require_free_space(path: str | os.PathLike, nbytes: int) -> None:
    """Raise :class:`DiskFullError` naming ``path`` unless its folder has ``nbytes`` free.

    For writers that cannot recover from a failed write: HDF5 leaves a file whose write
    failed in a state that crashes the process (segfault) when the file is closed or freed, so
    the stream writer checks for room before each append instead of finding out by failing.
    """
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    if free is not None and free < nbytes:
        raise disk_full_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)


@contextlib.contextmanager
def writing(path: str | os.PathLike, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Run the block that writes ``path``; on any failure call ``cleanup`` (remove the partial
    file), and report a full disk as :class:`DiskFullError` naming ``path``.

    The disk is checked before ``cleanup`` runs, as removing the partial file frees the space.
    """
    try:
        yield
    except BaseException as exc:
        full = is_disk_full(exc, os.path.dirname(os.path.abspath(path)))
        if cleanup is not None:
            cleanup()
        if full and find_disk_full(exc) is None:
            raise disk_full_error(exc, path) from exc
        raise


def find_disk_full(exc: BaseException) -> DiskFullError | None:
    """The :class:`DiskFullError` ``exc`` is or came from, if any."""
    return next((e for e in _chain(exc) if isinstance(e, DiskFullError)), None)


def failure_line(exc: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for a failure known to need no traceback; None for any other.

    A full disk that no writer named (a library wrote the file itself) still gets its line,
    naming the file when the error carries one.
    """
    if isinstance(exc, Interrupted):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(signal.SIGINT).args[0], 128 + signal.SIGINT
    if isinstance(exc, KnownFailure):
        return str(exc), 1
    named = find_disk_full(exc)
    if named is not None:
        return named.strerror, 1
    if any(_says_disk_full(e) for e in _chain(exc)):
        where = next((e.filename for e in _chain(exc) if getattr(e, "filename", None)), None)
        return "No space left on device" + (f" while writing {where}" if where else ""), 1
    return None


def exit_after_disk_full(code: int) -> None:
    """End the process now, skipping the interpreter's teardown.

    HDF5 crashes (segfault) when it frees a file whose close failed on a full disk, which the
    teardown would do; the message is already printed and every writer has removed its partial
    file by now, so only stdio and the log handlers need flushing first.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signum)


def sigterm_raises() -> contextlib.AbstractContextManager[None]:
    """While inside, SIGTERM raises :class:`Interrupted` as Ctrl-C raises KeyboardInterrupt.

    Python's default for SIGTERM ends the process on the spot, with no message and with
    ``finally`` blocks skipped; a scheduler's time limit then looks like a silent death.
    """
    return sigterm_handler(_raise_interrupted)


@contextlib.contextmanager
def sigterm_handler(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` handles SIGTERM while inside; the previous handler is restored on leaving.

    Only the main thread can install signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
