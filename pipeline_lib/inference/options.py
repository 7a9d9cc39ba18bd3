"""Inference settings: one dataclass that is the pipeline config's ``inference`` section, the
options of ``pipeline-lib predict`` / ``evaluate`` (their flags are generated from it), and what
predictors read. Kept free of torch so the command line starts fast."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from pipeline_lib.devices import PRECISIONS


def _opt(default, help: str, choices: tuple | None = None):
    """A field with its command-line help (and allowed values) in its metadata."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class InferenceOptions:
    """User-facing inference settings (the ``inference`` section of the pipeline config)."""

    batch_size: int = _opt(4, "frames per network batch")
    peak_threshold: float = _opt(0.2, "confidence-map peaks below this are not points")
    # "gaussian" by default: on held-out frames it was more accurate than sleap-nn's "integral"
    # on both datasets measured (bench/RESULTS.md, inference section).
    refinement: str | None = _opt(
        "gaussian", "sub-pixel peak refinement", ("integral", "gaussian", "local", "none")
    )
    integral_patch_size: int = _opt(5, "patch (cells) of integral refinement")
    max_instances: int | None = _opt(None, "keep at most this many instances per frame")
    device: str = _opt("auto", "auto (CUDA, MPS, else CPU), cpu, cuda, cuda:1, mps")
    precision: str = _opt(
        "auto",
        "auto: bf16 autocast on CPUs with native bf16, else fp32; heads always run in fp32",
        PRECISIONS,
    )
    # Bottom-up grouping (see pipeline_lib.inference.paf_grouping for their meaning).
    paf_n_points: int = _opt(10, "bottom-up: PAF samples along each candidate edge")
    max_edge_length_ratio: float = _opt(
        0.25, "bottom-up: longest edge, as a fraction of the larger image side"
    )
    dist_penalty_weight: float = _opt(1.0, "bottom-up: weight of the long-edge penalty")
    min_line_scores: float = _opt(0.25, "bottom-up: minimum PAF line score of an edge")
    min_instance_peaks: int | float = _opt(
        0, "bottom-up: minimum nodes (or fraction of nodes) of an instance"
    )
    max_peaks_per_node: int = _opt(32, "bottom-up: strongest peaks kept per node and frame")
    # Post-filters (see pipeline_lib.inference.filters), all off by default.
    min_visible_nodes: int = _opt(0, "drop instances with fewer found nodes")
    min_instance_score: float | None = _opt(None, "drop instances scoring lower")
    min_mean_node_score: float | None = _opt(None, "drop instances with a lower mean node score")
    overlap_nms: str | None = _opt(None, "suppress overlapping duplicates", ("iou", "oks", "none"))
    overlap_threshold: float = _opt(0.8, "IoU / OKS above which the weaker instance goes")
    oks_stddev: float = _opt(0.025, "OKS sigma for overlap_nms oks")
    # Preprocessing overrides (None: as the model was trained). Scale and size apply to the
    # full-frame model (single-instance, centroid, bottom-up); crop_size to the centered-instance
    # model of a top-down pair; the channel choices to every model.
    input_scale: float | None = _opt(None, "override the full-frame model's input scale")
    max_height: int | None = _opt(None, "override the size-match height")
    max_width: int | None = _opt(None, "override the size-match width")
    ensure_rgb: bool | None = _opt(None, "convert frames to 3 channels")
    ensure_grayscale: bool | None = _opt(None, "convert frames to 1 channel")
    crop_size: int | None = _opt(None, "top-down: override the centered-instance crop size")

    @classmethod
    def from_dict(cls, data: dict | None) -> InferenceOptions:
        """Strict construction: unknown keys are an error naming them."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown inference option(s) {unknown}; valid: {sorted(known)}")
        if data.get("refinement") in ("none", "None"):
            data["refinement"] = None
        opts = cls(**data)
        if opts.refinement not in (None, "integral", "gaussian", "local"):
            raise ValueError(
                "inference.refinement must be integral, gaussian, local or none, got "
                f"{opts.refinement!r}"
            )
        if opts.batch_size < 1:
            raise ValueError(f"inference.batch_size must be >= 1, got {opts.batch_size}")
        if opts.precision not in PRECISIONS:
            raise ValueError(
                f"inference.precision must be one of {PRECISIONS}, got {opts.precision!r}"
            )
        if opts.overlap_nms in ("none", "None"):
            opts.overlap_nms = None
        if opts.overlap_nms not in (None, "iou", "oks"):
            raise ValueError(
                f"inference.overlap_nms must be iou, oks or none, got {opts.overlap_nms!r}"
            )
        for name in ("input_scale", "max_height", "max_width", "crop_size"):
            value = getattr(opts, name)
            if value is not None and value <= 0:
                raise ValueError(f"inference.{name} must be positive, got {value}")
        if opts.ensure_rgb and opts.ensure_grayscale:
            raise ValueError("inference.ensure_rgb and ensure_grayscale cannot both be true")
        if opts.min_visible_nodes < 0:
            raise ValueError(
                f"inference.min_visible_nodes must be >= 0, got {opts.min_visible_nodes}"
            )
        return opts


def option_fields() -> list:
    """The dataclass fields of :class:`InferenceOptions`, in declaration order."""
    return list(fields(InferenceOptions))
