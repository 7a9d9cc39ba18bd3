"""Initialising a model from existing weights, always from local files (never downloading).

Two sources, two functions:

* :func:`load_imagenet_weights` -- ``backbone_config.<convnext|swint>.pre_trained_weights``:
  torchvision's ImageNet weights for the encoder, named by their torchvision enum
  (``ConvNeXt_Tiny_Weights``, ``ConvNeXt_Small_Weights``, ``ConvNeXt_Base_Weights``,
  ``ConvNeXt_Large_Weights``, ``Swin_T_Weights``, ``Swin_S_Weights``, ``Swin_B_Weights``).
  The file is the one torchvision itself would download (``convnext_tiny-983f1562.pth``, ...)
  and is looked up, in order, in

  1. the directory named by the environment variable ``PIPELINE_PRETRAINED_DIR``;
  2. torch's hub cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
     by default ``~/.cache/torch/hub/checkpoints``), where torchvision keeps what it downloaded.

  Missing file -> :class:`FileNotFoundError` saying which file (and its URL) to put where.
* :func:`load_pretrained` -- ``model_config.pretrained_backbone_weights`` /
  ``pretrained_head_weights``: a checkpoint of a trained model, ours (Lightning ``best.ckpt``,
  keys ``model.backbone.*`` / ``model.heads.*``, matched by name) or sleap-nn's (keys
  ``model.backbone.{encoders,middle_blocks,decoders}.*`` / ``model.head_layers.*``, matched by
  position and shape within the backbone and within the heads), or a SLEAP <= 1.4 Keras ``.h5``
  (handed to :mod:`pipeline_lib.models.legacy_keras`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline_lib.io.checkpoints import load_checkpoint

log = logging.getLogger(__name__)

ENV_DIR = "PIPELINE_PRETRAINED_DIR"
#: ``pre_trained_weights`` names and the backbone each fits.
IMAGENET_WEIGHTS: dict[str, str] = {
    "ConvNeXt_Tiny_Weights": "convnext",
    "ConvNeXt_Small_Weights": "convnext",
    "ConvNeXt_Base_Weights": "convnext",
    "ConvNeXt_Large_Weights": "convnext",
    "Swin_T_Weights": "swint",
    "Swin_S_Weights": "swint",
    "Swin_B_Weights": "swint",
}
_STEM_WEIGHT = "features.0.0.weight"
#: Order of sleap-nn's backbone groups in our layout (their state dict stores decoders first).
_SLEAP_NN_GROUP_RANK = {"encoders": 0, "enc": 0, "middle_blocks": 1, "decoders": 2, "dec": 2}
_PARTS = {"backbone": "backbone.", "head": "heads."}


# --------------------------------------------------------------------------- ImageNet weights


def imagenet_weights_url(name: str) -> str:
    """The URL torchvision would download ``name`` from (read from its enum, not fetched)."""
    if name not in IMAGENET_WEIGHTS:
        raise ValueError(
            f"pre_trained_weights must be one of {sorted(IMAGENET_WEIGHTS)}, got {name!r}"
        )
    import torchvision.models  # only here: importing torchvision costs ~1.5 s

    return getattr(torchvision.models, name).IMAGENET1K_V1.url


def imagenet_weights_file(name: str) -> Path:
    """Local path of the ImageNet weights ``name``; raises if no candidate exists."""
    url = imagenet_weights_url(name)
    filename = url.rsplit("/", 1)[-1]
    candidates = []
    if os.environ.get(ENV_DIR):
        candidates.append(Path(os.environ[ENV_DIR]).expanduser() / filename)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"pre_trained_weights: {name} needs the file {filename}, which was not found at "
        + " or ".join(str(p) for p in candidates)
        + f". This pipeline never downloads weights: fetch {url} on a machine with internet "
        f"access and put it in the directory named by the environment variable {ENV_DIR} "
        f"(or in {Path(torch.hub.get_dir()) / 'checkpoints'}), or set pre_trained_weights: null"
    )


def _adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB stem kernels -> ``in_channels`` kernels: each new channel gets the RGB kernels' sum
    divided by ``in_channels``, so an image whose channels are equal (grayscale) gives exactly
    the response its RGB replication gives with the original weights."""
    summed = weight.sum(dim=1, keepdim=True) / in_channels
    return summed.repeat(1, in_channels, 1, 1)


def load_imagenet_weights(backbone: nn.Module, name: str) -> dict[str, Any]:
    """Load torchvision ImageNet weights into ``backbone.encoder``; return what was loaded.

    Tensors are matched by name (our encoder mirrors torchvision's ``features``/``norm``
    layout) and loaded where the shapes match; the stem conv is adapted to ``in_channels`` when
    only its input channels differ. Tensors whose shapes differ (another ``window_size``,
    ``stem_patch_kernel`` or ``arch``) keep their initialisation and are listed in the summary.

    Returns:
        ``{"source", "loaded" (count), "adapted", "skipped" ({key: reason}),
        "not_in_file", "unused" (file keys we have no place for, e.g. the classifier)}``.
    """
    kind = IMAGENET_WEIGHTS.get(name)
    config_name = getattr(backbone, "config_name", type(backbone).__name__)
    if kind is None or kind != config_name:
        fitting = sorted(k for k, v in IMAGENET_WEIGHTS.items() if v == config_name)
        raise ValueError(
            f"backbone_config.{config_name}.pre_trained_weights: {name!r} does not fit this "
            f"backbone; choose one of {fitting}"
        )
    path = imagenet_weights_file(name)
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state dict of tensors")
    encoder: nn.Module = backbone.encoder
    target = encoder.state_dict()
    in_channels = int(backbone.in_channels)
    new: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    skipped: dict[str, str] = {}
    unused: list[str] = []
    for key, tensor in state.items():
        if key not in target:
            unused.append(key)
            continue
        want = target[key].shape
        if tensor.shape == want:
            new[key] = tensor
        elif key == _STEM_WEIGHT and tensor.shape[0] == want[0] and tensor.shape[2:] == want[2:]:
            new[key] = _adapt_stem(tensor, in_channels)
            adapted.append(key)
        else:
            skipped[key] = f"file {tuple(tensor.shape)} vs model {tuple(want)}"
    if not new:
        raise ValueError(
            f"No tensor of {path} ({name}) fits this {config_name} encoder; check model_type/arch"
        )
    encoder.load_state_dict(new, strict=False)
    summary = {
        "source": str(path),
        "loaded": len(new),
        "adapted": adapted,
        "skipped": skipped,
        "not_in_file": sorted(set(target) - set(state)),
        "unused": unused,
    }
    log.info(
        "Loaded %d/%d encoder tensors from %s (%d adapted to %d input channels, %d skipped "
        "for shape, %d not in the file)",
        len(new),
        len(target),
        path,
        len(adapted),
        in_channels,
        len(skipped),
        len(summary["not_in_file"]),
    )
    backbone.pretrained_summary = summary
    return summary


# --------------------------------------------------------------------------- trained checkpoints


def read_checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (its ``state_dict``), keys without a ``model.`` prefix.

    Read without running code from the file (see :mod:`pipeline_lib.io.checkpoints`); sleap-nn's
    hyper-parameter objects are dropped, a checkpoint naming anything else is refused."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    return {(k[len("model.") :] if k.startswith("model.") else k): v for k, v in state.items()}


def _sleap_nn_tensors(state: dict[str, torch.Tensor], part: str) -> list[tuple[str, torch.Tensor]]:
    """sleap-nn's tensors of one part, in our layer order."""
    if part == "head":
        return [(k, v) for k, v in state.items() if k.startswith("head_layers.")]
    items = [(k, v) for k, v in state.items() if k.startswith("backbone.")]

    def rank(item: tuple[str, torch.Tensor]) -> int:
        return _SLEAP_NN_GROUP_RANK.get(item[0].split(".")[1], 1)

    return sorted(items, key=rank)  # stable: keeps the order within each group


def map_checkpoint_part(
    model: nn.Module, state: dict[str, torch.Tensor], part: str, where: str
) -> tuple[dict[str, torch.Tensor], str]:
    """Our keys of ``part`` ("backbone" or "head") -> checkpoint tensors, and the checkpoint's
    format ("pipeline_lib" by name, or "sleap-nn" by position and shape). ``where`` names the
    checkpoint in errors."""
    prefix = _PARTS[part]
    ours = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    if any(k in state for k in ours):
        missing = [k for k in ours if k not in state]
        if missing:
            raise ValueError(
                f"{where}: the checkpoint has no tensor {missing[0]!r} ({len(missing)} of this "
                f"model's {len(ours)} {part} tensors missing); it is a different architecture"
            )
        for key, value in ours.items():
            if state[key].shape != value.shape:
                raise ValueError(
                    f"{where}: tensor {key!r} has shape {tuple(state[key].shape)} in the "
                    f"checkpoint but {tuple(value.shape)} in this model"
                )
        return {k: state[k] for k in ours}, "pipeline_lib"
    theirs = _sleap_nn_tensors(state, part)
    if not theirs:
        raise ValueError(
            f"{where}: no {part} tensors found (expected keys 'model.{prefix}*' of this "
            f"pipeline or sleap-nn's 'model.{'head_layers' if part == 'head' else 'backbone'}.*')"
        )
    for (our_key, our_value), (their_key, their_value) in zip(ours.items(), theirs, strict=False):
        if our_value.shape != their_value.shape:
            raise ValueError(
                f"{where}: tensor {their_key!r} {tuple(their_value.shape)} does not fit this "
                f"model's {our_key!r} {tuple(our_value.shape)} (tensors are matched in order); "
                "the architectures differ"
            )
    if len(theirs) != len(ours):
        raise ValueError(
            f"{where}: the checkpoint has {len(theirs)} {part} tensors, this model "
            f"{len(ours)}; the architectures differ"
        )
    return {k: v for k, (_, v) in zip(ours, theirs, strict=True)}, "sleap-nn"


def load_pretrained(
    model: nn.Module, backbone_path: str | None, head_path: str | None
) -> dict[str, dict[str, Any]]:
    """Initialise the backbone and/or heads of ``model`` from trained checkpoints.

    Args:
        model: a :class:`~pipeline_lib.models.model.PoseModel`.
        backbone_path: ``model_config.pretrained_backbone_weights`` (``.ckpt`` or ``.h5``) or
            None.
        head_path: ``model_config.pretrained_head_weights`` or None.

    Returns:
        ``{"backbone": {...}, "head": {...}}`` for the parts loaded: for checkpoints
        ``{"path", "format" ("pipeline_lib" or "sleap-nn"), "tensors"}``; for ``.h5`` files
        whatever :func:`pipeline_lib.models.legacy_keras.load_keras_weights` reports.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a checkpoint that does not fit, naming the first tensor that differs.
    """
    summary: dict[str, dict[str, Any]] = {}
    for part, value in (("backbone", backbone_path), ("head", head_path)):
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model_config.pretrained_{part}_weights: no file at {path}")
        if path.suffix.lower() == ".h5":
            from pipeline_lib.models.legacy_keras import load_keras_weights

            summary[part] = load_keras_weights(model, str(path), part)
            continue
        where = f"model_config.pretrained_{part}_weights ({path})"
        mapped, fmt = map_checkpoint_part(model, read_checkpoint_state(path), part, where)
        result = model.load_state_dict(mapped, strict=False)
        if result.unexpected_keys:  # cannot happen: mapped keys are the model's own
            raise RuntimeError(f"unexpected keys {result.unexpected_keys}")
        summary[part] = {"path": str(path), "format": fmt, "tensors": len(mapped)}
        log.info("Loaded %d %s tensors from %s (%s checkpoint)", len(mapped), part, path, fmt)
    return summary
