"""Identity (class) targets for multi-class models.

Multi-class models learn *who* an animal is (its track/class) alongside *where* its parts are, so
identities come out of a single frame without a tracker.

* Bottom-up (``multi_class_bottomup``): one class map per class. Each instance with a class
  draws a Gaussian (peak 1, ``sigma`` in model pixels) at every visible node, in its class's
  channel; channels keep the maximum over nodes and instances. At inference each part peak reads
  the class maps at its location (``pipeline_lib.inference.class_assignment``).
* Top-down (``multi_class_topdown``): one class vector per crop, a one-hot row.

Conventions: points are xy in model-input pixels, NaN = missing; grid cell ``(row i, col j)`` is at
model pixel ``(j * stride, i * stride)``; class id ``-1`` means the instance has no class.
"""

from __future__ import annotations

import torch

from pipeline_lib.data.confmaps import make_confmaps


def make_class_maps(
    points: torch.Tensor,
    class_ids: torch.Tensor,
    n_classes: int,
    grid_hw: tuple[int, int],
    stride: int,
    sigma: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Render per-class maps: Gaussians at every visible node of each classed instance.

    Args:
        points: (B, I, N, 2) xy in model-input pixels; NaN points draw nothing.
        class_ids: (B, I) long class index per instance; ``-1`` (no class) draws nothing, so an
            unclassed animal is background for every class channel.
        n_classes: number of class channels C.
        grid_hw, stride, sigma, dtype: as in :func:`pipeline_lib.data.confmaps.make_confmaps`.

    Returns:
        (B, C, h, w) maps in [0, 1].

    Instances are accumulated one at a time so memory stays at one (B, N, h, w) buffer.
    """
    if points.ndim != 4 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, I, N, 2), got {tuple(points.shape)}")
    class_ids = torch.as_tensor(class_ids, dtype=torch.long, device=points.device)
    if class_ids.shape != points.shape[:2]:
        raise ValueError(
            f"class_ids must be (B, I) = {tuple(points.shape[:2])}, got {tuple(class_ids.shape)}"
        )
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if class_ids.numel() and (class_ids.max() >= n_classes or class_ids.min() < -1):
        raise ValueError(f"class_ids must lie in [-1, {n_classes}), got {class_ids.tolist()}")
    b, n_inst = points.shape[:2]
    h, w = int(grid_hw[0]), int(grid_hw[1])
    out = torch.zeros((b, n_classes, h, w), dtype=dtype, device=points.device)
    for i in range(n_inst):
        # (B, h, w): this instance's nodes merged by maximum.
        inst_map = make_confmaps(points[:, i], (h, w), stride, sigma, dtype).amax(dim=1)
        onehot = class_vector_targets(class_ids[:, i], n_classes, dtype)  # (B, C)
        out = torch.maximum(out, onehot[:, :, None, None] * inst_map[:, None])
    return out


def class_vector_targets(
    class_ids: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One-hot class vectors (B, C) from class ids (B,); an id of ``-1`` gives an all-zero row.

    An all-zero row means "identity unknown", not "none of the classes": the loss must leave such
    rows out (mask on ``targets.sum(-1) > 0``) rather than score them with cross-entropy, whose
    value for an all-zero target is 0 anyway but which would still count the row in a mean, and
    rather than with a per-class binary loss, which would push every class probability to 0.
    """
    class_ids = torch.as_tensor(class_ids, dtype=torch.long)
    if class_ids.ndim != 1:
        raise ValueError(f"class_ids must be (B,), got {tuple(class_ids.shape)}")
    if class_ids.numel() and (class_ids.max() >= n_classes or class_ids.min() < -1):
        raise ValueError(f"class_ids must lie in [-1, {n_classes}), got {class_ids.tolist()}")
    classes = torch.arange(n_classes, device=class_ids.device)
    return (class_ids[:, None] == classes[None, :]).to(dtype)
