"""Training curves of the report (matplotlib, no display needed). Example frames live in
``report.frames`` and pose-accuracy figures in ``report.pose_figures``.
"""

from __future__ import annotations

import os

import pandas as pd

from pipeline_lib.io.atomic import atomic_path


def plot_training_curve(frame: pd.DataFrame, title: str, out_png: str | os.PathLike) -> None:
    """Loss per epoch (train: mean of the epoch's rows; val: the epoch's value) and, when
    logged, the learning rate, saved as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    has_lr = "learning_rate" in frame and frame["learning_rate"].notna().any()
    fig = Figure(figsize=(7, 5.5 if has_lr else 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if has_lr else 1, 1, sharex=True, squeeze=False)[:, 0]
    loss_ax = axes[0]
    by_epoch = frame.groupby("epoch")
    plotted = False
    for column, label in (("train_loss", "train"), ("val_loss", "validation")):
        series = by_epoch[column].mean().dropna()
        if len(series):
            loss_ax.plot(series.index, series.values, marker="o", markersize=3, label=label)
            plotted = True
    if plotted:
        positive = frame[["train_loss", "val_loss"]].stack()
        if len(positive) and (positive > 0).all():
            loss_ax.set_yscale("log")
        loss_ax.legend()
    else:
        loss_ax.text(
            0.5, 0.5, "no losses logged", ha="center", va="center", transform=loss_ax.transAxes
        )
    loss_ax.set_ylabel("loss")
    loss_ax.set_title(title)
    loss_ax.grid(alpha=0.3)
    if has_lr:
        lr = by_epoch["learning_rate"].last().dropna()
        axes[1].plot(lr.index, lr.values, color="tab:gray")
        axes[1].set_ylabel("learning rate")
        axes[1].grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
