"""Losses for confidence-map heads: plain MSE and online hard keypoint mining (OHKM).

OHKM (``trainer_config.online_hard_keypoint_mining``) pushes training toward the body parts the
network currently gets most wrong, by adding an extra, up-weighted loss on the hardest channels.
The training step adds :func:`ohkm_loss` to :func:`confmap_loss` when ``online_mining`` is on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def confmap_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element of (B, C, h, w) maps (computed in float32)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return F.mse_loss(pred.float(), target.float())


def ohkm_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    hard_to_easy_ratio: float = 2.0,
    min_hard_keypoints: int = 2,
    max_hard_keypoints: int | None = None,
    loss_scale: float = 5.0,
) -> torch.Tensor:
    """The OHKM term to add to the MSE loss.

    Exactly:

    1. per-channel losses ``l_c`` = mean squared error of channel ``c`` over (B, h, w);
    2. a channel is *hard* when ``l_c >= hard_to_easy_ratio * min(l)`` and ``l_c > 0`` (a zero
       loss is never hard; if the easiest channel has zero loss every non-zero one is hard, the
       limit of the ratio rule);
    3. ``k = clamp(#hard, min_hard_keypoints, max_hard_keypoints)``, also capped at the number
       of channels (``max_hard_keypoints`` None means no cap);
    4. the ``k`` largest losses are scaled by ``loss_scale`` and averaged:
       ``loss_scale * mean(top_k(l))``.

    This is SLEAP's normalisation (sum of scaled hard squared errors over ``B * h * w * k``
    elements). Total loss = ``confmap_loss + ohkm_loss``.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"pred and target must be equal (B, C, h, w), got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}"
        )
    if min_hard_keypoints < 0 or (max_hard_keypoints is not None and max_hard_keypoints < 1):
        raise ValueError(
            "min_hard_keypoints must be >= 0 and max_hard_keypoints >= 1 (or None), got "
            f"{min_hard_keypoints}, {max_hard_keypoints}"
        )
    per_channel = (pred.float() - target.float()).square().mean(dim=(0, 2, 3))  # (C,)
    n_channels = per_channel.numel()
    with torch.no_grad():
        easiest = per_channel.min()
        is_hard = (per_channel >= hard_to_easy_ratio * easiest) & (per_channel > 0)
        n_hard = int(is_hard.sum())
    upper = n_channels if max_hard_keypoints is None else min(max_hard_keypoints, n_channels)
    k = min(max(n_hard, min_hard_keypoints), upper)
    if k == 0:
        return per_channel.sum() * 0.0
    hardest = torch.topk(per_channel, k).values
    return loss_scale * hardest.mean()
