"""Device and precision choice shared by training and inference: CUDA, then Apple MPS, then
CPU; bf16 autocast where the CPU does bf16 in hardware.

torch is imported inside the functions so that the command line can list the choices
(``PRECISIONS``) without paying for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")


def pick_device(requested: str | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (or None) to the best available device; validate explicit choices."""
    import torch

    if requested in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"Device '{requested}' was requested but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"Device '{requested}' was requested but MPS is not available here")
    return device


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), where bf16
    autocast makes convolutions several times faster. Read from /proc/cpuinfo (Linux); other
    systems report False."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(requested: str | None, device: torch.device) -> str:
    """Lightning precision for a training run. ``"auto"`` (or None) picks bf16 mixed precision
    on CPUs with native bf16 and full fp32 everywhere else (GPUs included: not measured here).
    """
    if requested not in (None, *PRECISIONS):
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested not in (None, "auto"):
        return str(requested)
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16-mixed"
    return "32"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a resolved precision on ``device`` (None: run in fp32).

    fp16 autocast is only used on CUDA: CPUs have no fast fp16 convolutions.
    """
    import torch

    if precision == "bf16-mixed":
        return torch.bfloat16
    if precision == "16-mixed" and device.type == "cuda":
        return torch.float16
    return None
