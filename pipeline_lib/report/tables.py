"""Plain tables of the report, as Markdown (for summary.md) and CSV (for the HTML report)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from typing import Any

from pipeline_lib.io.atomic import write_text_atomic


def fmt(value: Any, digits: int = 3) -> str:
    """Cell text: floats rounded, missing values as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.{digits - 1}e}"  # losses are tiny: keep their significant digits
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """``columns`` are (key, header) pairs; missing keys render as ``n/a``."""
    if not rows:
        return "_none_\n"
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body]) + "\n"


def write_csv(
    path: str | os.PathLike, rows: Sequence[dict[str, Any]], columns: Sequence[str]
) -> None:
    """CSV with a fixed header (written even when there are no rows), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    write_text_atomic(path, buf.getvalue())
