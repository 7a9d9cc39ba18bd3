"""Give jobs that run side by side on one multi-GPU machine different GPUs.

Snakemake counts GPUs (``resources: gpu=1`` against ``--resources gpu=N``) but does not say
*which* card a job may use, and without ``CUDA_VISIBLE_DEVICES`` every job would start on GPU 0
(or, training with ``devices: auto``, on all of them). SLURM sets ``CUDA_VISIBLE_DEVICES`` for
its jobs; on a workstation nobody does. So a GPU job claims cards itself before CUDA starts:

* if ``CUDA_VISIBLE_DEVICES`` is already set (a scheduler or the user chose), it is respected
  and nothing is claimed;
* otherwise the machine's GPUs are listed with ``nvidia-smi`` (which needs no CUDA context, so
  the choice is made before torch touches CUDA), most free memory first, and the job takes an
  exclusive ``flock`` on one lock file per card it uses, skipping cards another job holds;
* ``CUDA_VISIBLE_DEVICES`` is then set to the claimed cards, so every later device choice
  (``pick_device``, Lightning's ``devices: auto``) sees only them.

The locks are held for the life of the process and the kernel drops them when it exits, even
on SIGKILL, so a killed job never leaves a card marked busy. When every card is held (more
jobs than cards, e.g. ``gpu=`` raised above the card count), the job waits up to ``wait_s`` for
one and then shares the card with the most free memory, with a warning naming it: slower, but
no work is lost.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: Folder of the per-card lock files; jobs of one machine must agree on it.
LOCK_DIR_ENV = "PIPELINE_GPU_LOCK_DIR"

# Claimed lock files, kept open (and so locked) until the process exits.
_HELD: list[IO[bytes]] = []


@dataclass(frozen=True)
class GpuInfo:
    """One card as the driver reports it."""

    index: int
    free_mb: int


def list_gpus(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[GpuInfo]:
    """The machine's NVIDIA GPUs with their free memory, from ``nvidia-smi``; [] without one."""
    try:
        out = run(
            ["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            free = int(parts[1]) if parts[1].isdigit() else 0
            gpus.append(GpuInfo(int(parts[0]), free))
    return gpus


def default_lock_dir() -> Path:
    """``$PIPELINE_GPU_LOCK_DIR``, else a per-user folder in the system temp directory."""
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"pipeline_lib-gpu-locks-{os.getuid()}"


def claim_gpus(
    count: int,
    gpus: Sequence[GpuInfo] | None = None,
    lock_dir: str | os.PathLike | None = None,
    environ: MutableMapping[str, str] | None = None,
    wait_s: float = 60.0,
    poll_s: float = 1.0,
) -> list[int] | None:
    """Claim ``count`` cards for this process and make them the only ones CUDA will show.

    Args:
        count: cards the job asked for (its ``gpu`` resource); 0 claims nothing.
        gpus: the machine's cards (default: :func:`list_gpus`); tests pass a fake list.
        lock_dir: folder of the per-card lock files (default: :func:`default_lock_dir`).
        environ: where ``CUDA_VISIBLE_DEVICES`` is read and set (default ``os.environ``).
        wait_s: how long to wait for held cards to be freed before sharing one.
        poll_s: pause between attempts while waiting.

    Returns:
        The claimed card indices (also written to ``CUDA_VISIBLE_DEVICES``), or None when there
        was nothing to choose: no GPU job, ``CUDA_VISIBLE_DEVICES`` already set, or no card.
    """
    environ = os.environ if environ is None else environ
    if count <= 0:
        return None
    if environ.get("CUDA_VISIBLE_DEVICES") is not None:
        log.info(
            "CUDA_VISIBLE_DEVICES=%s is set; using those GPUs", environ["CUDA_VISIBLE_DEVICES"]
        )
        return None
    gpus = list(list_gpus() if gpus is None else gpus)
    if not gpus:
        return None
    count = min(count, len(gpus))
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    order = sorted(gpus, key=lambda g: (-g.free_mb, g.index))
    claimed: list[int] = []
    deadline = time.monotonic() + wait_s
    while True:
        for gpu in order:
            if gpu.index not in claimed and _try_lock(folder / f"gpu{gpu.index}.lock"):
                claimed.append(gpu.index)
                if len(claimed) == count:
                    break
        if len(claimed) == count or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if len(claimed) < count:
        shared = [g.index for g in order if g.index not in claimed][: count - len(claimed)]
        log.warning(
            "All GPUs are held by other jobs (locks in %s); sharing GPU %s. Set the gpu "
            "resource limit (--resources gpu=N) to the number of cards to avoid this.",
            folder,
            ", ".join(map(str, shared)),
        )
        claimed.extend(shared)
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in claimed)
    log.info("Claimed GPU %s (CUDA_VISIBLE_DEVICES set)", environ["CUDA_VISIBLE_DEVICES"])
    return claimed


def _try_lock(path: Path) -> bool:
    """Take an exclusive, non-blocking flock on ``path``; keep it open (held) on success."""
    handle = open(path, "a+b")  # noqa: SIM115 - kept open on purpose: the open file is the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _HELD.append(handle)
    return True


def release_all() -> None:
    """Drop every card this process claimed (tests; a job simply exits)."""
    while _HELD:
        _HELD.pop().close()
