"""Will the preprocessed samples fit in memory? Estimate before decoding, not after swapping.

``torch_dataset_cache_img_memory`` holds every sample of both splits as uint8. Its size follows
from the sample index alone (image shape, instance and node counts, sample count), so it is
checked against the memory the system reports as available before any frame is decoded; a
too-large dataset fails in seconds with the numbers and the alternative, instead of thrashing
or being killed by the OOM killer an hour in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline_lib.data.datasets import SampleIndex

log = logging.getLogger(__name__)

GIB = float(1 << 30)
MEMORY_FRACTION = 0.8  # of the available memory the samples may take


class InsufficientMemoryError(MemoryError):
    """The in-memory samples would not fit; the message gives both sizes and what to use."""


def sample_bytes(index: SampleIndex) -> int:
    """Bytes the samples of ``index`` take in memory: uint8 images, float32 points, int64 ids."""
    c, h, w = index.image_shape
    per_sample = c * h * w + index.max_instances * index.n_nodes * 2 * 4 + index.max_instances * 8
    return int(len(index) * per_sample)


def gib(n_bytes: int) -> str:
    """Bytes as GiB with enough digits to tell small sizes apart (0.00098 GiB, 12.50 GiB)."""
    value = n_bytes / GIB
    return f"{value:.2f} GiB" if value >= 0.1 else f"{value:.2g} GiB"


def available_memory_bytes() -> int:
    """Memory available to new allocations without swapping.

    ``MemAvailable`` of ``/proc/meminfo`` (Linux; counts reclaimable page cache); elsewhere the
    free physical pages from ``os.sysconf``.
    """
    meminfo = Path("/proc/meminfo")
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def check_fits_in_memory(
    indexes: Sequence[SampleIndex],
    available: int | None = None,
    fraction: float = MEMORY_FRACTION,
) -> int:
    """Raise :class:`InsufficientMemoryError` unless the samples fit; return their size.

    ``available`` overrides the measured available memory (bytes), for tests and for callers
    that know better (e.g. a cgroup limit).
    """
    needed = sum(sample_bytes(ix) for ix in indexes)
    have = available_memory_bytes() if available is None else int(available)
    n = sum(len(ix) for ix in indexes)
    log.info(
        "torch_dataset_cache_img_memory: %d samples of %s need %s; %s available",
        n,
        "x".join(str(s) for s in indexes[0].image_shape) if indexes else "-",
        gib(needed),
        gib(have),
    )
    if needed > fraction * have:
        raise InsufficientMemoryError(
            f"data_pipeline_fw torch_dataset_cache_img_memory needs about {gib(needed)} "
            f"for {n} preprocessed samples, but only {gib(have)} of memory is available "
            f"(at most {fraction:.0%} of it may be used). Set data_config.data_pipeline_fw to "
            "torch_dataset_cache_img_disk (samples cached as PNG files) or torch_dataset "
            "(decoded on the fly), or lower preprocessing.scale."
        )
    return needed
