"""Pose-accuracy figures from the raw matches an evaluation saved (``metrics.{split}.npz``).

The metrics JSON holds summaries; where a model goes wrong shows in the distributions: which
body part is off (per-node error), whether errors are a few gross misses or a general blur
(error distribution), and how accuracy grows with the tolerance (PCK curve). All three come
from the same per-keypoint distances, so they are drawn side by side in one PNG per model and
split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline_lib.evaluation.pose_metrics import PCK_THRESHOLDS, pck_curves
from pipeline_lib.io.atomic import atomic_path
from pipeline_lib.report.inputs import ReportInputError


def load_matches(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Distances (matched pairs x nodes, NaN where a side lacks the node), the ground-truth
    visibility and the node names of one evaluation's ``.npz``; empty arrays when the split
    had no labelled frames."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"Pose matches file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        if "distances" not in data:  # an empty split writes an .npz without arrays
            return {"distances": np.zeros((0, 0)), "visible": np.zeros((0, 0), bool), "nodes": []}
        for key in ("gt_points", "node_names"):
            if key not in data:
                raise ReportInputError(f"{path}: missing array '{key}'")
        distances = np.asarray(data["distances"], dtype=np.float64)
        visible = ~np.isnan(np.asarray(data["gt_points"], dtype=np.float64)).any(axis=-1)
        thresholds = data["pck_thresholds"] if "pck_thresholds" in data else PCK_THRESHOLDS
        return {
            "distances": distances,
            "visible": visible,
            "nodes": [str(n) for n in data["node_names"]],
            "pck_thresholds": np.asarray(thresholds, dtype=np.float64),
        }


def plot_pose_figures(npz_path: str | os.PathLike, title: str, out_png: str | os.PathLike) -> int:
    """Per-node error (box plot), error distribution (histogram with p50/p90) and PCK curve of
    one evaluation, saved as one PNG. Returns the number of matched instances drawn; with none,
    the PNG says so instead of showing empty axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = load_matches(npz_path)
    dists, visible, nodes = m["distances"], m["visible"], m["nodes"]
    n_pairs = int(dists.shape[0])
    fig = Figure(figsize=(14, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{title}: {n_pairs} matched instances")
    if n_pairs == 0:
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            "no predicted instance matched a ground-truth instance:\nno errors to plot",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    else:
        node_ax, hist_ax, pck_ax = fig.subplots(1, 3, width_ratios=[1.6, 1, 1])
        _per_node_box(node_ax, dists, nodes)
        _error_histogram(hist_ax, dists)
        _pck_curve(pck_ax, dists, visible, m["pck_thresholds"])
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return n_pairs


def _per_node_box(ax, dists: np.ndarray, nodes: list[str]) -> None:
    """One box per node; a node never found in a matched pair gets an empty slot, named."""
    columns = [dists[:, k][np.isfinite(dists[:, k])] for k in range(dists.shape[1])]
    ax.boxplot(columns, showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(nodes) + 1), nodes, rotation=45, ha="right")
    ax.set_ylabel("keypoint error (px)")
    ax.set_title("error per node")
    ax.grid(axis="y", alpha=0.3)


def _error_histogram(ax, dists: np.ndarray) -> None:
    values = dists[np.isfinite(dists)]
    if not values.size:
        ax.text(0.5, 0.5, "no keypoint found on both sides", ha="center", transform=ax.transAxes)
        return
    ax.hist(values, bins=40, color="tab:blue", alpha=0.8)
    for p, style in ((50, "--"), (90, ":")):
        x = float(np.percentile(values, p))
        ax.axvline(x, color="k", linestyle=style, label=f"p{p} = {x:.3g} px")
    ax.set_xlabel("keypoint error (px)")
    ax.set_ylabel("keypoints")
    ax.set_title("error distribution")
    ax.legend()


def _pck_curve(ax, dists: np.ndarray, visible: np.ndarray, thresholds: np.ndarray) -> None:
    """PCK over visible ground-truth nodes, as in the metrics file's ``pck.pck``."""
    pck = pck_curves(dists, visible, thresholds)["pck"]
    ax.plot(thresholds, pck, marker="o")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("distance threshold (px)")
    ax.set_ylabel("fraction of keypoints within")
    ax.set_title("PCK")
    ax.grid(alpha=0.3)
