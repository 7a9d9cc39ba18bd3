"""The global tracking transformer: association logits between a frame's detections and a window.

Every detection becomes one token: what it looks like (a visual encoder over its crop), where it
is (its box, normalised per axis by the frame size) and when it is (its frame relative to the
window). A transformer encoder mixes the tokens of the whole window plus the current frame; a
decoder lets the current frame's detections (the queries) attend to that memory; and the
association head scores every query against every window detection by a scaled dot product,
plus a learned term of the two boxes' relative geometry (distance over animal size, distance
to where the track's motion leads, IoU, frame gap, size ratio; :class:`GeometryBias`). That
term is our addition to DREEM's network: it is what lets a model trained on one lab's videos
keep identities on another video, where absolute positions mean nothing
(``model.geometry_bias: null`` removes it).
Training turns those scores into a loss over tracks (``loss.py``); the tracker turns them into
trajectory scores (``tracker.py``).

Configuration follows the ``model:`` section of a DREEM training config (the key names are
DREEM's), loaded strictly by :meth:`GTRModelConfig.from_dict`. The embeddings are designed so
that they really vary over their inputs: sinusoids tuned for pixel or frame-index inputs are
nearly constant over inputs normalised to [0, 1] (DREEM's temporal embedding is reported to
collapse that way), and a network that cannot tell two boxes or two frames apart cannot learn
association from them.

* Positions are divided by the frame width (x) and height (y) separately, then fed to sinusoids
  whose fastest frequency (``scale``, default 128 rad per frame width, about 8 px per radian on
  a 1024 px frame) resolves a few pixels and whose slowest (``scale / temperature``, default
  1 rad per frame width) stays monotonic across the frame. A scale of 2 pi on normalised
  positions (DETR's convention) leaves most channels near constant.
* Time is the frame offset from the window's first frame (the earliest frame of window and
  query) divided by ``max_window``, a constant of the model rather than the length of the
  current window: the same offset always embeds the same, and offsets spread over [0, 1]
  across a window. Frequencies default to 1 rad per frame at the fastest and 1 rad per
  ``max_window`` at the slowest.
* The learned alternative is a small MLP per coordinate (or for time) initialised as a linearly
  interpolated table of random vectors, so it too starts discriminative.

A warning names the key when configured frequencies would make an embedding barely change over
the distances it has to resolve.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline_lib.config.loader import did_you_mean
from pipeline_lib.tracking.gtr.detections import Detections

EMBEDDING_MODES = ("fixed", "learned", "off")
ENCODER_NAMES = ("cnn", "resnet18")
ENCODER_BACKENDS = ("torchvision", "timm")
ACTIVATIONS = ("relu", "gelu")

# DREEM ``model:`` keys that select outputs or resume training rather than shape the network.
# They are accepted at the value that matches what this network does, refused otherwise.
_DREEM_FIXED_KEYS: dict[str, Any] = {
    "ckpt_path": None,
    "return_intermediate_dec": False,
    "return_embedding": False,
}
_OFF_ALIASES = (None, "off", "none", "None", "null")
# Above this cosine similarity between the two ends of its input range, a sinusoidal embedding
# is considered too flat to tell positions or times apart.
_FLAT_SIMILARITY = 0.9


class ModelConfigError(ValueError):
    """A model option that cannot be used; the message names its key path."""


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPConfig:
    """``model.embedding_meta.pos.mlp_cfg``: an MLP mixing the four coordinate embeddings.

    Attributes:
        hidden_dims: width of the hidden layers.
        num_layers: number of hidden layers (each Linear, ReLU, Dropout).
        dropout: dropout probability after each hidden layer.
    """

    hidden_dims: int = 256
    num_layers: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        path = "model.embedding_meta.pos.mlp_cfg"
        _check_int(f"{path}.hidden_dims", self.hidden_dims, 1)
        _check_int(f"{path}.num_layers", self.num_layers, 1)
        _check_float(f"{path}.dropout", self.dropout, 0.0, 1.0, open_high=True)


@dataclass(frozen=True)
class PosEmbeddingConfig:
    """``model.embedding_meta.pos``: how a detection's box becomes a vector.

    Attributes:
        mode: ``"fixed"`` (sinusoids), ``"learned"`` (a small MLP per coordinate) or ``"off"``.
        normalize: divide x by the frame width and y by the frame height (fixed mode only;
            learned mode always normalises, since its MLP expects values in [0, 1]).
        temperature: ratio of the fastest to the slowest sinusoid frequency.
        scale: fastest frequency, in radians per unit of the (normalised) coordinate; ``None``
            means 128 when normalising (about 8 px per radian on a 1024 px frame) and 1 (one
            radian per pixel) otherwise.
        n_points: points embedded per detection; only 1 (one box) is supported.
        over_boxes: embed the box corners x1, y1, x2, y2 (True) or the anchor point and box size
            cx, cy, w, h (False).
        emb_num: hidden units of each learned coordinate MLP: hinges at ``emb_num`` evenly
            spaced points of [0, 1], so at initialisation the MLP is a table of ``emb_num``
            vectors, linearly interpolated (DREEM's meaning of ``emb_num``).
        mlp_cfg: optional MLP applied to the concatenated coordinate embeddings.
    """

    mode: str = "fixed"
    normalize: bool = True
    temperature: float = 128.0
    scale: float | None = None
    n_points: int = 1
    over_boxes: bool = True
    emb_num: int = 16
    mlp_cfg: MLPConfig | None = None

    def __post_init__(self) -> None:
        path = "model.embedding_meta.pos"
        _check_choice(f"{path}.mode", self.mode, EMBEDDING_MODES)
        _check_bool(f"{path}.normalize", self.normalize)
        _check_bool(f"{path}.over_boxes", self.over_boxes)
        _check_float(f"{path}.temperature", self.temperature, 1.0, math.inf)
        if self.scale is not None:
            _check_float(f"{path}.scale", self.scale, 0.0, math.inf, open_low=True)
        _check_int(f"{path}.n_points", self.n_points, 1)
        if self.n_points != 1:
            raise ModelConfigError(
                f"{path}.n_points must be 1 (each detection has one box), got {self.n_points}"
            )
        _check_int(f"{path}.emb_num", self.emb_num, 2)
        if self.mode == "learned" and not self.normalize:
            raise ModelConfigError(
                f"{path}.normalize: false only applies to mode 'fixed'; the learned embedding "
                f"needs coordinates normalised to [0, 1]"
            )

    @property
    def effective_scale(self) -> float:
        """The fastest frequency with the ``None`` default resolved."""
        if self.scale is not None:
            return float(self.scale)
        return 128.0 if self.normalize else 1.0


@dataclass(frozen=True)
class TempEmbeddingConfig:
    """``model.embedding_meta.temp``: how a detection's time within the window becomes a vector.

    Attributes:
        mode: ``"fixed"`` (sinusoids), ``"learned"`` (a small MLP) or ``"off"``.
        max_window: frames spanned by the longest window (training clip or tracker window plus
            the current frame). Offsets from the window's first frame are divided by it, so one
            offset always means the same time; longer windows give values above 1 (sinusoids
            continue, the learned MLP extrapolates linearly).
        temperature: ratio of the fastest to the slowest frequency; ``None``: ``max_window``.
        scale: fastest frequency in radians per unit of relative time; ``None``: ``max_window``
            (one radian per frame).
        emb_num: hidden units of the learned MLP (see ``PosEmbeddingConfig.emb_num``).
    """

    mode: str = "fixed"
    max_window: int = 32
    temperature: float | None = None
    scale: float | None = None
    emb_num: int = 16

    def __post_init__(self) -> None:
        path = "model.embedding_meta.temp"
        _check_choice(f"{path}.mode", self.mode, EMBEDDING_MODES)
        _check_int(f"{path}.max_window", self.max_window, 1)
        if self.temperature is not None:
            _check_float(f"{path}.temperature", self.temperature, 1.0, math.inf)
        if self.scale is not None:
            _check_float(f"{path}.scale", self.scale, 0.0, math.inf, open_low=True)
        _check_int(f"{path}.emb_num", self.emb_num, 2)

    @property
    def effective_scale(self) -> float:
        return float(self.max_window if self.scale is None else self.scale)

    @property
    def effective_temperature(self) -> float:
        return float(self.max_window if self.temperature is None else self.temperature)


@dataclass(frozen=True)
class EmbeddingMeta:
    """``model.embedding_meta``: the position (``pos``) and time (``temp``) embeddings."""

    pos: PosEmbeddingConfig = field(default_factory=PosEmbeddingConfig)
    temp: TempEmbeddingConfig = field(default_factory=TempEmbeddingConfig)


@dataclass(frozen=True)
class GeometryBiasConfig:
    """``model.geometry_bias``: a learned score of how two boxes lie relative to each other.

    Not a DREEM key: our addition (see :class:`GeometryBias` for why). ``null`` or ``false``
    turns it off, which gives DREEM's network.

    Attributes:
        hidden_dims: width of the MLP's hidden layers.
        num_layers: number of hidden layers.
    """

    hidden_dims: int = 32
    num_layers: int = 2

    def __post_init__(self) -> None:
        _check_int("model.geometry_bias.hidden_dims", self.hidden_dims, 1)
        _check_int("model.geometry_bias.num_layers", self.num_layers, 1)


@dataclass(frozen=True)
class EncoderConfig:
    """``model.encoder_cfg``: the visual encoder of the crops.

    Attributes:
        model_name: ``"cnn"`` (four strided conv blocks, written here) or ``"resnet18"``
            (torchvision's, randomly initialised: weights are never downloaded).
        in_chans: channels the encoder takes. One-channel crops are repeated to three when
            ``in_chans`` is 3; any other mismatch is an error.
        backend: ``"torchvision"`` or ``"timm"``; both name the standard ResNet-18, which is
            built with torchvision here (timm is not a dependency).
        pretrained: must be false: no pretrained weights are downloaded.
    """

    model_name: str = "cnn"
    in_chans: int = 1
    backend: str = "torchvision"
    pretrained: bool = False

    def __post_init__(self) -> None:
        path = "model.encoder_cfg"
        _check_choice(f"{path}.model_name", self.model_name, ENCODER_NAMES)
        _check_int(f"{path}.in_chans", self.in_chans, 1)
        _check_choice(f"{path}.backend", self.backend, ENCODER_BACKENDS)
        _check_bool(f"{path}.pretrained", self.pretrained)
        if self.pretrained:
            raise ModelConfigError(
                f"{path}.pretrained must be false: pretrained weights are never downloaded"
            )


@dataclass(frozen=True)
class GTRModelConfig:
    """``model``: the network's shape. Key names and meanings follow DREEM's ``model:`` section.

    Attributes:
        d_model: width of every token (divisible by ``nhead``, and by 8 for fixed positions:
            four coordinates, each sine and cosine).
        nhead: attention heads of the encoder and decoder layers.
        num_encoder_layers, num_decoder_layers: transformer depth (each at least 1).
        dim_feedforward: hidden width of the transformer feed-forward blocks.
        dropout: dropout inside the transformer layers.
        activation: ``"relu"`` or ``"gelu"`` in the feed-forward blocks.
        norm: a final LayerNorm on the encoder and decoder outputs.
        num_layers_attn_head: Linear layers of each association-head projection (queries and
            keys), with ReLU and ``dropout_attn_head`` between them.
        dropout_attn_head: dropout between the association-head layers.
        decoder_self_attn: let the current frame's detections attend to one another in the
            decoder; off, each query only attends to itself there (cross-attention is unchanged).
        encoder_cfg: the visual encoder.
        embedding_meta: the position and time embeddings.
        geometry_bias: the relative-geometry term added to every association logit, or None
            (off). Our addition, not a DREEM key; on by default.
    """

    d_model: int = 128
    nhead: int = 4
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    dim_feedforward: int = 256
    dropout: float = 0.1
    activation: str = "relu"
    norm: bool = False
    num_layers_attn_head: int = 2
    dropout_attn_head: float = 0.1
    decoder_self_attn: bool = False
    encoder_cfg: EncoderConfig = field(default_factory=EncoderConfig)
    embedding_meta: EmbeddingMeta = field(default_factory=EmbeddingMeta)
    geometry_bias: GeometryBiasConfig | None = field(default_factory=GeometryBiasConfig)

    def __post_init__(self) -> None:
        _check_int("model.d_model", self.d_model, 1)
        _check_int("model.nhead", self.nhead, 1)
        _check_int("model.num_encoder_layers", self.num_encoder_layers, 1)
        _check_int("model.num_decoder_layers", self.num_decoder_layers, 1)
        _check_int("model.dim_feedforward", self.dim_feedforward, 1)
        _check_float("model.dropout", self.dropout, 0.0, 1.0, open_high=True)
        _check_choice("model.activation", self.activation, ACTIVATIONS)
        _check_bool("model.norm", self.norm)
        _check_int("model.num_layers_attn_head", self.num_layers_attn_head, 1)
        _check_float("model.dropout_attn_head", self.dropout_attn_head, 0.0, 1.0, open_high=True)
        _check_bool("model.decoder_self_attn", self.decoder_self_attn)
        if self.d_model % self.nhead:
            raise ModelConfigError(
                f"model.d_model ({self.d_model}) must be divisible by model.nhead ({self.nhead})"
            )
        pos = self.embedding_meta.pos
        if pos.mode != "off" and self.d_model % (8 if pos.mode == "fixed" else 4):
            need = 8 if pos.mode == "fixed" else 4
            raise ModelConfigError(
                f"model.d_model ({self.d_model}) must be a multiple of {need} for "
                f"model.embedding_meta.pos.mode '{pos.mode}' (four box coordinates"
                f"{', each sine and cosine' if pos.mode == 'fixed' else ''})"
            )
        if self.embedding_meta.temp.mode == "fixed" and self.d_model % 2:
            raise ModelConfigError(
                f"model.d_model ({self.d_model}) must be even for model.embedding_meta.temp.mode "
                f"'fixed' (sine and cosine)"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GTRModelConfig:
        """Build from a DREEM-shaped ``model:`` mapping; unknown keys and bad values raise.

        A null value means the key's default (DREEM: a blank key is its default), except that
        a null ``embedding_meta``, ``pos`` or ``temp`` turns that embedding off (DREEM's
        meaning), as do the modes ``"off"``, ``"none"`` and ``"None"``.
        """
        if data is None:
            return cls()
        data = _mapping("model", data)
        valid = [f.name for f in dataclasses.fields(cls)]
        _check_keys("model", data, valid + list(_DREEM_FIXED_KEYS))
        for key, expected in _DREEM_FIXED_KEYS.items():
            if key in data and data[key] != expected:
                raise ModelConfigError(
                    f"model.{key} is a DREEM option this network does not use; it must be "
                    f"{_yaml(expected)} or absent, got {data[key]!r}"
                )
        kwargs = {k: v for k, v in data.items() if k in valid and v is not None}
        kwargs.pop("encoder_cfg", None)
        kwargs.pop("embedding_meta", None)
        kwargs.pop("geometry_bias", None)
        if "geometry_bias" in data:
            kwargs["geometry_bias"] = _geometry_bias_from_dict(data["geometry_bias"])
        if data.get("encoder_cfg") is not None:
            kwargs["encoder_cfg"] = _encoder_from_dict(data["encoder_cfg"])
        if "embedding_meta" in data:
            kwargs["embedding_meta"] = _embedding_meta_from_dict(data["embedding_meta"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict in the DREEM ``model:`` shape; ``from_dict`` reads it back."""
        return dataclasses.asdict(self)


def _encoder_from_dict(data: Any) -> EncoderConfig:
    path = "model.encoder_cfg"
    data = _mapping(path, data)
    _check_keys(path, data, [f.name for f in dataclasses.fields(EncoderConfig)])
    return EncoderConfig(**{k: v for k, v in data.items() if v is not None})


def _geometry_bias_from_dict(data: Any) -> GeometryBiasConfig | None:
    """``model.geometry_bias``: null or false turns it off, true or a mapping turns it on."""
    path = "model.geometry_bias"
    if data is None or data is False:
        return None
    if data is True:
        return GeometryBiasConfig()
    data = _mapping(path, data)
    _check_keys(path, data, [f.name for f in dataclasses.fields(GeometryBiasConfig)])
    return GeometryBiasConfig(**{k: v for k, v in data.items() if v is not None})


def _embedding_meta_from_dict(data: Any) -> EmbeddingMeta:
    path = "model.embedding_meta"
    if data is None:
        return EmbeddingMeta(pos=PosEmbeddingConfig(mode="off"), temp=TempEmbeddingConfig("off"))
    data = _mapping(path, data)
    _check_keys(path, data, ["pos", "temp"])
    pos = PosEmbeddingConfig()
    temp = TempEmbeddingConfig()
    if "pos" in data:
        pos = _embedding_from_dict(f"{path}.pos", data["pos"], PosEmbeddingConfig)
    if "temp" in data:
        temp = _embedding_from_dict(f"{path}.temp", data["temp"], TempEmbeddingConfig)
    return EmbeddingMeta(pos=pos, temp=temp)


def _embedding_from_dict(path: str, data: Any, cls: type) -> Any:
    """One embedding section; null or an "off" alias as the section or its mode turns it off."""
    if data is None:
        return cls(mode="off")
    data = _mapping(path, data)
    _check_keys(path, data, [f.name for f in dataclasses.fields(cls)])
    kwargs = {k: v for k, v in data.items() if v is not None}
    mode = data.get("mode", "fixed")
    kwargs["mode"] = "off" if mode in _OFF_ALIASES else mode
    if cls is PosEmbeddingConfig and kwargs.get("mlp_cfg") is not None:
        mlp_path = f"{path}.mlp_cfg"
        mlp = _mapping(mlp_path, kwargs["mlp_cfg"])
        _check_keys(mlp_path, mlp, [f.name for f in dataclasses.fields(MLPConfig)])
        kwargs["mlp_cfg"] = MLPConfig(**{k: v for k, v in mlp.items() if v is not None})
    return cls(**kwargs)


def _mapping(path: str, data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ModelConfigError(f"{path} must be a mapping, got {type(data).__name__}")
    return data


def _check_keys(path: str, data: Mapping[str, Any], valid: list[str]) -> None:
    for key in data:
        if key not in valid:
            raise ModelConfigError(
                f"Unknown key '{path}.{key}'{did_you_mean(key, valid)} "
                f"(valid keys: {', '.join(valid)})"
            )


def _yaml(value: Any) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    )


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ModelConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ModelConfigError(f"{key} must be true or false, got {value!r}")


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelConfigError(f"{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ModelConfigError(f"{key} must be >= {minimum}, got {value}")


def _check_float(
    key: str, value: Any, low: float, high: float, open_low: bool = False, open_high: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ModelConfigError(f"{key} must be a number, got {value!r}")
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        lower = f"> {low}" if open_low else f">= {low}"
        upper = "" if math.isinf(high) else (f" and < {high}" if open_high else f" and <= {high}")
        raise ModelConfigError(f"{key} must be {lower}{upper}, got {value}")


# ----------------------------------------------------------------------------------------------
# Visual encoder
# ----------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Four stride-2 conv blocks and global average pooling: a cheap appearance descriptor.

    GroupNorm rather than BatchNorm: a window holds a handful of crops of very few animals, so
    batch statistics would be noisy and would differ between training and tracking.
    """

    def __init__(self, in_chans: int, d_model: int, widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for width in widths:
            layers += [
                nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(8, width),
                nn.ReLU(inplace=True),
            ]
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _resnet18(in_chans: int, d_model: int) -> nn.Module:
    """torchvision's ResNet-18 with random weights, ``in_chans`` inputs and a d_model output."""
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=d_model)
    if in_chans != 3:
        net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


class VisualEncoder(nn.Module):
    """Crops (N, C, S, S) in [0, 1] -> appearance features (N, d_model)."""

    def __init__(self, cfg: EncoderConfig, d_model: int):
        super().__init__()
        self.in_chans = cfg.in_chans
        if cfg.model_name == "cnn":
            self.net = SmallCNN(cfg.in_chans, d_model)
        else:
            self.net = _resnet18(cfg.in_chans, d_model)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.ndim != 4:
            raise ValueError(
                f"Detections.crops must be (N, C, S, S), got shape {tuple(crops.shape)}"
            )
        if not crops.is_floating_point():
            raise ValueError(f"Detections.crops must be float in [0, 1], got {crops.dtype}")
        channels = crops.shape[1]
        if channels != self.in_chans:
            if channels == 1 and self.in_chans == 3:
                crops = crops.expand(-1, 3, -1, -1)
            else:
                raise ValueError(
                    f"Detections.crops have {channels} channels but model.encoder_cfg.in_chans "
                    f"is {self.in_chans}"
                )
        # Centre the [0, 1] intensities so the first layer starts near its working range.
        return self.net((crops - 0.5) / 0.25)


# ----------------------------------------------------------------------------------------------
# Position and time embeddings
# ----------------------------------------------------------------------------------------------


def sinusoid_frequencies(n: int, scale: float, temperature: float) -> torch.Tensor:
    """``n`` angular frequencies, geometric from ``scale`` down to ``scale / temperature``."""
    if n == 1:
        return torch.tensor([float(scale)])
    steps = torch.arange(n, dtype=torch.float64) / (n - 1)
    return (scale * temperature ** (-steps)).float()


def _flatness(freqs: torch.Tensor, span: float) -> float:
    """Mean cosine similarity of the sinusoid embeddings of inputs ``span / 2`` to ``span`` apart.

    Each sine/cosine pair is a unit vector rotated by ``freq * distance``, so the similarity at
    one distance is the mean cosine of those angles. Averaging over a range of distances keeps a
    frequency that happens to turn a whole number of times from hiding a flat embedding.
    """
    distances = torch.linspace(span / 2, span, 16, dtype=torch.float64)
    return float(torch.cos(distances[:, None] * freqs.double()[None]).mean())


class SinusoidEmbedding(nn.Module):
    """Values (N, K) -> (N, K, 2n): sines then cosines at ``n`` fixed frequencies per value."""

    def __init__(self, n: int, scale: float, temperature: float, key: str, span: float):
        super().__init__()
        freqs = sinusoid_frequencies(n, scale, temperature)
        self.register_buffer("freqs", freqs, persistent=False)
        flat = _flatness(freqs, span)
        if flat > _FLAT_SIMILARITY:
            warnings.warn(
                f"{key}: with scale {scale:g} and temperature {temperature:g} the embeddings "
                f"of inputs {span / 2:g} to {span:g} apart have cosine similarity {flat:.2f}: "
                f"they can barely be told apart; raise {key}.scale",
                stacklevel=3,
            )

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        angles = values.unsqueeze(-1) * self.freqs.to(values.dtype)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class HingeMLPEmbedding(nn.Module):
    """Values (N, K) -> (N, K, out): an independent two-layer MLP (1 -> hidden -> out) per value.

    Hidden unit i is the hinge ``relu(v - knot_i)`` with ``hidden`` knots evenly spaced over
    [0, 1], and the output layer starts so that the MLP linearly interpolates a table of
    ``hidden`` random vectors placed at the knots (and keeps the last slope past 1). So values a
    knot interval apart start with nearly unrelated embeddings and close values with similar
    ones; training then moves knots, slopes and vectors freely. (An MLP with default
    initialisation on a scalar is close to affine in it: the embeddings of a whole window would
    then point almost the same way.)
    """

    def __init__(self, n_values: int, hidden: int, out: int):
        super().__init__()
        knots = torch.linspace(0.0, 1.0, hidden)
        table = torch.randn(n_values, hidden, out)
        slopes = (table[:, 1:] - table[:, :-1]) * (hidden - 1)  # (K, hidden - 1, out)
        w2 = torch.zeros(n_values, hidden, out)
        w2[:, 0] = slopes[:, 0]
        w2[:, 1:-1] = slopes[:, 1:] - slopes[:, :-1]
        self.w1 = nn.Parameter(torch.ones(n_values, hidden))
        self.b1 = nn.Parameter(-knots.repeat(n_values, 1))
        self.w2 = nn.Parameter(w2)
        self.b2 = nn.Parameter(table[:, 0].clone())

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(values.unsqueeze(-1) * self.w1 + self.b1)  # (N, K, hidden)
        return torch.einsum("nkh,kho->nko", hidden, self.w2) + self.b2


def _mlp(d_in: int, hidden: int, d_out: int, n_hidden: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = d_in
    for _ in range(n_hidden):
        layers += [nn.Linear(prev, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        prev = hidden
    layers.append(nn.Linear(prev, d_out))
    return nn.Sequential(*layers)


class BoxEmbedding(nn.Module):
    """Boxes -> (N, d_model): four coordinates, each normalised by its own axis, embedded apart.

    The four coordinate embeddings (d_model / 4 each) are concatenated, x1 | y1 | x2 | y2 (or
    cx | cy | w | h), so moving a box along x changes only the x parts; the optional
    ``mlp_cfg`` MLP then mixes them. Detections with a non-finite box (missing points) get a
    zero embedding: no position information rather than NaN.
    """

    def __init__(self, cfg: PosEmbeddingConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.d_model = d_model
        part = d_model // 4
        self.coords: nn.Module | None = None
        if cfg.mode == "fixed":
            # Flatness is judged between boxes an eighth of a frame apart (128 px on 1024).
            span = 0.125 if cfg.normalize else 128.0
            self.coords = SinusoidEmbedding(
                part // 2, cfg.effective_scale, cfg.temperature, "model.embedding_meta.pos", span
            )
        elif cfg.mode == "learned":
            self.coords = HingeMLPEmbedding(4, cfg.emb_num, part)
        self.mlp: nn.Module | None = None
        if cfg.mode != "off" and cfg.mlp_cfg is not None:
            m = cfg.mlp_cfg
            self.mlp = _mlp(d_model, m.hidden_dims, d_model, m.num_layers, m.dropout)

    def coordinates(self, dets: Detections) -> torch.Tensor:
        """(N, 4) the values embedded: x1, y1, x2, y2 or cx, cy, w, h, per-axis normalised."""
        boxes = dets.boxes.float()
        if self.cfg.over_boxes:
            values = boxes
        else:
            centre = dets.centroids.float()
            size = boxes[:, 2:] - boxes[:, :2]
            values = torch.cat([centre, size], dim=1)
        if self.cfg.normalize:
            height, width = dets.image_hw
            values = values / values.new_tensor([width, height, width, height])
        return values

    def coordinate_parts(self, dets: Detections) -> torch.Tensor:
        """(N, 4, d_model / 4): the embedding of each coordinate before any mixing MLP."""
        if self.coords is None:
            return dets.boxes.new_zeros((len(dets), 4, self.d_model // 4), dtype=torch.float32)
        values = self.coordinates(dets)
        finite = torch.isfinite(values).all(dim=1)
        parts = self.coords(torch.where(finite[:, None], values, torch.zeros_like(values)))
        return parts * finite[:, None, None]

    def forward(self, dets: Detections) -> torch.Tensor:
        if self.coords is None:
            return dets.boxes.new_zeros((len(dets), self.d_model), dtype=torch.float32)
        emb = self.coordinate_parts(dets).flatten(1)
        return emb if self.mlp is None else self.mlp(emb)


class TimeEmbedding(nn.Module):
    """Frames -> (N, d_model) from the offset to the window's first frame over ``max_window``."""

    def __init__(self, cfg: TempEmbeddingConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.d_model = d_model
        self.embed: nn.Module | None = None
        if cfg.mode == "fixed":
            # Flatness is judged across a quarter of max_window (at least one frame): tracker
            # windows are usually far shorter than training clips.
            span = max(1, cfg.max_window // 4) / cfg.max_window
            self.embed = SinusoidEmbedding(
                d_model // 2,
                cfg.effective_scale,
                cfg.effective_temperature,
                "model.embedding_meta.temp",
                span,
            )
        elif cfg.mode == "learned":
            self.embed = HingeMLPEmbedding(1, cfg.emb_num, d_model)

    def relative_time(self, frames: torch.Tensor, window_start: int | torch.Tensor) -> torch.Tensor:
        """(N,) ``(frame - window_start) / max_window`` as float."""
        return (frames - window_start).float() / float(self.cfg.max_window)

    def forward(self, frames: torch.Tensor, window_start: int | torch.Tensor) -> torch.Tensor:
        if self.embed is None:
            return torch.zeros((frames.shape[0], self.d_model), device=frames.device)
        times = self.relative_time(frames, window_start)
        return self.embed(times[:, None])[:, 0]


class GeometryBias(nn.Module):
    """(n_query, n_window) logits from how each query box lies relative to each window box.

    Why: the transformer sees absolute positions, and from the few videos a lab proofreads it
    learns where *those* animals walked; on another video (another arena, other animals) those
    positions mean nothing and it swaps identities that a nearest-neighbour rule keeps apart.
    Motion between frames, relative to an animal's size, carries over between videos. So each
    (query, window) pair gets features that do not change when the whole scene is moved,
    rotated, mirrored or scaled, and a small MLP turns them into a logit added to the
    transformer's:

    * centre distance over the animals' size (the root of the mean box area of the two),
      as ``log(1 + d)``;
    * the same distance to where the window detection's track would be at the query's frame,
      moving on at the velocity of its previous detection in the window (same ``track_ids``:
      ground truth in training, the tracker's assignments when tracking), and whether such a
      previous detection exists (if not, the plain distance is repeated);
    * the IoU of the two boxes;
    * the frame gap over ``max_window`` (the time embedding's scale);
    * the log ratio of the two box areas.

    The last layer starts at zero, so a fresh network starts as the plain transformer and
    learns how much to trust geometry. Non-finite features (missing boxes) become zero.
    """

    N_FEATURES = 6

    def __init__(self, cfg: GeometryBiasConfig, max_window: int):
        super().__init__()
        self.max_window = float(max_window)
        self.mlp = _mlp(self.N_FEATURES, cfg.hidden_dims, 1, cfg.num_layers, 0.0)
        last = self.mlp[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def features(self, window: Detections, query: Detections) -> torch.Tensor:
        """(n_query, n_window, 6) the pair features described in the class docstring."""
        from torchvision.ops import box_iou  # torchvision's own, imported when first needed

        qb, wb = query.boxes.float(), window.boxes.float()
        q_area = (qb[:, 2] - qb[:, 0]) * (qb[:, 3] - qb[:, 1])
        w_area = (wb[:, 2] - wb[:, 0]) * (wb[:, 3] - wb[:, 1])
        size = (0.5 * (q_area[:, None] + w_area[None, :])).clamp_min(1.0).sqrt()
        qc, wc = query.centroids.float(), window.centroids.float()
        distance = (qc[:, None, :] - wc[None, :, :]).norm(dim=-1) / size
        frame_gap = (query.frames[:, None] - window.frames[None, :]).float()
        velocity, moving = _track_velocities(window)
        predicted = wc[None, :, :] + velocity[None, :, :] * frame_gap[..., None]
        predicted_distance = (qc[:, None, :] - predicted).norm(dim=-1) / size
        predicted_distance = torch.where(moving[None, :], predicted_distance, distance)
        iou = box_iou(qb.nan_to_num(0.0), wb.nan_to_num(0.0)).nan_to_num(0.0)
        ratio = (q_area[:, None].clamp_min(1.0) / w_area[None, :].clamp_min(1.0)).log()
        feats = torch.stack(
            [
                distance.log1p(),
                predicted_distance.log1p(),
                moving[None, :].expand_as(distance).float(),
                iou,
                frame_gap / self.max_window,
                ratio,
            ],
            dim=-1,
        )
        return torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats))

    def forward(self, window: Detections, query: Detections) -> torch.Tensor:
        return self.mlp(self.features(window, query))[..., 0]


def _track_velocities(window: Detections) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window detection: (n, 2) velocity in px/frame from the latest earlier detection of
    its track in the window, and (n,) whether it has one (unknown track -1 never does)."""
    frames = window.frames
    ids = window.track_ids
    earlier = (
        (ids[:, None] == ids[None, :]) & (ids[:, None] >= 0) & (frames[None, :] < frames[:, None])
    )
    latest = torch.where(earlier, frames[None, :], frames.new_full((), -1)).argmax(dim=1)
    moving = earlier.any(dim=1)
    c = window.centroids.float()
    gap = (frames - frames[latest]).clamp_min(1).float()
    velocity = (c - c[latest]) / gap[:, None]
    velocity = torch.where(moving[:, None] & torch.isfinite(velocity), velocity, 0.0)
    return velocity, moving & torch.isfinite(velocity).all(dim=1)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


class GlobalTrackingTransformer(nn.Module):
    """Scores every detection of the current frame against every detection of a window.

    ``forward(window, query)`` returns logits (n_query, n_window); higher means more likely the
    same animal. The module is device-agnostic: move it and the Detections to one device (the
    callers pick it with ``pipeline_lib.devices.pick_device``).

    ``no_match_logit`` is a learned scalar: the score of "this query continues none of the
    window's tracks", for :func:`pipeline_lib.tracking.gtr.loss.association_loss`. It lives
    here so that it is saved and loaded with the weights.
    """

    def __init__(self, config: GTRModelConfig | None = None):
        super().__init__()
        self.config = config if config is not None else GTRModelConfig()
        cfg = self.config
        d = cfg.d_model
        self.visual = VisualEncoder(cfg.encoder_cfg, d)
        self.pos_embedding = BoxEmbedding(cfg.embedding_meta.pos, d)
        self.temp_embedding = TimeEmbedding(cfg.embedding_meta.temp, d)
        enc_layer = nn.TransformerEncoderLayer(
            d, cfg.nhead, cfg.dim_feedforward, cfg.dropout, cfg.activation, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(
            enc_layer,
            cfg.num_encoder_layers,
            norm=nn.LayerNorm(d) if cfg.norm else None,
            enable_nested_tensor=False,
        )
        dec_layer = nn.TransformerDecoderLayer(
            d, cfg.nhead, cfg.dim_feedforward, cfg.dropout, cfg.activation, batch_first=True
        )
        self.decoder = nn.TransformerDecoder(
            dec_layer, cfg.num_decoder_layers, norm=nn.LayerNorm(d) if cfg.norm else None
        )
        n_hidden = cfg.num_layers_attn_head - 1
        self.query_proj = _mlp(d, d, d, n_hidden, cfg.dropout_attn_head)
        self.key_proj = _mlp(d, d, d, n_hidden, cfg.dropout_attn_head)
        self.geometry_bias: GeometryBias | None = None
        if cfg.geometry_bias is not None:
            max_window = cfg.embedding_meta.temp.max_window
            self.geometry_bias = GeometryBias(cfg.geometry_bias, max_window)
        self.no_match_logit = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GlobalTrackingTransformer:
        """A fresh network from a DREEM-shaped ``model:`` mapping (see ``GTRModelConfig``)."""
        return cls(GTRModelConfig.from_dict(data))

    def embed(
        self, dets: Detections, window_start: int | torch.Tensor, use_vis_feats: bool = True
    ) -> torch.Tensor:
        """(N, d_model) input tokens: appearance + position + time, summed.

        With ``use_vis_feats=False`` the appearance term is zero and the crops are not read.
        """
        if use_vis_feats:
            tokens = self.visual(dets.crops)
        else:
            tokens = torch.zeros(
                (len(dets), self.config.d_model), device=dets.boxes.device, dtype=torch.float32
            )
        tokens = tokens + self.pos_embedding(dets).to(tokens.dtype)
        return tokens + self.temp_embedding(dets.frames, window_start).to(tokens.dtype)

    def forward(
        self, window: Detections, query: Detections, use_vis_feats: bool = True
    ) -> torch.Tensor:
        """Association logits (len(query), len(window)) of each query against each window item.

        The window's start (the time origin) is the earliest frame among window and query.
        An empty window or query gives an empty (n_query, n_window) tensor.
        """
        if window.image_hw != query.image_hw:
            raise ValueError(
                f"window frames are {window.image_hw} (h, w) but query frames are "
                f"{query.image_hw}: both must come from one video"
            )
        n_window, n_query = len(window), len(query)
        if n_window == 0 or n_query == 0:
            return torch.zeros((n_query, n_window), device=query.boxes.device)
        dets = Detections.concat([window, query])
        start = dets.frames.min()
        tokens = self.embed(dets, start, use_vis_feats)[None]  # (1, N, d)
        memory = self.encoder(tokens)
        tgt_mask = None
        if not self.config.decoder_self_attn and n_query > 1:
            tgt_mask = ~torch.eye(n_query, dtype=torch.bool, device=memory.device)
        decoded = self.decoder(memory[:, n_window:], memory, tgt_mask=tgt_mask)[0]
        queries = self.query_proj(decoded)
        keys = self.key_proj(memory[0, :n_window])
        logits = queries @ keys.T / math.sqrt(self.config.d_model)
        if self.geometry_bias is not None:
            logits = logits + self.geometry_bias(window, query).to(logits.dtype)
        return logits

    def associate(
        self, window: Detections, query: Detections, use_vis_feats: bool = True
    ) -> torch.Tensor:
        """``forward`` for tracking: eval mode (no dropout) and no autograd.

        The module's previous train/eval mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self.forward(window, query, use_vis_feats=use_vis_feats)
        finally:
            self.train(was_training)
