"""Strict JSON for every file the pipeline writes: no bare ``NaN`` / ``Infinity``, each null
explained.

Python's ``json`` writes ``float("nan")`` as ``NaN``, which is not JSON: strict parsers (``jq``,
JavaScript's ``JSON.parse``, many databases) reject the whole file. A metric is NaN for a
reason (no ground-truth instance matched, nothing to divide by), so the writer turns each
non-finite number into ``null`` and records why under :data:`WHY_NULL_KEY` of the top-level
object: callers that know the reasons pass them as ``{key path: reason}``; any other null
gets :data:`DEFAULT_REASON`. Readers of these files treat ``null`` as "no value".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

WHY_NULL_KEY = "why_null"
DEFAULT_REASON = "not a finite number (NaN or infinity): there was nothing to compute it from"


def strict_json_data(
    data: Any, why_null: Mapping[str, str] | None = None
) -> tuple[Any, dict[str, str]]:
    """``data`` with every non-finite float replaced by None, and ``{key path: reason}`` for
    those nulls.

    A key path is dotted (``distance.p50``); list items share their list's path, so a list of
    NaNs gets one note. A null inside a path given in ``why_null`` (the longest that matches)
    is noted once under that path with its reason; any other under its own path.
    """
    reasons = dict(why_null or {})
    notes: dict[str, str] = {}

    def note(path: str) -> None:
        prefix = _longest_prefix(path, reasons)
        if prefix is None:
            notes.setdefault(path or "(value)", DEFAULT_REASON)
        else:
            notes.setdefault(prefix, reasons[prefix])

    def walk(value: Any, path: str) -> Any:
        if hasattr(value, "tolist") and not isinstance(value, str):
            value = value.tolist()  # numpy arrays and scalars
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            note(path)
            return None
        if isinstance(value, Mapping):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, path) for v in value]
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value

    return walk(data, ""), notes


def dumps_strict(
    data: Any,
    why_null: Mapping[str, str] | None = None,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """``data`` as strict JSON text; a top-level object gets a :data:`WHY_NULL_KEY` entry
    naming each null made from a non-finite number and why (see :func:`strict_json_data`)."""
    clean, notes = strict_json_data(data, why_null)
    if notes and isinstance(clean, dict):
        clean[WHY_NULL_KEY] = {**(clean.get(WHY_NULL_KEY) or {}), **notes}
    return json.dumps(clean, indent=indent, allow_nan=False, default=default or _unknown)


def _longest_prefix(path: str, reasons: Mapping[str, str]) -> str | None:
    """The longest key of ``reasons`` equal to ``path`` or one of its dotted ancestors."""
    best = None
    for prefix in reasons:
        if (path == prefix or path.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return best


def _unknown(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")
