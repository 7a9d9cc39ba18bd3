"""Batched, on-device augmentation of images and their keypoints, driven by sleap-nn's
``data_config.augmentation_config``.

Why batched torch: augmenting after collation, on the training device, keeps DataLoader workers
cheap and lets the GPU do the warping. Geometry uses ``affine_grid`` / ``grid_sample``.

Conventions: images are float (B, C, H, W) in [0, 1]; points are (B, I, N, 2) xy in image
pixels with pixel centres on integer coordinates, NaN for missing. Every random parameter is
drawn **per sample** (sleap-nn augments one sample at a time, so this matches what it trains on),
from ``generator`` when given. An operation whose probability is 0 draws nothing and touches
nothing, so a config with every ``*_p = 0`` returns the inputs bitwise unchanged; a sample not
selected for an operation is bitwise unchanged by it. Points outside the image after a warp are
kept (not NaN-ed): target rendering decides what an out-of-frame point means.

Order: intensity (uniform noise, gaussian noise, contrast, brightness), one affine warp, random
erase, mixup.

Intensity (each applied with its own probability, result clamped to [0, 1]):

* uniform noise: add per-pixel noise ~ U(uniform_noise_min, uniform_noise_max);
* gaussian noise: add per-pixel noise ~ N(gaussian_noise_mean, gaussian_noise_std);
* contrast: ``mean + c * (img - mean)``, ``c ~ U(contrast_min, contrast_max)``, ``mean`` the
  sample's mean intensity (the usual definition; 1 is identity);
* brightness: ``b * img``, ``b ~ U(brightness_min, brightness_max)`` (1 is identity).

Geometric: one affine per sample, ``p' = c + s R(theta) (p - c) + t`` about the image centre
``c = ((W - 1) / 2, (H - 1) / 2)``; ``theta ~ U(rotation_min, rotation_max)`` degrees (positive
turns counter-clockwise as displayed, y axis down), ``s ~ U(scale_min, scale_max)``,
``t ~ (U(-1, 1) * translate_width * W, U(-1, 1) * translate_height * H)``. Which parts apply:

* ``rotation_p``, ``scale_p``, ``translate_p`` all None (classic configs): one draw with
  probability ``affine_p`` applies rotation, scale and translation together;
* otherwise each part whose own ``*_p`` is set is drawn independently with that probability, and
  the parts without one share a single ``affine_p`` draw. With the newer configs' ``rotation_p``
  and ``scale_p`` this means ``affine_p`` governs translation only. (``translate_p`` is not in the
  config guide but sleap-nn accepts it, so it is honoured too.)

Pixels and points go through exactly the same map; bilinear sampling, zeros outside the image.

Random erase (``erase_p``): a rectangle of area fraction ``~ U(erase_scale_min, erase_scale_max)``
and aspect ratio (w / h) ``~ U(erase_ratio_min, erase_ratio_max)`` at a uniform position is set to
0. Points are unchanged.

Mixup (``mixup_p``): the sample is blended with another sample of the batch,
``(1 - lam) * img + lam * other``, ``lam ~ U(mixup_lambda_min, mixup_lambda_max)``, and the other
sample's points are appended as extra instances: whenever mixup is enabled (``mixup_p > 0`` and
B > 1) the points come back as (B, 2 I, N, 2), instances ``I..2I-1`` being the partner's points
or NaN for samples not mixed. Single-instance training uses instance 0 only. With B == 1 there is
no partner and mixup is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

INTENSITY_DEFAULTS: dict[str, float] = {
    "uniform_noise_min": 0.0,
    "uniform_noise_max": 1.0,
    "uniform_noise_p": 0.0,
    "gaussian_noise_mean": 0.0,
    "gaussian_noise_std": 1.0,
    "gaussian_noise_p": 0.0,
    "contrast_min": 0.9,
    "contrast_max": 1.1,
    "contrast_p": 0.0,
    "brightness_min": 1.0,
    "brightness_max": 1.0,
    "brightness_p": 0.0,
}

GEOMETRIC_DEFAULTS: dict[str, float | None] = {
    "rotation_min": -15.0,
    "rotation_max": 15.0,
    "rotation_p": None,
    "scale_min": 0.9,
    "scale_max": 1.1,
    "scale_p": None,
    "translate_width": 0.0,
    "translate_height": 0.0,
    "translate_p": None,
    "affine_p": 0.0,
    "erase_scale_min": 0.0001,
    "erase_scale_max": 0.01,
    "erase_ratio_min": 1.0,
    "erase_ratio_max": 1.0,
    "erase_p": 0.0,
    "mixup_lambda_min": 0.01,
    "mixup_lambda_max": 0.05,
    "mixup_p": 0.0,
}


def _resolve(section: Mapping | None, defaults: dict, where: str) -> dict | None:
    """Fill defaults into a config subsection; unknown keys (typos) raise."""
    if section is None:
        return None
    unknown = sorted(set(section) - set(defaults))
    if unknown:
        raise ValueError(
            f"Unknown key(s) in augmentation_config.{where}: {unknown}; known: {sorted(defaults)}"
        )
    out = dict(defaults)
    out.update({k: v for k, v in section.items() if v is not None})
    return out


class _Random:
    """Draws from ``generator`` (on its own device) and moves results to the data's device."""

    def __init__(self, generator: torch.Generator | None, device: torch.device):
        self.generator = generator
        self.device = device
        self.source = generator.device if generator is not None else device

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.source).to(self.device)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.source).to(self.device)

    def uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * self.rand(*shape)

    def noise_uniform(self, low: float, high: float, shape: torch.Size) -> torch.Tensor:
        """Per-pixel U(low, high) drawn in one pass (``uniform``'s scale-and-shift costs two
        more passes over a full image batch)."""
        out = torch.empty(shape, device=self.source).uniform_(low, high, generator=self.generator)
        return out.to(self.device)

    def noise_normal(self, mean: float, std: float, shape: torch.Size) -> torch.Tensor:
        """Per-pixel N(mean, std) drawn in one pass."""
        out = torch.empty(shape, device=self.source).normal_(mean, std, generator=self.generator)
        return out.to(self.device)

    def chance(self, p: float, n: int) -> torch.Tensor:
        """Boolean (n,) mask, each True with probability p."""
        return self.rand(n) < p


def _apply_to(images: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    """Replace the selected samples by ``fn(selected)``; unselected ones stay bitwise equal."""
    idx = mask.nonzero(as_tuple=True)[0]
    if idx.numel() == 0:
        return images
    out = images.clone()
    out[idx] = fn(images[idx]).to(images.dtype)
    return out


def _intensity(images: torch.Tensor, cfg: dict, rng: _Random) -> torch.Tensor:
    b = images.shape[0]
    if cfg["uniform_noise_p"] > 0:
        mask = rng.chance(cfg["uniform_noise_p"], b)
        lo, hi = cfg["uniform_noise_min"], cfg["uniform_noise_max"]
        images = _apply_to(
            images, mask, lambda x: (x + rng.noise_uniform(lo, hi, x.shape)).clamp_(0.0, 1.0)
        )
    if cfg["gaussian_noise_p"] > 0:
        mask = rng.chance(cfg["gaussian_noise_p"], b)
        mean, std = cfg["gaussian_noise_mean"], cfg["gaussian_noise_std"]
        images = _apply_to(
            images, mask, lambda x: (x + rng.noise_normal(mean, std, x.shape)).clamp_(0.0, 1.0)
        )
    if cfg["contrast_p"] > 0:
        mask = rng.chance(cfg["contrast_p"], b)
        factor = rng.uniform(cfg["contrast_min"], cfg["contrast_max"], b)

        def contrast(x: torch.Tensor) -> torch.Tensor:
            f = factor[mask].view(-1, 1, 1, 1).to(x.dtype)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            return (mean + f * (x - mean)).clamp(0.0, 1.0)

        images = _apply_to(images, mask, contrast)
    if cfg["brightness_p"] > 0:
        mask = rng.chance(cfg["brightness_p"], b)
        factor = rng.uniform(cfg["brightness_min"], cfg["brightness_max"], b)
        images = _apply_to(
            images,
            mask,
            lambda x: (x * factor[mask].view(-1, 1, 1, 1).to(x.dtype)).clamp(0.0, 1.0),
        )
    return images


def _affine_params(
    cfg: dict, b: int, hw: tuple[int, int], rng: _Random
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-sample forward affine (B, 2, 3) in pixel coordinates and the mask of warped samples."""
    parts = ("rotation", "scale", "translate")
    own_p = {k: cfg[f"{k}_p"] for k in parts}
    if all(p is None for p in own_p.values()):
        bundled = list(parts)
    else:
        bundled = [k for k in parts if own_p[k] is None]
    applies: dict[str, torch.Tensor] = {}
    if bundled and cfg["affine_p"] > 0:
        shared = rng.chance(cfg["affine_p"], b)
        applies.update({k: shared for k in bundled})
    for k in parts:
        if own_p[k] is not None and own_p[k] > 0:
            applies[k] = rng.chance(own_p[k], b)
    if not applies:
        return None
    none = torch.zeros(b, dtype=torch.bool, device=rng.device)
    h, w = hw
    # Draw every parameter for every sample (fixed draw order -> reproducible), then neutralise
    # the parts a sample does not get.
    theta = rng.uniform(cfg["rotation_min"], cfg["rotation_max"], b).double()
    scale = rng.uniform(cfg["scale_min"], cfg["scale_max"], b).double()
    shift = (rng.rand(b, 2).double() * 2 - 1) * torch.tensor(
        [cfg["translate_width"] * w, cfg["translate_height"] * h],
        dtype=torch.float64,
        device=rng.device,
    )
    theta = torch.where(applies.get("rotation", none), theta, 0.0) * (math.pi / 180.0)
    scale = torch.where(applies.get("scale", none), scale, 1.0)
    shift = torch.where(applies.get("translate", none)[:, None], shift, 0.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Counter-clockwise on screen with y pointing down.
    lin = torch.stack((torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2)
    lin = lin * scale[:, None, None]
    centre = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=torch.float64, device=rng.device)
    offset = centre + shift - lin @ centre
    warped = torch.zeros(b, dtype=torch.bool, device=rng.device)
    for mask in applies.values():
        warped |= mask
    return torch.cat((lin, offset[:, :, None]), dim=-1), warped


def _warp_images(images: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Warp (B, C, H, W) by forward pixel-space affines (B, 2, 3) (align_corners=False)."""
    b, _, h, w = images.shape
    lin, off = forward[:, :, :2], forward[:, :, 2]
    inv = torch.linalg.inv(lin)
    # normalised = D @ pixel + e for pixel centres on integers with align_corners=False.
    d = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64, device=forward.device)
    e = torch.tensor([1.0 / w - 1.0, 1.0 / h - 1.0], dtype=torch.float64, device=forward.device)
    a = d[None, :, None] * inv / d[None, None, :]
    # n_in = D inv (D^-1 (n_out - e) - off) + e  ->  linear part a, constant part t.
    t = e - d * (inv @ (e / d + off).unsqueeze(-1)).squeeze(-1)
    theta = torch.cat((a, t[:, :, None]), dim=-1).to(images.dtype)
    grid = F.affine_grid(theta, [b, images.shape[1], h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _warp_points(points: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Apply (B, 2, 3) pixel-space affines to (B, I, N, 2) points; NaN stays NaN."""
    lin = forward[:, None, None, :, :2]
    off = forward[:, None, None, :, 2]
    out = (lin @ points.double().unsqueeze(-1)).squeeze(-1) + off
    return out.to(points.dtype)


def _geometric(
    images: torch.Tensor, points: torch.Tensor, cfg: dict, rng: _Random
) -> tuple[torch.Tensor, torch.Tensor]:
    b, _, h, w = images.shape
    params = _affine_params(cfg, b, (h, w), rng)
    if params is not None:
        forward, warped = params
        idx = warped.nonzero(as_tuple=True)[0]
        if idx.numel():
            images = images.clone()
            points = points.clone()
            images[idx] = _warp_images(images[idx], forward[idx])
            points[idx] = _warp_points(points[idx], forward[idx])
    if cfg["erase_p"] > 0:
        mask = rng.chance(cfg["erase_p"], b)
        area = rng.uniform(cfg["erase_scale_min"], cfg["erase_scale_max"], b) * (h * w)
        ratio = rng.uniform(cfg["erase_ratio_min"], cfg["erase_ratio_max"], b)
        eh = torch.sqrt(area / ratio).round().clamp(1, h)
        ew = torch.sqrt(area * ratio).round().clamp(1, w)
        y0 = torch.floor(rng.rand(b) * (h - eh + 1))
        x0 = torch.floor(rng.rand(b) * (w - ew + 1))
        boxes = torch.stack((y0, y0 + eh, x0, x0 + ew), dim=1).long()[mask].tolist()

        def erase(x: torch.Tensor) -> torch.Tensor:
            # ``x`` is _apply_to's gathered copy of the selected samples: safe to write into.
            for sample, (top, bottom, left, right) in zip(x, boxes, strict=True):
                sample[:, top:bottom, left:right] = 0.0  # touches only the erased pixels
            return x

        images = _apply_to(images, mask, erase)
    if cfg["mixup_p"] > 0 and b > 1:
        mask = rng.chance(cfg["mixup_p"], b)
        lam = rng.uniform(cfg["mixup_lambda_min"], cfg["mixup_lambda_max"], b)
        step = 1 + torch.floor(rng.rand(b) * (b - 1)).long().clamp(max=b - 2)
        partner = (torch.arange(b, device=images.device) + step) % b
        extra = torch.where(mask[:, None, None, None], points[partner], torch.nan)
        others = images[partner]
        images = _apply_to(
            images,
            mask,
            lambda x: (
                (1 - lam[mask].view(-1, 1, 1, 1)) * x + lam[mask].view(-1, 1, 1, 1) * others[mask]
            ),
        )
        points = torch.cat((points, extra.to(points.dtype)), dim=1)
    return images, points


def augment_batch(
    images: torch.Tensor,
    points: torch.Tensor,
    aug: Mapping | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of images and keypoints together (see the module docstring).

    Args:
        images: (B, C, H, W) float in [0, 1], on any device.
        points: (B, I, N, 2) xy in image pixels, NaN for missing.
        aug: sleap-nn ``augmentation_config`` (``intensity`` and ``geometric`` subsections,
            either may be None or partial; missing keys take sleap-nn's defaults). None -> no-op.
        generator: source of randomness for reproducible runs; keep it on the images' device
            to avoid moving noise tensors between devices.

    Returns:
        (images, points); points are (B, 2 I, N, 2) when mixup is enabled, else (B, I, N, 2).
        The inputs are never modified in place.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"images must be float (B, C, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if points.ndim != 4 or points.shape[-1] != 2 or points.shape[0] != images.shape[0]:
        raise ValueError(
            f"points must be (B, I, N, 2) with B = {images.shape[0]}, got {tuple(points.shape)}"
        )
    if aug is None:
        return images, points
    unknown = sorted(set(aug) - {"intensity", "geometric"})
    if unknown:
        raise ValueError(f"Unknown key(s) in augmentation_config: {unknown}")
    intensity = _resolve(aug.get("intensity"), INTENSITY_DEFAULTS, "intensity")
    geometric = _resolve(aug.get("geometric"), GEOMETRIC_DEFAULTS, "geometric")
    rng = _Random(generator, images.device)
    if intensity is not None:
        images = _intensity(images, intensity, rng)
    if geometric is not None:
        images, points = _geometric(images, points, geometric, rng)
    return images, points
