"""Skeletons in the serialised form sleap-nn writes into ``data_config.skeletons``.

Resolved training configs carry the skeleton this way so a run directory is self-contained; the
legacy SLEAP converter writes the same form.
"""

from __future__ import annotations

import sleap_io as sio


def skeleton_to_dict(skeleton: sio.Skeleton) -> dict:
    """Skeleton in the serialised form sleap-nn writes into ``data_config.skeletons``.

    sleap-io keeps a symmetry's two nodes in a set, whose order follows object ids and so
    changes from one process to the next; each pair is written in skeleton node order instead.
    The resolved config feeds the training fingerprint, so an unstable order made a rerun after
    a kill discard ``last.ckpt`` and train from scratch about half the time.
    """
    order = {name: i for i, name in enumerate(skeleton.node_names)}
    return {
        "name": skeleton.name,
        "nodes": [{"name": n} for n in skeleton.node_names],
        "edges": [
            {"source": {"name": e.source.name}, "destination": {"name": e.destination.name}}
            for e in skeleton.edges
        ],
        "symmetries": [
            sorted((n.name for n in sym.nodes), key=order.__getitem__)
            for sym in skeleton.symmetries
        ],
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


class _NodePair(set):
    """A symmetry's two nodes that iterate in skeleton node order (see :func:`stable_symmetries`)."""

    def __init__(self, nodes, rank: dict[str, int]) -> None:
        super().__init__(nodes)
        self._rank = rank

    def __iter__(self):
        return iter(
            sorted(set.__iter__(self), key=lambda n: self._rank.get(n.name, len(self._rank)))
        )


def stable_symmetries(skeletons) -> None:
    """Make sleap-io write each symmetry's nodes in skeleton order, in place.

    sleap-io keeps a symmetry's nodes in a set ordered by object ids and writes the first one it
    iterates as the link's source, so the same labels saved by two processes differed in bytes
    about one time in six (measured on the demo split), and so did every file hashing them (the
    image cache records its split's SHA-256). The set is replaced by one with a fixed iteration
    order; its contents, and what sleap-io reads back, are unchanged.
    """
    for skeleton in skeletons:
        rank = {name: i for i, name in enumerate(skeleton.node_names)}
        for sym in skeleton.symmetries:
            if not isinstance(sym.nodes, _NodePair):
                # attrs would convert a plain assignment back into an ordinary set
                object.__setattr__(sym, "nodes", _NodePair(set.__iter__(sym.nodes), rank))
