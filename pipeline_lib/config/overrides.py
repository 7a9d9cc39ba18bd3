"""``key.path=value`` overrides of a training config on the command line, as sleap-nn takes them
(``pipeline-lib train config.yaml trainer_config.max_epochs=5``).

Values are read as YAML scalars or flow collections (``5``, ``1e-4``, ``null``, ``[0, 1]``,
``{a: 1}``) with the same safe loader as config files; the merged config then goes through the
config loader's checks, so an override with a misspelt key or a wrong type is refused exactly
as the same edit in the file would be, naming the override.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.config.yaml_io import StrictSafeLoader, load_yaml

_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b.c=value`` set; a malformed override is a
    ``ValueError`` naming it."""
    merged = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        names = key.split(".")
        if not sep or not all(names):
            raise ValueError(f"Override '{item}' is not of the form key.path=value")
        try:
            value = yaml.load(text, Loader=StrictSafeLoader) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ValueError(f"Override '{item}': the value is not valid YAML ({exc})") from None
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 as text; sleap-nn's users mean a number
        node = merged
        for depth, name in enumerate(names[:-1]):
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            if not isinstance(child, dict):
                where = ".".join(names[: depth + 1])
                raise ValueError(f"Override '{item}': {where} is not a section of the config")
            node = child
        node[names[-1]] = value
    return merged


@contextlib.contextmanager
def config_with_overrides(
    config_path: str | os.PathLike, overrides: Sequence[str]
) -> Iterator[Path]:
    """``config_path`` itself without overrides; otherwise a temporary copy with them applied
    and checked (a ``ConfigError`` names the file and the overrides), removed afterwards. The
    run folder's copy of the config is written from it, so it records what was run."""
    if not overrides:
        yield Path(config_path)
        return
    from pipeline_lib.config.loader import ConfigError, load_training_config

    data = load_yaml(config_path)
    if not isinstance(data, Mapping):
        raise ConfigError(["expected a mapping of sections at the top level"], str(config_path))
    merged = apply_overrides(data, overrides)
    try:
        load_training_config(merged, warn_ignored=False)
    except ConfigError as exc:
        raise ConfigError(exc.problems, f"{config_path} with {' '.join(overrides)}") from None
    with tempfile.TemporaryDirectory(prefix="pipeline-lib-overrides-") as tmp:
        path = Path(tmp) / Path(config_path).name
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
        yield path
