"""Command-line flags generated from the option dataclasses, so ``pipeline-lib`` and the
pipeline config always offer the same options with the same help text: inference options from
:class:`~pipeline_lib.inference.options.InferenceOptions` (help in each field's metadata) and
tracker options from :class:`~pipeline_lib.tracking.options.TrackerOptions` (help from its
``Attributes:`` docstring section). Each flag takes sleap-nn's underscore spelling as well
(``--peak-threshold`` and ``--peak_threshold``)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any


def _spellings(prefix: str, name: str) -> list[str]:
    dashed = f"--{prefix}{name}".replace("_", "-")
    under = f"--{prefix.replace('-', '_')}{name}"
    return [dashed] if dashed == under else [dashed, under]


def _add_field(group, field: dataclasses.Field, dest: str, flags: list[str], text: str) -> None:
    """One flag for ``field``: a switch for a bool, else a value converted to the field's type
    (None stays "not given", so the config's value or the default applies)."""
    kind = str(field.type)
    if "bool" in kind:
        group.add_argument(*flags, dest=dest, action="store_true", default=None, help=text)
        return
    convert = float if "float" in kind else int if "int" in kind else str
    choices = (field.metadata or {}).get("choices")
    metavar = None if choices else field.name.upper()
    group.add_argument(
        *flags, dest=dest, type=convert, choices=choices, default=None, help=text, metavar=metavar
    )


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per inference option (``--peak-threshold``, ``--overlap-nms``, ...)."""
    from pipeline_lib.inference.options import option_fields

    group = parser.add_argument_group("inference options (default: the pipeline config's defaults)")
    for f in option_fields():
        text = f"{f.metadata['help']} (default: {f.default})"
        _add_field(group, f, f.name, _spellings("", f.name), text)


def inference_options(args: argparse.Namespace) -> dict[str, Any]:
    """The inference options given on the command line (the rest keep their defaults)."""
    from pipeline_lib.inference.options import option_fields

    given = {f.name: getattr(args, f.name, None) for f in option_fields()}
    return {k: v for k, v in given.items() if v is not None}


def tracker_help() -> dict[str, str]:
    """Each tracker option's help: its entry in the ``Attributes:`` section of the
    :class:`TrackerOptions` docstring (one home for that text), first sentence only."""
    from pipeline_lib.tracking.options import TrackerOptions

    section = (TrackerOptions.__doc__ or "").split("Attributes:", 1)[-1]
    entries = re.findall(r"^\s{8}(\w+): (.+?)(?=^\s{8}\w+: |\Z)", section, re.M | re.S)
    return {
        name: " ".join(text.replace("``", "").split()).split(". ")[0].rstrip(".")
        for name, text in entries
    }


def add_tracker_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """One flag per tracker option; ``prefix`` ("tracking-" on ``predict``) keeps them apart
    from inference options of the same name (``max_instances``)."""
    from pipeline_lib.tracking.options import METHODS, SIMILARITIES, TrackerOptions

    helps = tracker_help()
    choices = {"method": METHODS, "similarity": SIMILARITIES}
    group = parser.add_argument_group("tracker options (default: the tracker's defaults)")
    for f in dataclasses.fields(TrackerOptions):
        text = f"{helps.get(f.name, f.name)} (default: {f.default})"
        dest = "tracker_" + f.name
        flags = _spellings(prefix, f.name)
        if f.name in choices:
            group.add_argument(*flags, dest=dest, choices=choices[f.name], default=None, help=text)
        else:
            _add_field(group, f, dest, flags, text)


def tracker_options(args: argparse.Namespace) -> dict[str, Any]:
    """The tracker options given on the command line, by option name."""
    from pipeline_lib.tracking.options import TrackerOptions

    given = {
        f.name: getattr(args, "tracker_" + f.name, None) for f in dataclasses.fields(TrackerOptions)
    }
    return {k: v for k, v in given.items() if v is not None}
