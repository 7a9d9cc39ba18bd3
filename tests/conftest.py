"""Shared test fixtures: where the real datasets live, and small helpers to reach them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PIPELINE_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
SHARED_DATA = SHARED_DIR / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ``../shared/data``; skips the test cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set PIPELINE_SHARED_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """Root of ``../shared/reference`` (config guides); skips where absent."""
    ref = SHARED_DIR / "reference"
    if not ref.is_dir():
        pytest.skip(f"shared reference files not found at {ref}")
    return ref


@pytest.fixture(autouse=True, scope="session")
def _limit_torch_threads() -> None:
    """Keep each test process to the two cores CI has, without oversubscribing."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))


#: Set to 1 to run the bodies of the ``gpu`` tests on the CPU (the GPU check's rehearsal).
GPU_TESTS_ON_CPU = "PIPELINE_GPU_TESTS_ON_CPU"


@pytest.fixture(scope="session")
def gpu_device() -> str:
    """``"cuda"`` for the ``gpu``-marked tests; skips them, saying why, without a CUDA GPU.

    With ``PIPELINE_GPU_TESTS_ON_CPU=1`` they run on the CPU instead, so that the GPU check's
    rehearsal (bench/gpu_check/rehearse.sh) proves their data paths and code before a lent GPU
    is spent on them.
    """
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get(GPU_TESTS_ON_CPU) == "1":
        return "cpu"
    pytest.skip(
        "CUDA GPU not available (these tests run on a lent GPU through bench/gpu_check/run.sh; "
        f"{GPU_TESTS_ON_CPU}=1 runs them on the CPU)"
    )
