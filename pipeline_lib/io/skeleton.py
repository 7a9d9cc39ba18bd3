"""Skeletons in the serialised form sleap-nn writes into ``data_config.skeletons``.

Resolved training configs carry the skeleton this way so a run directory is self-contained; the
legacy SLEAP converter writes the same form.
"""

from __future__ import annotations

import sleap_io as sio


def skeleton_to_dict(skeleton: sio.Skeleton) -> dict:
    """Skeleton in the serialised form sleap-nn writes into ``data_config.skeletons``."""
    return {
        "name": skeleton.name,
        "nodes": [{"name": n} for n in skeleton.node_names],
        "edges": [
            {"source": {"name": e.source.name}, "destination": {"name": e.destination.name}}
            for e in skeleton.edges
        ],
        "symmetries": [[n.name for n in sym.nodes] for sym in skeleton.symmetries],
    }


def skeleton_from_dict(data: dict) -> sio.Skeleton:
    """Inverse of :func:`skeleton_to_dict`; also reads sleap-nn's own serialised skeletons."""
    nodes = [n["name"] if isinstance(n, dict) else str(n) for n in data["nodes"]]
    edges = []
    for e in data.get("edges", []):
        if isinstance(e, dict):
            edges.append((e["source"]["name"], e["destination"]["name"]))
        else:
            edges.append((e[0], e[1]))
    symmetries = []
    for s in data.get("symmetries") or []:
        if isinstance(s, dict):  # sleap-nn style: {"nodes": [{"name": ...}, ...]} or similar
            names = [n["name"] if isinstance(n, dict) else n for n in s.get("nodes", [])]
        else:
            names = [n["name"] if isinstance(n, dict) else n for n in s]
        if len(names) == 2:
            symmetries.append(tuple(names))
    return sio.Skeleton(nodes=nodes, edges=edges, symmetries=symmetries, name=data.get("name"))
