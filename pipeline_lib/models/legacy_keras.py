"""Load the weights of a SLEAP <= 1.4 Keras UNet model (``best_model.h5``) into a ``PoseModel``.

Why: users with SLEAP-era models can run or fine-tune them here without TensorFlow. The file is
read with h5py only. Build the model from the converted config first
(:func:`pipeline_lib.config.legacy.convert_legacy_config`, then
:func:`pipeline_lib.models.model.build_model` with ``in_channels`` from
:func:`keras_input_channels`), then call :func:`load_keras_weights`.

File layout: ``model_weights/<layer>/<layer>/kernel:0`` and ``bias:0`` (Keras 2 ``save``; a
weights-only file keeps the layer groups at the root) and the layer order in the ``layer_names``
attribute. Layers are matched by SLEAP's layer names, in order within each block.

Layer correspondence (SLEAP names -> this package's UNet, per stack ``s``):

* ``stack{s}_enc{i}_conv{j}`` (i-th encoder block, in order)  -> ``encoder[i]`` conv ``j``
* ``stack{s}_stem{i}_conv{j}`` / ``stem{i}_conv{j}``          -> ``stem[i]`` conv ``j``
* ``stack{s}_enc{k}_middle_expand_conv{j}``                    -> middle block expand conv ``j``
* ``stack{s}_enc{k}_middle_contract_conv0``                    -> middle block contract conv
* ``stack{s}_dec{i}_s{a}_to_s{b}_trans_conv``                  -> ``decoder[i]`` transposed conv
* ``stack{s}_dec{i}_s{a}_to_s{b}_refine_conv{j}``              -> ``decoder[i]`` refine conv ``j``
* ``*ConfmapsHead[_n]`` -> ``confmaps``; ``PartAffinityFieldsHead[_n]`` -> ``pafs``;
  ``ClassMapsHead[_n]`` -> ``class_maps``; ``pre_classification{i}_fc`` + ``ClassVectorsHead``
  -> ``class_vectors`` (hidden layers ``fc[i]``, output ``out``). With several stacks SLEAP adds
  one head per stack (``_0``, ``_1``, ...); the last stack's head is the model's output.
* ``OffsetRefinementHead[_n]``: not loaded (no such head here; refinement is done at inference).

Tensor layouts: Keras conv kernels are HWIO and become OIHW; transposed-conv kernels are
(H, W, out, in) and become (in, out, H, W); dense kernels are (in, out) and become (out, in).
Class-vector heads without global pooling flatten (h, w, C) in Keras but (C, h, w) here, so the
first dense layer's input rows are reordered. PAF channels are (edge0_x, edge0_y, edge1_x, ...)
in both. Every shape is checked; any mismatch, any conv of the model (in the requested part)
or of the file's part without a partner, and any layer a SLEAP UNet does not have, is an error
naming the file, the Keras layer and the PyTorch module; the model is then left unchanged.

Known difference (transposed convs, ``up_interpolate: false``): Keras ``Conv2DTranspose(3,
strides=2, padding='same')`` puts input pixel ``i``, tap ``k`` at output ``2i + k``, while this
package's ``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)`` puts it at ``2i + k - 1``,
so each such decoder level is shifted by one pixel (up-left) relative to SLEAP. Weights still
load tensor for tensor; a warning is logged and the report's ``notes`` says so. The exact
equivalent is ``padding=0, output_padding=0`` followed by cropping the output to ``2 x`` the
input size (``[..., : 2 h, : 2 w]``). Bilinear upsampling (Keras ``UpSampling2D``, half-pixel
centres) and 2x2 max pooling on even sizes match exactly.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from pipeline_lib.models.unet import UNet

log = logging.getLogger(__name__)

PARTS = ("all", "backbone", "head")
HEAD_KINDS = {
    "SingleInstanceConfmapsHead": "confmaps",
    "CentroidConfmapsHead": "confmaps",
    "CenteredInstanceConfmapsHead": "confmaps",
    "MultiInstanceConfmapsHead": "confmaps",
    "PartAffinityFieldsHead": "pafs",
    "ClassMapsHead": "class_maps",
    "ClassVectorsHead": "class_vectors",
}
IGNORED_HEAD_KINDS = ("OffsetRefinementHead",)

_HEAD_RE = re.compile(r"^(?P<kind>[A-Za-z]+Head)(?:_(?P<index>\d+))?$")
_FC_RE = re.compile(r"^pre_classification(?P<index>\d+)_fc$")
_STEM_RE = re.compile(r"^(?:stack(?P<stack>\d+)_)?stem(?P<block>\d+)_conv(?P<conv>\d+)$")
_ENC_RE = re.compile(r"^stack(?P<stack>\d+)_enc(?P<block>\d+)_conv(?P<conv>\d+)$")
_MIDDLE_RE = re.compile(
    r"^stack(?P<stack>\d+)_enc\d+_middle_(?P<which>expand|contract)_conv(?P<conv>\d+)$"
)
_DEC_RE = re.compile(
    r"^stack(?P<stack>\d+)_dec(?P<block>\d+)_s\d+_to_s\d+_"
    r"(?:(?P<trans>trans_conv)|refine_conv(?P<conv>\d+))$"
)


@dataclass
class KerasLayer:
    """One layer of the file with its weights (``kernel`` and, if any, ``bias``)."""

    name: str
    weights: dict[str, np.ndarray]


@dataclass
class _Pair:
    """One PyTorch module, the Keras layer it takes its weights from, and how to convert them.

    ``kind`` is 'conv', 'transposed' or 'dense'; ``flatten_hwc`` is the (h, w, C) a Keras
    Flatten fed into this dense layer (its rows are then reordered to PyTorch's (C, h, w)).
    """

    torch_name: str
    module: nn.Module
    layer: KerasLayer
    kind: str
    flatten_hwc: tuple[int, int, int] | None = None


@dataclass
class _Plan:
    """Every planned pair plus every problem found while planning."""

    pairs: list[_Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def read_keras_weights(h5_path: str | os.PathLike) -> list[KerasLayer]:
    """Every layer of a Keras HDF5 file that has weights, in the file's layer order."""
    path = Path(h5_path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras weights file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file: {exc}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        names = [_text(n) for n in root.attrs.get("layer_names", [])] or list(root.keys())
        layers: list[KerasLayer] = []
        for name in names:
            if name not in root or not isinstance(root[name], h5py.Group):
                continue
            weights = _layer_weights(root[name])
            if weights:
                layers.append(KerasLayer(name, weights))
    if not layers:
        raise ValueError(
            f"{path} holds no layer weights (expected Keras groups such as "
            "model_weights/<layer>/<layer>/kernel:0)"
        )
    return layers


def keras_input_channels(h5_path: str | os.PathLike) -> int:
    """Channels of the image the Keras model takes (build the model with this ``in_channels``)."""
    for layer in read_keras_weights(h5_path):
        kernel = layer.weights.get("kernel")
        if kernel is not None and kernel.ndim == 4:
            return int(kernel.shape[2])
    raise ValueError(f"{h5_path} has no convolution kernel to read the input channels from")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _layer_weights(group: h5py.Group) -> dict[str, np.ndarray]:
    """{'kernel': ..., 'bias': ...} of one layer group (``weight_names`` order, else a walk)."""
    names = [_text(n) for n in group.attrs.get("weight_names", [])]
    found: dict[str, np.ndarray] = {}
    if names:
        for name in names:
            if name in group:
                found[_weight_key(name)] = np.asarray(group[name][()], dtype=np.float32)
        return found

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[_weight_key(name)] = np.asarray(obj[()], dtype=np.float32)

    group.visititems(visit)
    return found


def _weight_key(name: str) -> str:
    """'stack0_enc0_conv0/kernel:0' -> 'kernel'."""
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


# --------------------------------------------------------------------------- loading


def load_legacy_model(
    model_dir: str | os.PathLike, part: str = "all"
) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    """Rebuild a SLEAP <= 1.4 model folder here: (converted config, model, load report).

    Converts the folder's ``training_config.json``, builds the network with the input channels
    of ``best_model.h5`` (the config may not say: SLEAP read them from the data), writes that
    channel count into the returned config, and loads the weights. The model is left in
    training mode, on the CPU.
    """
    from pipeline_lib.config.legacy import convert_legacy_config, find_legacy_config
    from pipeline_lib.models.model import build_model

    model_dir = Path(model_dir)
    h5_path = model_dir / "best_model.h5"
    if not h5_path.is_file():
        raise FileNotFoundError(f"SLEAP model folder {model_dir} has no best_model.h5")
    config = convert_legacy_config(find_legacy_config(model_dir))
    model_config = config["model_config"]
    head = next(v for v in model_config["head_configs"].values() if v is not None)
    parts = head["confmaps"].get("part_names")
    skeletons = config["data_config"].get("skeletons") or []
    if parts:
        n_nodes = len(parts)
    elif skeletons:
        n_nodes = len(skeletons[0]["nodes"])
    else:
        raise ValueError(
            f"{model_dir}: the config names neither part_names nor a skeleton, so the number of "
            "body parts is unknown (use the folder's training_config.json, not initial_config)"
        )
    in_channels = keras_input_channels(h5_path)
    model_config["backbone_config"]["unet"]["in_channels"] = in_channels
    # Only a class-vector head without global pooling needs the input (crop) size.
    crop = config["data_config"]["preprocessing"].get("crop_size")
    sized = "class_vectors" in head and crop
    model = build_model(
        model_config,
        n_nodes=n_nodes,
        in_channels=in_channels,
        input_hw=(crop, crop) if sized else None,
    )
    report = load_keras_weights(model, h5_path, part=part)
    return config, model, report


def load_keras_weights(
    model: nn.Module, h5_path: str | os.PathLike, part: str = "all"
) -> dict[str, Any]:
    """Copy SLEAP Keras UNet weights into ``model`` (a ``PoseModel`` with a UNet backbone).

    Args:
        model: built from the converted legacy config with matching ``in_channels``.
        h5_path: ``best_model.h5`` of a SLEAP <= 1.4 UNet model.
        part: ``"all"``; ``"backbone"`` (encoder / middle / decoder only, e.g. to fine-tune with
            new heads); or ``"head"`` (output heads only).

    Returns:
        A report: ``loaded`` ({PyTorch module name: Keras layer name}), ``ignored`` (Keras
        layers with weights that were not loaded, e.g. offset-refinement heads or the other
        part), ``notes`` (known numerical differences) and ``h5_path``.

    Raises:
        ValueError: unknown ``part``, unreadable file, a shape mismatch, or a conv of the model
            (in the requested part) or of the file without a partner. Nothing is modified then.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    h5_path = Path(h5_path)
    layers = read_keras_weights(h5_path)
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, UNet):
        raise ValueError(
            "load_keras_weights needs a PoseModel with a UNet backbone (SLEAP legacy models "
            f"are UNets); got {type(model).__name__}"
        )
    module_names = {id(m): name for name, m in model.named_modules()}

    plan = _Plan()
    used: set[str] = set()
    if part in ("all", "backbone"):
        used |= _plan_backbone(backbone, layers, plan, module_names)
    if part in ("all", "head"):
        used |= _plan_heads(model, layers, plan, module_names)
    for layer in layers:
        if not _known_layer(layer.name):
            plan.problems.append(
                f"{layer.name}: not a layer of a SLEAP UNet model (expected stack*_enc*, "
                "stack*_dec*, stem*, pre_classification*_fc or *Head layers)"
            )

    tensors: list[tuple[torch.Tensor, np.ndarray]] = []
    for pair in plan.pairs:
        try:
            converted = _convert(pair)
        except ValueError as exc:
            plan.problems.append(str(exc))
            continue
        for key, value in converted.items():
            target = getattr(pair.module, key, None)
            if target is None:
                plan.problems.append(
                    f"{pair.layer.name}: has a {key} but PyTorch module {pair.torch_name} has none"
                )
            elif tuple(target.shape) != value.shape:
                keras_key = "kernel" if key == "weight" else key
                hint = ""
                if pair.layer.name == layers[0].name:
                    hint = " (build the model with in_channels=keras_input_channels(h5_path))"
                plan.problems.append(
                    f"{pair.layer.name}/{keras_key}: Keras shape "
                    f"{pair.layer.weights[keras_key].shape} "
                    f"converts to {value.shape} but {pair.torch_name}.{key} is "
                    f"{tuple(target.shape)}{hint}"
                )
            else:
                tensors.append((target, value))
        if "bias" not in pair.layer.weights and getattr(pair.module, "bias", None) is not None:
            plan.problems.append(
                f"{pair.layer.name}: no bias in the file for {pair.torch_name}.bias"
            )
    if plan.problems:
        raise ValueError(
            f"Cannot load {h5_path} into the model ({len(plan.problems)} problem(s)):\n"
            + "\n".join(f"  - {p}" for p in plan.problems)
        )

    with torch.no_grad():
        for target, value in tensors:
            target.copy_(torch.from_numpy(value).to(dtype=target.dtype, device=target.device))

    notes = []
    if any(pair.kind == "transposed" for pair in plan.pairs):
        notes.append(
            "transposed-conv upsampling: outputs are shifted by one pixel per decoder level "
            "relative to SLEAP (Keras 'same' vs PyTorch padding=1, output_padding=1); see "
            "pipeline_lib.models.legacy_keras"
        )
        log.warning("%s: %s", h5_path, notes[-1])
    return {
        "h5_path": str(h5_path),
        "part": part,
        "loaded": {pair.torch_name: pair.layer.name for pair in plan.pairs},
        "ignored": [layer.name for layer in layers if layer.name not in used],
        "notes": notes,
    }


def _convert(pair: _Pair) -> dict[str, np.ndarray]:
    """The Keras layer's tensors in the PyTorch module's layout."""
    layer = pair.layer
    kernel = layer.weights.get("kernel")
    if kernel is None:
        raise ValueError(f"{layer.name}: no kernel in the file (found {sorted(layer.weights)})")
    if pair.kind in ("conv", "transposed"):
        if kernel.ndim != 4:
            raise ValueError(f"{layer.name}: expected a 4-D conv kernel, got {kernel.shape}")
        # HWIO -> OIHW for a conv; (H, W, out, in) -> (in, out, H, W) for a transposed conv.
        weight = kernel.transpose(3, 2, 0, 1)
    else:
        if kernel.ndim != 2:
            raise ValueError(f"{layer.name}: expected a 2-D dense kernel, got {kernel.shape}")
        if pair.flatten_hwc is not None:
            kernel = _rows_hwc_to_chw(layer.name, kernel, pair.flatten_hwc)
        weight = kernel.T
    out = {"weight": np.ascontiguousarray(weight)}
    if "bias" in layer.weights:
        out["bias"] = np.ascontiguousarray(layer.weights["bias"])
    return out


def _rows_hwc_to_chw(name: str, kernel: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    """Reorder a dense kernel's input rows from Keras' (h, w, C) flatten order to (C, h, w)."""
    h, w, channels = hwc
    if kernel.shape[0] != h * w * channels:
        raise ValueError(
            f"{name}: takes {kernel.shape[0]} inputs but the model's bottleneck flattens to "
            f"{h} x {w} x {channels} = {h * w * channels}"
        )
    return kernel.reshape(h, w, channels, -1).transpose(2, 0, 1, 3).reshape(h * w * channels, -1)


# --------------------------------------------------------------------------- matching


def _known_layer(name: str) -> bool:
    """True for the layer names of SLEAP UNet models (see the module docstring)."""
    patterns = (_STEM_RE, _ENC_RE, _MIDDLE_RE, _DEC_RE, _FC_RE, _HEAD_RE)
    return any(pattern.match(name) for pattern in patterns)


def _convs(module: nn.Module | None) -> list[nn.Module]:
    """Conv layers of a block in forward order (ConvBlock / Sequential)."""
    if module is None:
        return []
    return [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


def _indexed(
    layers: list[KerasLayer], pattern: re.Pattern
) -> Iterator[tuple[re.Match, KerasLayer]]:
    for layer in layers:
        match = pattern.match(layer.name)
        if match:
            yield match, layer


def _pair(
    plan: _Plan,
    names: dict[int, str],
    module: nn.Module,
    layer: KerasLayer,
    kind: str,
    flatten_hwc: tuple[int, int, int] | None = None,
) -> None:
    plan.pairs.append(_Pair(names[id(module)], module, layer, kind, flatten_hwc))


def _match_list(
    plan: _Plan,
    names: dict[int, str],
    what: str,
    modules: list[nn.Module],
    keras: list[KerasLayer],
    kind: str,
) -> None:
    """Pair modules and Keras layers in order; a count mismatch is a problem."""
    if len(modules) != len(keras):
        plan.problems.append(
            f"{what}: the model has {len(modules)} conv layer(s), the file "
            f"{len(keras)} ({', '.join(k.name for k in keras) or 'none'})"
        )
        return
    for module, layer in zip(modules, keras, strict=True):
        _pair(plan, names, module, layer, kind)


def _plan_backbone(
    unet: nn.Module, layers: list[KerasLayer], plan: _Plan, names: dict[int, str]
) -> set[str]:
    """Pair every conv of the UNet with its Keras layer; returns the Keras names used."""
    used: set[str] = set()

    stem: dict[tuple[int, int], KerasLayer] = {}
    for m, layer in _indexed(layers, _STEM_RE):
        stem[(int(m["block"]), int(m["conv"]))] = layer
    stem_blocks = list(getattr(unet, "stem", []))
    _match_list(
        plan,
        names,
        "stem",
        [c for block in stem_blocks for c in _convs(block)],
        [stem[k] for k in sorted(stem)],
        "conv",
    )
    used |= {layer.name for layer in stem.values()}

    enc: dict[int, dict[tuple[int, int], KerasLayer]] = {}
    middle: dict[int, dict[tuple[int, int], KerasLayer]] = {}
    dec: dict[int, dict[tuple[int, int], KerasLayer]] = {}
    trans: dict[int, dict[int, KerasLayer]] = {}
    for m, layer in _indexed(layers, _ENC_RE):
        enc.setdefault(int(m["stack"]), {})[(int(m["block"]), int(m["conv"]))] = layer
    for m, layer in _indexed(layers, _MIDDLE_RE):
        order = 0 if m["which"] == "expand" else 1
        middle.setdefault(int(m["stack"]), {})[(order, int(m["conv"]))] = layer
    for m, layer in _indexed(layers, _DEC_RE):
        stack, block = int(m["stack"]), int(m["block"])
        if m["trans"]:
            trans.setdefault(stack, {})[block] = layer
        else:
            dec.setdefault(stack, {})[(block, int(m["conv"]))] = layer

    stacks = list(unet.stack_modules)
    file_stacks = sorted(set(enc) | set(middle) | set(dec) | set(trans))
    if file_stacks != list(range(len(stacks))):
        plan.problems.append(
            f"the model has {len(stacks)} UNet stack(s), the file has stack(s) "
            f"{file_stacks or 'none'}"
        )
        return used
    for s, stack in enumerate(stacks):
        enc_layers = [enc.get(s, {})[k] for k in sorted(enc.get(s, {}))]
        _match_list(
            plan,
            names,
            f"stack {s} encoder",
            [c for block in stack.encoder for c in _convs(block)],
            enc_layers,
            "conv",
        )
        mid_layers = [middle.get(s, {})[k] for k in sorted(middle.get(s, {}))]
        _match_list(
            plan, names, f"stack {s} middle block", _convs(stack.middle), mid_layers, "conv"
        )
        up_modules, up_layers, refine_modules, refine_layers = [], [], [], []
        for b, block in enumerate(stack.decoder):
            ups = [c for c in _convs(block.upsample) if isinstance(c, nn.ConvTranspose2d)]
            up_modules += ups
            if b in trans.get(s, {}):
                up_layers.append(trans[s][b])
            refine_modules += _convs(block.refine)
            refine_layers += [dec.get(s, {})[k] for k in sorted(dec.get(s, {})) if k[0] == b]
        extra_blocks = {k[0] for k in dec.get(s, {})} - set(range(len(stack.decoder)))
        if extra_blocks or set(trans.get(s, {})) - set(range(len(stack.decoder))):
            plan.problems.append(
                f"stack {s} decoder: the file has more decoder blocks than the model's "
                f"{len(stack.decoder)} (check output_stride / max_stride)"
            )
        _match_list(
            plan, names, f"stack {s} decoder upsampling", up_modules, up_layers, "transposed"
        )
        _match_list(plan, names, f"stack {s} decoder", refine_modules, refine_layers, "conv")
        used |= {layer.name for layer in enc_layers + mid_layers + up_layers + refine_layers}
    return used


def _model_heads(model: nn.Module) -> dict[str, nn.Module]:
    """The model's output heads by output name (heads declare ``name``, e.g. 'confmaps')."""
    from pipeline_lib.models.heads import Head

    heads: dict[str, nn.Module] = {}
    for module in model.modules():
        if isinstance(module, Head) and module.name:
            heads[module.name] = module
    return heads


def _plan_heads(
    model: nn.Module, layers: list[KerasLayer], plan: _Plan, names: dict[int, str]
) -> set[str]:
    """Pair each model head with the last stack's Keras head of the same kind."""
    used: set[str] = set()
    found: dict[str, tuple[int, KerasLayer]] = {}
    for m, layer in _indexed(layers, _HEAD_RE):
        kind = m["kind"]
        if kind in IGNORED_HEAD_KINDS:
            continue
        if kind not in HEAD_KINDS:
            plan.problems.append(f"{layer.name}: unknown SLEAP head type {kind!r}")
            continue
        index = int(m["index"] or 0)
        output = HEAD_KINDS[kind]
        if output not in found or index > found[output][0]:
            found[output] = (index, layer)
    heads = _model_heads(model)
    for output, head in heads.items():
        if output not in found:
            plan.problems.append(
                f"the model's {output} head has no counterpart in the file (Keras heads: "
                f"{', '.join(sorted(k.name for _, k in found.values())) or 'none'})"
            )
            continue
        layer = found[output][1]
        used.add(layer.name)
        if output == "class_vectors":
            used |= _plan_class_vectors(head, layer, layers, plan, names)
        else:
            conv = getattr(head, "conv", None)
            if not isinstance(conv, nn.Conv2d):
                plan.problems.append(f"the model's {output} head has no 1x1 conv to load into")
                continue
            _pair(plan, names, conv, layer, "conv")
    for output, (_, layer) in found.items():
        if output not in heads:
            plan.problems.append(
                f"{layer.name}: the file has a {output} head the model does not have "
                f"(model heads: {', '.join(heads) or 'none'})"
            )
    return used


def _plan_class_vectors(
    head: nn.Module,
    out_layer: KerasLayer,
    layers: list[KerasLayer],
    plan: _Plan,
    names: dict[int, str],
) -> set[str]:
    """Hidden dense layers ``pre_classification{i}_fc`` then ``ClassVectorsHead``."""
    hidden = sorted(_indexed(layers, _FC_RE), key=lambda item: int(item[0]["index"]))
    keras = [layer for _, layer in hidden] + [out_layer]
    modules = [*getattr(head, "fc", []), head.out]
    if len(modules) != len(keras):
        plan.problems.append(
            f"class_vectors head: the model has {len(modules)} dense layer(s), the file "
            f"{len(keras)} ({', '.join(k.name for k in keras)}); check num_fc_layers"
        )
        return {k.name for k in keras}
    for i, (module, layer) in enumerate(zip(modules, keras, strict=True)):
        flatten = None
        if i == 0 and not getattr(head, "global_pool", True):
            h, w = head.bottleneck_hw
            flatten = (int(h), int(w), int(head.in_channels))
        _pair(plan, names, module, layer, "dense", flatten)
    return {k.name for k in keras}
