"""Does a training config fit the skeleton of the labels it will train on?

``part_names``, ``anchor_part`` and bottom-up ``edges`` name skeleton nodes. A misspelt node
otherwise surfaces only when training resolves the config, after the labels were split and
their frames decoded into the cache. Checking against the skeleton's node names alone (read
from the labels file's header, no frames) lets the workflow refuse such a config while it is
parsed and the command line before it starts any work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pipeline_lib.config.loader import ConfigError, did_you_mean, model_type
from pipeline_lib.config.training_config import TrainingJobConfig


def skeleton_problems(cfg: TrainingJobConfig, node_names: Sequence[str]) -> list[str]:
    """Every place in ``cfg`` that names a node missing from ``node_names``, as messages that
    say the config key, the unknown name and (when one is close) the node probably meant."""
    head = model_type(cfg)
    section = getattr(cfg.model_config.head_configs, head)
    prefix = f"model_config.head_configs.{head}"
    nodes = list(node_names)
    problems: list[str] = []

    def unknown(key: str, name: object) -> None:
        hint = did_you_mean(name, nodes) if isinstance(name, str) else ""
        problems.append(
            f"{prefix}.{key}: {name!r} is not a node of the skeleton ({', '.join(nodes)}){hint}"
        )

    confmaps = getattr(section, "confmaps", None)
    for name in getattr(confmaps, "part_names", None) or []:
        if name not in nodes:
            unknown("confmaps.part_names", name)
    anchor = getattr(confmaps, "anchor_part", None)
    if anchor is not None and anchor not in nodes:
        unknown("confmaps.anchor_part", anchor)
    pafs = getattr(section, "pafs", None)
    parts = getattr(confmaps, "part_names", None) or nodes
    for pair in getattr(pafs, "edges", None) or []:
        for end in pair:
            if isinstance(end, int):
                if not 0 <= end < len(parts):
                    problems.append(
                        f"{prefix}.pafs.edges: node index {end} is out of range for "
                        f"{len(parts)} parts"
                    )
            elif end not in nodes:
                unknown("pafs.edges", end)
    return problems


def check_skeleton_fits(
    cfg: TrainingJobConfig, node_names: Sequence[str], config_source: str, labels_source: str
) -> None:
    """Raise a :class:`ConfigError` naming the config file, the key and the labels file when the
    config names nodes that the skeleton of ``labels_source`` does not have."""
    problems = skeleton_problems(cfg, node_names)
    if problems:
        problems = [f"{p} (skeleton of {labels_source})" for p in problems]
        raise ConfigError(problems, config_source)


def check_labels_fit(
    cfg: TrainingJobConfig, labels_paths: Sequence[str | os.PathLike], config_source: str
) -> list[str]:
    """Check, from the files' headers only, that the labels files share one skeleton and that
    ``cfg`` names only its nodes; return the node names.

    Raises :class:`~pipeline_lib.io.labels.LabelsError` for unreadable files or differing
    skeletons (naming both files) and :class:`ConfigError` for names the skeleton lacks.
    """
    from pipeline_lib.io.labels import LabelsError, read_skeleton_nodes

    nodes: list[str] | None = None
    first = None
    for path in labels_paths:
        these = read_skeleton_nodes(path)
        if nodes is None:
            nodes, first = these, path
        elif these != nodes:
            raise LabelsError(
                f"Skeleton of {path} (nodes {these}) differs from {first} (nodes {nodes})"
            )
    if nodes is None:
        raise LabelsError("No labels files were given")
    check_skeleton_fits(cfg, nodes, config_source, str(first))
    return nodes
