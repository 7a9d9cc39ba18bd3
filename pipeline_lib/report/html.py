"""The report's HTML pages: one per section, so every table reads inside ``report.html``.

Snakemake's report viewer shows images, HTML and PDF inline and offers every other file (CSV,
Markdown, JSON) only as a download, so the numbers go on small self-contained HTML pages.
They are written here with Jinja2 (already a Snakemake dependency) from the same rows as the
CSV files, rather than with datavzrd, the snakemake-workflows convention: datavzrd is a
separate Rust program installed through a conda environment, which a pip-installed run of
this pipeline does not have, and its interactive tables need JavaScript where plain HTML tables
keep the numbers as text a browser, a test or ``grep`` can read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from pipeline_lib.io.atomic import write_text_atomic
from pipeline_lib.report.tables import fmt

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
.warn { background: #fff4e0; border-left: 4px solid #e69f00; padding: 0.4em 0.8em; }
.pass { color: #007a4d; } .fail { color: #b00020; } tr.flag td { background: #fff4e0; }
"""

_TABLE = """
{%- macro table(rows, columns, flag_key=None) -%}
{%- if rows -%}
<table><tr>{% for key, head in columns %}<th class="{{ 'text' if key in text_keys }}">{{ head }}</th>{% endfor %}</tr>
{%- for r in rows %}
<tr{% if flag_key and r.get(flag_key) %} class="flag"{% endif %}>{% for key, head in columns %}<td class="{{ 'text' if key in text_keys }}">{{ r.get(key) | fmt }}</td>{% endfor %}</tr>
{%- endfor %}
</table>
{%- else -%}<p><em>none</em></p>{%- endif -%}
{%- endmacro -%}
"""

_PAGE = (
    _TABLE
    + """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ title }}</title><style>{{ style }}</style></head>
<body><h1>{{ title }}</h1>
{% block body %}{% endblock %}
</body></html>"""
)

_WARNINGS = """{% if warnings %}<div class="warn"><strong>{{ warnings | length }} warning{{ 's' if warnings | length > 1 }}</strong><ul>
{% for w in warnings %}<li>{{ w }}</li>{% endfor %}</ul></div>{% endif %}"""

_HEADLINE = (
    """<p class="{{ 'pass' if targets and targets.passed else ('fail' if targets else '') }}">{{ targets_text }}</p>
<ul>{% for h in headline %}<li>{{ h }}</li>{% endfor %}</ul>
"""
    + _WARNINGS
)

TEMPLATES = {
    "page": _PAGE,
    "headline": _HEADLINE,
    "summary": """{% extends "page" %}{% block body %}"""
    + _HEADLINE
    + """<h2>Pose accuracy</h2>{{ table(pose, pose_columns) }}
<h2>Training</h2>{{ table(training, training_columns) }}
<h2>Videos</h2>{{ table(videos, video_columns, "track_flag") }}
<h2>Tracking accuracy</h2>{{ table(tracking, tracking_columns) }}
{% endblock %}""",
    "pose": """{% extends "page" %}{% block body %}
<p>{{ explain }}</p>{{ table(pose, pose_columns) }}
{% for block in per_node %}<h2>{{ block.title }}: error per node (px)</h2>
{{ table(block.rows, node_columns) }}{% endfor %}
{% endblock %}""",
    "tracking": """{% extends "page" %}{% block body %}
<p>Rows shaded: more tracks than animals.</p>"""
    + _WARNINGS
    + """<h2>Per video</h2>{{ table(videos, video_columns, "track_flag") }}
<h2>Tracking accuracy (videos with ground truth)</h2>{{ table(tracking, tracking_columns) }}
{% endblock %}""",
    "provenance": """{% extends "page" %}{% block body %}
<p>From provenance.json, written with the results.</p>{{ table(rows, columns) }}
{% endblock %}""",
}

#: Columns rendered left-aligned (names and free text rather than numbers).
TEXT_KEYS = {"model", "split", "video", "what", "value", "node", "track_flag", "note"}

NODE_COLUMNS = [
    ("node", "node"),
    ("n", "matched"),
    ("p50", "p50"),
    ("p90", "p90"),
    ("mean", "mean"),
]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = fmt
    env.globals.update(style=_STYLE, text_keys=TEXT_KEYS)
    return env


def render(template: str, **context: Any) -> str:
    """One page (or the home-page fragment ``headline``) as HTML text."""
    return _environment().get_template(template).render(**context)


def write_pages(
    out_dir: str | os.PathLike,
    pages: Mapping[str, tuple[str, Mapping[str, Any]]],
) -> list[str]:
    """Write ``{file name: (template, context)}`` atomically; returns the names written."""
    for name, (template, context) in pages.items():
        write_text_atomic(os.path.join(out_dir, name), render(template, **context))
    return list(pages)


def per_node_rows(nodes: Sequence[str], distances) -> list[dict[str, Any]]:
    """Median, p90 and mean keypoint error of each node over the matched instances."""
    import numpy as np

    rows = []
    for k, node in enumerate(nodes):
        d = distances[:, k][np.isfinite(distances[:, k])] if len(distances) else np.zeros(0)
        rows.append(
            {
                "node": node,
                "n": int(d.size),
                "p50": float(np.percentile(d, 50)) if d.size else None,
                "p90": float(np.percentile(d, 90)) if d.size else None,
                "mean": float(d.mean()) if d.size else None,
            }
        )
    return rows
