"""Strict loading, validation and saving of sleap-nn training configs.

Why strict: a typo in a YAML key (``roration_max``) would otherwise be ignored silently and a
model trained for hours with the default instead. Every problem is reported at once, each with
its full dotted key path, what was expected and what was found, plus a did-you-mean for unknown
keys and values, and the file it came from. Conversion is driven by the dataclass schema in
``training_config.py`` (type hints + field metadata), so adding a field there is all it takes.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pipeline_lib.config import ignored
from pipeline_lib.config.training_config import (
    BACKBONE_NAMES,
    HEAD_NAMES,
    SCHEDULER_NAMES,
    TrainingJobConfig,
    is_section,
)
from pipeline_lib.config.yaml_io import YamlFileError, load_yaml
from pipeline_lib.io.atomic import write_yaml_atomic


class ConfigError(ValueError):
    """A training config that cannot be used; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"Invalid training config '{source}'" if source else "Invalid training config"
        if len(self.problems) == 1:
            message = f"{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{where}: {len(self.problems)} problems:\n{lines}"
        super().__init__(message)


# --------------------------------------------------------------------------- public API


def load_training_config(
    source: str | os.PathLike | Mapping[str, Any], warn_ignored: bool = True
) -> TrainingJobConfig:
    """Load and strictly validate a training config from a YAML file or a mapping.

    A path is read as YAML (duplicate keys are an error), except a ``.json`` path, which is a
    SLEAP <= 1.4 config converted by :func:`pipeline_lib.config.legacy.convert_legacy_config`;
    a mapping is used as-is (not modified). Omitted keys take their documented defaults. Raises
    ``ConfigError`` listing every unknown key, wrong type, out-of-range value and inconsistency
    found.

    ``warn_ignored``: give one :class:`~pipeline_lib.config.ignored.IgnoredOptionWarning` per
    sleap-nn option that is switched on but has no effect here (see
    :mod:`pipeline_lib.config.ignored`).
    """
    if isinstance(source, Mapping):
        data: Any = source
        name = None
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.suffix.lower() == ".json":
            from pipeline_lib.config.legacy import convert_legacy_config

            data = convert_legacy_config(path)
        else:
            data = _read_yaml(path)
        name = str(path)
    else:
        raise TypeError(
            f"load_training_config expects a path or a mapping, got {type(source).__name__}"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(
            [f"expected a mapping of sections at the top level, got {_found(data)}"], name
        )

    builder = _Builder()
    cfg = builder.section(TrainingJobConfig, data, "")
    if not builder.problems:
        _check_pairs(cfg, "", builder)
        _check_semantics(cfg, builder)
    if builder.problems:
        raise ConfigError(builder.problems, name)
    if warn_ignored:
        ignored.warn_ignored(cfg, name)
    return cfg


def config_to_dict(cfg: TrainingJobConfig) -> dict[str, Any]:
    """Full nested dict in sleap-nn's layout and key order, with every field present."""
    return dataclasses.asdict(cfg)


def save_training_config(cfg: TrainingJobConfig, path: str | os.PathLike) -> Path:
    """Validate ``cfg`` and write it as YAML atomically; returns the path written.

    A non-empty wandb ``api_key`` is replaced by null so a secret never lands in a run
    directory (wandb reads ``WANDB_API_KEY`` from the environment instead). The dict is
    validated by loading it back first, so a config that would not load is never written.
    """
    data = config_to_dict(cfg)
    if data["trainer_config"]["wandb"]["api_key"]:
        data["trainer_config"]["wandb"]["api_key"] = None
    try:
        load_training_config(data, warn_ignored=False)
    except ConfigError as exc:
        raise ConfigError(exc.problems, f"{os.fspath(path)} (not written)") from None
    write_yaml_atomic(path, data)
    return Path(path)


def model_type(cfg: TrainingJobConfig) -> str:
    """The model type: the name of the one non-null head in ``model_config.head_configs``."""
    return _only_set(cfg.model_config.head_configs, HEAD_NAMES, "model_config.head_configs")


def backbone_type(cfg: TrainingJobConfig) -> str:
    """The name of the one non-null backbone in ``model_config.backbone_config``."""
    return _only_set(
        cfg.model_config.backbone_config, BACKBONE_NAMES, "model_config.backbone_config"
    )


def active_head(cfg: TrainingJobConfig) -> Any:
    """The config object of the one non-null head (e.g. a ``BottomUpConfig``)."""
    return getattr(cfg.model_config.head_configs, model_type(cfg))


def active_backbone(cfg: TrainingJobConfig) -> Any:
    """The config object of the one non-null backbone (e.g. a ``UNetConfig``)."""
    return getattr(cfg.model_config.backbone_config, backbone_type(cfg))


# --------------------------------------------------------------------------- YAML reading


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"Training config not found: {path}")
    try:
        data = load_yaml(path)
    except YamlFileError as exc:
        raise ConfigError([exc.detail], str(path)) from None
    if data is None:
        raise ConfigError(["the file is empty"], str(path))
    return data


# --------------------------------------------------------------------------- conversion

_INVALID = object()
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _members(tp: Any) -> tuple[Any, ...]:
    """Members of a union type, or the type itself."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _found(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _describe(tp: Any, nested: bool = False) -> str:
    """Human wording of a type hint, e.g. ``list of str or null``."""
    members = _members(tp)
    if len(members) > 1:
        text = " or ".join(_describe(m, nested=True) for m in members if m is not type(None))
        if type(None) in members:
            text += " or null"
        return f"({text})" if nested else text
    if tp is Any:
        return "any value"
    if is_section(tp):
        return "a mapping (section)"
    origin = typing.get_origin(tp)
    if origin is list:
        return f"list of {_describe(typing.get_args(tp)[0], nested=True)}"
    if origin is dict or tp is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` or ``_INVALID``; never records problems.

    Ints are accepted for floats, and so is numeric text (PyYAML reads ``1e-6`` as a string);
    a bool is never accepted as a number.
    """
    members = _members(tp)
    if len(members) > 1:
        if value is None and type(None) in members:
            return None
        for member in members:
            if member is type(None):
                continue
            result = _coerce(value, member)
            if result is not _INVALID:
                return result
        return _INVALID
    if tp is Any:
        return copy.deepcopy(value)
    if tp is type(None):
        return None if value is None else _INVALID
    if tp is bool:
        return value if isinstance(value, bool) else _INVALID
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is int:
        return int(value) if is_number and isinstance(value, numbers.Integral) else _INVALID
    if tp is float:
        if is_number:
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
        return _INVALID
    if tp is str:
        if isinstance(value, str):
            return value
        return os.fspath(value) if isinstance(value, os.PathLike) else _INVALID
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list | tuple):
            return _INVALID
        (item_tp,) = typing.get_args(tp)
        items = [_coerce(item, item_tp) for item in value]
        return _INVALID if any(item is _INVALID for item in items) else items
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            return _INVALID
        return copy.deepcopy(dict(value))
    raise TypeError(f"unsupported type in the config schema: {tp!r}")


class _Builder:
    """Turns nested mappings into schema objects, collecting every problem on the way."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def section(self, cls: type, data: Any, path: str) -> Any:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            self.fail(path or "top level", f"expected a mapping (section), got {_found(data)}")
            return cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unsupported: dict[str, str] = getattr(cls, "UNSUPPORTED_KEYS", {})
        for key, value in data.items():
            if key in fields:
                continue
            key_path = _join(path, key)
            if key in unsupported:
                if value is not None:
                    self.fail(key_path, unsupported[key])
            else:
                self.fail(key_path, _unknown_key_message(key, list(fields)))
        hints = _hints(cls)
        kwargs = {}
        for name, fld in fields.items():
            if name not in data:
                continue
            value = self.field_value(data[name], hints[name], fld.metadata, _join(path, name))
            if value is not _INVALID:
                kwargs[name] = value
        return cls(**kwargs)

    def field_value(self, value: Any, tp: Any, meta: Mapping[str, Any], path: str) -> Any:
        normalise = meta.get("normalise")
        if normalise is not None:
            value = normalise(value)
        members = _members(tp)
        sections = [m for m in members if is_section(m)]
        if sections and value is not None:
            return self.section(sections[0], value, path)
        if sections:  # null given for a section
            return None if type(None) in members else sections[0]()
        result = _coerce(value, tp)
        if result is _INVALID:
            note = f" {meta['note']}" if meta.get("note") else ""
            self.fail(path, f"expected {_describe(tp)}{note}, got {_found(value)}")
            return _INVALID
        if result is not None:
            self.check_constraints(result, meta, path)
        return result

    def check_constraints(self, value: Any, meta: Mapping[str, Any], path: str) -> None:
        choices = meta.get("choices")
        if choices and isinstance(value, str) and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            hint = did_you_mean(value, choices)
            note = f" {meta['note']}" if meta.get("note") else ""
            self.fail(path, f"{value!r} is not one of: {allowed}{note}{hint}")
        for number in _numbers(value):
            if "ge" in meta and not number >= meta["ge"]:
                self.fail(path, f"must be >= {meta['ge']}, got {number}")
            if "gt" in meta and not number > meta["gt"]:
                self.fail(path, f"must be > {meta['gt']}, got {number}")
            if "le" in meta and not number <= meta["le"]:
                self.fail(path, f"must be <= {meta['le']}, got {number}")
            if meta.get("pow2") and not _is_power_of_two(number):
                self.fail(path, f"must be a positive power of two (1, 2, 4, 8, ...), got {number}")
        if meta.get("pairs"):
            for i, item in enumerate(value):
                if len(item) != 2:
                    self.fail(
                        f"{path}[{i}]",
                        f"expected a [source, destination] pair, got {len(item)} items {item!r}",
                    )


def _numbers(value: Any) -> list[float]:
    """The numbers a bound applies to: the value itself, or each number in a list."""
    items = value if isinstance(value, list) else [value]
    return [
        v
        for v in items
        if isinstance(v, numbers.Real)
        and not isinstance(v, bool)
        and not (isinstance(v, float) and math.isnan(v))
    ]


def _is_power_of_two(number: float) -> bool:
    return float(number).is_integer() and number > 0 and (int(number) & (int(number) - 1)) == 0


def did_you_mean(word: Any, options: Iterable[Any]) -> str:
    """``"; did you mean 'x'?"`` for the option closest to ``word``, or nothing: the one hint
    every strict config reader in the project gives for an unknown key or value."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_key_message(key: Any, valid: list[str]) -> str:
    hint = did_you_mean(key, valid) if isinstance(key, str) else ""
    if hint:
        return f"unknown key{hint}"
    return "unknown key; valid keys here: " + ", ".join(valid)


# --------------------------------------------------------------------------- semantic checks


def _check_pairs(obj: Any, path: str, builder: _Builder) -> None:
    """Walk every section and check its declared (low, high) field pairs."""
    for low, high in getattr(type(obj), "ORDERED_PAIRS", ()):
        lo, hi = getattr(obj, low), getattr(obj, high)
        if lo is not None and hi is not None and lo > hi:
            builder.fail(_join(path, low), f"{low} ({lo}) must be <= {_join(path, high)} ({hi})")
    for fld in dataclasses.fields(obj):
        child = getattr(obj, fld.name)
        if dataclasses.is_dataclass(child):
            _check_pairs(child, _join(path, fld.name), builder)


def _set_names(section: Any, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if getattr(section, name) is not None]


def _only_set(section: Any, names: tuple[str, ...], path: str) -> str:
    chosen = _set_names(section, names)
    if len(chosen) != 1:
        raise ConfigError([_exactly_one_message(path, names, chosen)])
    return chosen[0]


def _exactly_one_message(path: str, names: tuple[str, ...], chosen: list[str]) -> str:
    found = "none is set" if not chosen else f"{len(chosen)} are set ({', '.join(chosen)})"
    return f"{path}: exactly one of {', '.join(names)} must be set (non-null); {found}"


def _check_semantics(cfg: TrainingJobConfig, builder: _Builder) -> None:
    """Checks that involve more than one field."""
    heads = cfg.model_config.head_configs
    chosen_heads = _set_names(heads, HEAD_NAMES)
    if len(chosen_heads) != 1:
        builder.problems.append(
            _exactly_one_message("model_config.head_configs", HEAD_NAMES, chosen_heads)
        )

    backbones = cfg.model_config.backbone_config
    chosen_backbones = _set_names(backbones, BACKBONE_NAMES)
    if len(chosen_backbones) != 1:
        builder.problems.append(
            _exactly_one_message("model_config.backbone_config", BACKBONE_NAMES, chosen_backbones)
        )
    for name in chosen_backbones:
        backbone = getattr(backbones, name)
        if backbone.output_stride > backbone.max_stride:
            builder.fail(
                f"model_config.backbone_config.{name}.output_stride",
                f"({backbone.output_stride}) must not exceed max_stride ({backbone.max_stride})",
            )

    pre = cfg.data_config.preprocessing
    if pre.ensure_rgb and pre.ensure_grayscale:
        builder.fail(
            "data_config.preprocessing",
            "ensure_rgb and ensure_grayscale cannot both be true; set at most one",
        )

    schedulers = _set_names(cfg.trainer_config.lr_scheduler, SCHEDULER_NAMES)
    if len(schedulers) > 1:
        builder.fail(
            "trainer_config.lr_scheduler",
            f"at most one scheduler may be set, found {len(schedulers)} ({', '.join(schedulers)}); "
            "set the others to null",
        )
