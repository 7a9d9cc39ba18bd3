"""Device choice shared by training and inference: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch


def pick_device(requested: str | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (or None) to the best available device; validate explicit choices."""
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
