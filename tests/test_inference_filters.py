"""Post-filters on predicted instances: each filter drops what it should and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.cli import build_parser
from pipeline_lib.inference.filters import apply_filters, box_iou, suppress_overlaps
from pipeline_lib.inference.predictors import FilteredPredictor, FrameInstances, InferenceOptions

NAN = np.nan


def frame() -> FrameInstances:
    """Four instances of a 3-node animal: a, its near-duplicate b, a separate c, a sparse d."""
    a = [[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]
    b = [[11.0, 10.0], [21.0, 21.0], [31.0, 30.0]]
    c = [[100.0, 100.0], [110.0, 110.0], [120.0, 120.0]]
    d = [[200.0, 50.0], [NAN, NAN], [NAN, NAN]]
    points = np.array([a, b, c, d])
    point_scores = np.array([[0.9, 0.9, 0.9], [0.8, 0.8, 0.8], [0.5, 0.3, 0.4], [0.95, 0.0, 0.0]])
    return FrameInstances(
        points=points,
        point_scores=point_scores,
        scores=np.array([2.7, 2.9, 1.2, 0.95]),
        extra={"centroid_scores": np.array([0.9, 0.8, 0.7, 0.6]), "note": "kept as is"},
        tracks=["a", "b", "c", "d"],
        track_scores=np.array([0.1, 0.2, 0.3, 0.4]),
    )


def kept(pred: FrameInstances) -> list[str]:
    return list(pred.tracks)


def options(**kw) -> InferenceOptions:
    return InferenceOptions.from_dict(kw)


def test_no_filters_is_the_identity():
    pred = frame()
    assert apply_filters(pred, options()) is pred


def test_min_visible_nodes():
    assert kept(apply_filters(frame(), options(min_visible_nodes=2))) == ["a", "b", "c"]
    assert kept(apply_filters(frame(), options(min_visible_nodes=1))) == ["a", "b", "c", "d"]
    assert kept(apply_filters(frame(), options(min_visible_nodes=4))) == []


def test_instance_and_mean_node_score_thresholds():
    assert kept(apply_filters(frame(), options(min_instance_score=1.0))) == ["a", "b", "c"]
    # mean over found nodes only: d's single node scores 0.95
    assert kept(apply_filters(frame(), options(min_mean_node_score=0.85))) == ["a", "d"]
    both = options(min_instance_score=1.0, min_mean_node_score=0.85)
    assert kept(apply_filters(frame(), both)) == ["a"]


@pytest.mark.parametrize("method", ["iou", "oks"])
def test_overlap_suppression_keeps_the_higher_scoring_duplicate(method):
    out = apply_filters(frame(), options(overlap_nms=method, overlap_threshold=0.5))
    assert kept(out) == ["b", "c", "d"]  # b (2.9) beats its duplicate a (2.7); order preserved
    loose = apply_filters(frame(), options(overlap_nms=method, overlap_threshold=0.999))
    assert kept(loose) == ["a", "b", "c", "d"]


def test_filters_keep_every_per_instance_field_aligned():
    out = apply_filters(frame(), options(min_visible_nodes=2, overlap_nms="iou"))
    assert kept(out) == ["b", "c"]
    assert np.array_equal(out.points, frame().points[[1, 2]], equal_nan=True)
    assert np.array_equal(out.point_scores, frame().point_scores[[1, 2]])
    assert np.array_equal(out.scores, [2.9, 1.2])
    assert np.array_equal(out.track_scores, [0.2, 0.3])
    assert np.array_equal(out.extra["centroid_scores"], [0.8, 0.7])
    assert out.extra["note"] == "kept as is"


def test_box_iou_and_suppression_by_hand():
    boxes = np.array(
        [
            [[0.0, 0.0], [10.0, 10.0]],  # area 100
            [[5.0, 0.0], [15.0, 10.0]],  # overlaps the first by 50: IoU 50 / 150
            [[NAN, NAN], [NAN, NAN]],  # nothing found: overlaps nothing
        ]
    )
    iou = box_iou(boxes)
    assert iou[0, 1] == pytest.approx(1 / 3) and iou[1, 0] == pytest.approx(1 / 3)
    assert iou[0, 0] == pytest.approx(1.0) and iou[2].sum() == 0
    assert suppress_overlaps(boxes, np.array([1.0, 2.0, 0.5]), "iou", 0.3).tolist() == [1, 2]
    assert suppress_overlaps(boxes, np.array([1.0, 2.0, 0.5]), "iou", 0.4).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="overlap_nms"):
        suppress_overlaps(boxes, np.ones(3), "area", 0.5)


def test_options_are_validated():
    with pytest.raises(ValueError, match="overlap_nms"):
        options(overlap_nms="giou")
    with pytest.raises(ValueError, match="min_visible_nodes"):
        options(min_visible_nodes=-1)
    assert options(overlap_nms="none").overlap_nms is None


class _FakePredictor:
    skeleton = "the skeleton"

    def predict(self, frames):
        return [frame() for _ in frames]


def test_filtered_predictor_filters_every_frame_and_delegates():
    wrapped = FilteredPredictor(_FakePredictor(), options(min_visible_nodes=2))
    out = wrapped.predict([None, None])
    assert [kept(p) for p in out] == [["a", "b", "c"], ["a", "b", "c"]]
    assert wrapped.skeleton == "the skeleton"


def test_cli_passes_the_filters():
    from pipeline_lib.cli_flags import inference_options as _inference_options

    args = build_parser().parse_args(
        [
            "predict",
            "m",
            "--video",
            "v.mp4",
            "--out",
            "o.slp",
            "--min-visible-nodes",
            "3",
            "--overlap-nms",
            "oks",
            "--overlap-threshold",
            "0.6",
            "--min-mean-node-score",
            "0.4",
        ]
    )
    opts = InferenceOptions.from_dict(_inference_options(args))
    assert (opts.min_visible_nodes, opts.overlap_nms, opts.overlap_threshold) == (3, "oks", 0.6)
    assert opts.min_mean_node_score == 0.4 and opts.min_instance_score is None
