"""The run report from small hand-made metrics files and a real tracked .slp."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.evaluation.pose_metrics import FramePoses, evaluate_frames, save_pose_metrics
from pipeline_lib.io.atomic import write_json_atomic
from pipeline_lib.io.labels import load_labels, save_labels
from pipeline_lib.report.builder import build_report
from pipeline_lib.report.frames import choose_frames, track_colours
from pipeline_lib.report.inputs import ReportInputError, load_pose_row, load_training_log
from pipeline_lib.report.tables import fmt

N_FRAMES = 12


def pose_json(map_: float = 0.85) -> dict:
    return {
        "n_frames": 10,
        "n_gt_instances": 30,
        "n_pred_instances": 31,
        "n_matched": 29,
        "mOKS": 0.81,
        "oks_voc": {"mAP": map_, "mAR": 0.9, "thresholds": [0.5], "AP": [0.9], "AR": [0.95]},
        "distance": {"avg": 1.5, "p50": 1.25, "p75": 2.0, "p90": 3.5, "p95": 4.0, "p99": 6.0},
        "pck": {
            "thresholds": [1, 2],
            "pck": [0.5, 0.8],
            "mPCK": 0.65,
            "pck_sleap_nn": [0.6],
            "mPCK_sleap_nn": 0.6,
        },
        "visibility": {},
        "per_node": {},
    }


def tracking_json(mota: float) -> dict:
    return {
        "mota": mota,
        "motp": 0.9,
        "idf1": 0.97,
        "idp": 0.97,
        "idr": 0.97,
        "hota": 0.93,
        "deta": 0.95,
        "assa": 0.92,
        "id_switches": 1,
        "fragmentations": 2,
        "false_positives": 0,
        "misses": 1,
        "num_gt": 24,
        "num_pred": 23,
        "num_frames": 12,
        "num_gt_tracks": 2,
        "num_pred_tracks": 2,
    }


TRAINING_CSV = """epoch,step,train_loss,val_loss,learning_rate,elapsed_s
0,10,0.9,,0.001,5.0
0,20,0.7,0.8,0.001,10.0
1,30,0.5,,0.001,15.0
1,40,0.4,0.3,0.0005,20.0
2,50,0.35,0.45,0.00025,26.5
"""


@pytest.fixture(scope="module")
def tracked_slp(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """First frames of two_flies.slp (tracks F and M), saved as a tracked output would be."""
    labels = load_labels(shared_data / "dreem_assets/sleap/two_flies.slp")
    frames = sorted(labels.labeled_frames, key=lambda lf: lf.frame_idx)[:N_FRAMES]
    small = sio.Labels(
        labeled_frames=frames,
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )
    out = tmp_path_factory.mktemp("tracked") / "two_flies.tracked.slp"
    save_labels(small, out)
    return out


def make_inputs(tmp_path: Path, tracked: Path, mota: float = 0.97, map_: float = 0.85) -> dict:
    write_json_atomic(tmp_path / "m/metrics.test.json", pose_json(map_))
    write_json_atomic(tmp_path / "m/metrics.val.json", pose_json(0.5))
    (tmp_path / "m/training_log.csv").write_text(TRAINING_CSV)
    write_json_atomic(tmp_path / "two_flies.tracking_metrics.json", tracking_json(mota))
    return {
        "pose_metrics": {
            "m/test": str(tmp_path / "m/metrics.test.json"),
            "m/val": str(tmp_path / "m/metrics.val.json"),
        },
        "training_logs": {"m": str(tmp_path / "m/training_log.csv")},
        "tracked": {"two_flies": str(tracked)},
        "tracking_metrics": {"two_flies": str(tmp_path / "two_flies.tracking_metrics.json")},
    }


def test_report_files_and_values(tmp_path: Path, tracked_slp: Path) -> None:
    out = tmp_path / "report"
    summary = build_report(
        out,
        **make_inputs(tmp_path, tracked_slp),
        n_example_frames=4,
        demo_models=["m"],
        demo_videos=["two_flies"],
    )

    for name in [
        "summary.md",
        "summary.json",
        "pose_metrics.csv",
        "tracking_metrics.csv",
        "videos.csv",
        "training_curves/m.png",
        "example_frames/two_flies.png",
    ]:
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))

    pose = {row["split"]: row for row in summary["pose"]}
    assert pose["test"]["mAP"] == 0.85 and pose["val"]["mAP"] == 0.5
    assert pose["test"]["dist_p50"] == 1.25 and pose["test"]["dist_p90"] == 3.5
    assert pose["test"]["mPCK"] == 0.65 and pose["test"]["mOKS"] == 0.81
    assert pose["test"]["n_matched"] == 29

    (training,) = summary["training"]
    assert training["epochs"] == 3
    assert training["best_val_loss"] == 0.3 and training["best_epoch"] == 1
    assert training["final_train_loss"] == 0.35 and training["elapsed_s"] == 26.5

    (video,) = summary["videos"]
    assert video["n_frames"] == N_FRAMES
    assert video["n_instances"] == 2 * N_FRAMES
    assert video["n_tracks"] == 2 and video["n_untracked_instances"] == 0
    # ground truth has no instance scores and no swaps: frames evenly spread
    assert video["frames_shown"] == [0, 4, 7, 11]

    (tracking,) = summary["tracking"]
    assert tracking["mota"] == 0.97 and tracking["id_switches"] == 1 and tracking["hota"] == 0.93

    assert summary["demo_targets"]["passed"] is True
    md = (out / "summary.md").read_text()
    assert "**Demo targets: PASS**" in md
    assert "| m | test | 10 | 30 | 29 | 0.810 | 0.850 | 0.900 | 1.250 | 3.500 | 0.650 |" in md
    assert "| two_flies | 0.970 | 0.970 | 1 | 0.930 |" in md

    csv_lines = (out / "tracking_metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("video,mota,idf1,id_switches,hota")
    assert csv_lines[1].startswith("two_flies,0.97,0.97,1,0.93")

    curve = cv2.imread(str(out / "training_curves/m.png"))
    assert curve is not None and curve.shape[0] > 100
    montage = cv2.imread(str(out / "example_frames/two_flies.png"))
    assert montage is not None and montage.shape[0] > 400 and montage.shape[1] > 400


@pytest.mark.parametrize(
    ("mota", "map_", "failed"),
    [
        (0.90, 0.85, "MOTA of two_flies = 0.900 (>= 0.95: FAILED)"),
        (0.97, 0.70, "pose mAP of m on test = 0.700 (>= 0.8: FAILED)"),
    ],
)
def test_demo_targets_fail(
    tmp_path: Path, tracked_slp: Path, mota: float, map_: float, failed: str
) -> None:
    summary = build_report(
        tmp_path / "r",
        **make_inputs(tmp_path, tracked_slp, mota, map_),
        n_example_frames=0,
        demo_models=["m"],
        demo_videos=["two_flies"],
    )
    assert summary["demo_targets"]["passed"] is False
    md = (tmp_path / "r/summary.md").read_text()
    assert "**Demo targets: FAIL**" in md and failed in md
    assert not any((tmp_path / "r/example_frames").iterdir())


def test_missing_demo_metric_fails_and_non_demo_run_is_not_applicable(
    tmp_path: Path, tracked_slp: Path
) -> None:
    inputs = make_inputs(tmp_path, tracked_slp)
    summary = build_report(
        tmp_path / "a",
        **{**inputs, "tracking_metrics": {}},
        n_example_frames=0,
        demo_models=["m"],
        demo_videos=["two_flies"],
    )
    assert summary["demo_targets"]["passed"] is False
    assert "MOTA of two_flies = missing" in (tmp_path / "a/summary.md").read_text()
    summary = build_report(tmp_path / "b", **inputs, n_example_frames=0)
    assert summary["demo_targets"] is None
    assert "Demo targets: not applicable" in (tmp_path / "b/summary.md").read_text()


def test_example_frames_skipped_with_note_when_video_is_gone(
    tmp_path: Path, tracked_slp: Path
) -> None:
    labels = load_labels(tracked_slp)
    labels.replace_filenames(new_filenames=[str(tmp_path / "gone.mp4")])
    moved = tmp_path / "moved.slp"
    save_labels(labels, moved)
    inputs = {**make_inputs(tmp_path, moved), "tracked": {"two_flies": str(moved)}}
    summary = build_report(tmp_path / "r", **inputs)
    (video,) = summary["videos"]
    assert video["example_frames"] is None and "gone.mp4" in video["note"]
    assert video["n_instances"] == 2 * N_FRAMES  # counts still come from the .slp
    assert "gone.mp4" in (tmp_path / "r/summary.md").read_text()


def _with_scores_and_swap(labels: sio.Labels, swap_at: int, low_at: int) -> sio.Labels:
    """Predicted copy of ``labels``: score 0.9 everywhere but ``low_at`` (0.1), and the two
    tracks traded from frame ``swap_at`` on (an identity swap)."""
    frames = []
    for lf in sorted(labels.labeled_frames, key=lambda f: f.frame_idx):
        instances = []
        for inst in lf.instances:
            track = inst.track
            if lf.frame_idx >= swap_at:
                track = labels.tracks[1 - labels.tracks.index(track)]
            instances.append(
                sio.PredictedInstance.from_numpy(
                    inst.numpy(),
                    skeleton=inst.skeleton,
                    score=0.1 if lf.frame_idx == low_at else 0.9,
                    track=track,
                )
            )
        frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=instances))
    return sio.Labels(
        labeled_frames=frames,
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )


def test_example_frames_show_swaps_and_low_scores(tmp_path: Path, tracked_slp: Path) -> None:
    labels = _with_scores_and_swap(load_labels(tracked_slp), swap_at=5, low_at=9)
    picks = choose_frames(labels, 4)
    why = {p.frame_idx: p.reason for p in picks}
    assert why[5] == "likely swap (2 instances)"
    assert why[9] == "lowest score 0.10"
    assert len(picks) == 4
    colours = track_colours(labels)
    assert set(colours) == {"F", "M"} and colours["F"] != colours["M"]


def test_pages_show_the_csv_numbers_and_warnings(tmp_path: Path, tracked_slp: Path) -> None:
    inputs = make_inputs(tmp_path, tracked_slp)
    gt = load_labels(tracked_slp)
    points = [np.stack([i.numpy()[:, :2] for i in lf.instances]) for lf in gt.labeled_frames]
    frames = [
        FramePoses(gt=p, pr=p + 1.5, scores=np.full(len(p), 0.9), frame_idx=k)
        for k, p in enumerate(points)
    ]
    metrics, arrays = evaluate_frames(frames, gt.skeletons[0].node_names, return_arrays=True)
    save_pose_metrics(metrics, tmp_path / "e.json", tmp_path / "e.npz", arrays)
    empty = pose_json()
    empty.update(n_matched=0, mOKS=math.nan)
    write_json_atomic(tmp_path / "m/metrics.val.json", empty)
    out = tmp_path / "r"
    summary = build_report(
        out,
        **inputs,
        n_example_frames=0,
        pose_npz={"m/test": str(tmp_path / "e.npz")},
        expected_animals={"two_flies": 1},
        peak_threshold=0.2,
    )
    pages = {
        name: (out / name).read_text()
        for name in ("summary.html", "pose_accuracy.html", "tracking.html")
    }
    for csv_name, page in (
        ("pose_metrics.csv", "pose_accuracy.html"),
        ("tracking_metrics.csv", "tracking.html"),
    ):
        header, *rows = [line.split(",") for line in (out / csv_name).read_text().splitlines()]
        for row in rows:
            for key, cell in zip(header, row, strict=True):
                if cell:
                    value = (
                        cell
                        if not cell.replace(".", "").isdigit()
                        else fmt(float(cell) if "." in cell else int(cell))
                    )
                    assert f">{value}<" in pages[page], (csv_name, key, value)
    assert "0 of 30 ground-truth instances matched (31 predicted)" in pages["summary.html"]
    assert "lower inference.peak_threshold" in pages["summary.html"]
    assert "2 tracks for 1 animal:" in pages["tracking.html"]
    assert "0 of 30" not in pages["tracking.html"]  # pose warnings stay on the summary
    assert summary["videos"][0]["track_flag"].startswith("2 tracks for 1 animal:")
    assert "thorax" in pages["pose_accuracy.html"]  # per-node table from the .npz
    figure = cv2.imread(str(out / "pose_figures/m.test.png"))
    assert figure is not None and figure.shape[1] > 800
    assert (out / "headline.html").read_text().count("<li>") >= 3


def test_bad_inputs_name_file_and_key(tmp_path: Path) -> None:
    data = pose_json()
    del data["oks_voc"]["mAP"]
    path = tmp_path / "metrics.test.json"
    write_json_atomic(path, data)
    with pytest.raises(ReportInputError, match=r"metrics\.test\.json: missing key 'oks_voc\.mAP'"):
        load_pose_row("m/test", path)
    with pytest.raises(ReportInputError, match="must look like 'model/split'"):
        load_pose_row("m.test", path)
    data = pose_json()
    data["mOKS"] = "high"
    write_json_atomic(path, data)
    with pytest.raises(ReportInputError, match="key 'mOKS' must be a number"):
        load_pose_row("m/test", path)

    log = tmp_path / "training_log.csv"
    log.write_text("epoch,step,train_loss\n0,1,0.5\n")
    with pytest.raises(
        ReportInputError, match=r"training_log\.csv: missing column\(s\) \['val_loss'\]"
    ):
        load_training_log(log)
    log.write_text("epoch,train_loss,val_loss\n0,abc,0.5\n")
    with pytest.raises(ReportInputError, match="column 'train_loss' is not numeric"):
        load_training_log(log)


def test_nan_metrics_render_as_na(tmp_path: Path, tracked_slp: Path) -> None:
    inputs = make_inputs(tmp_path, tracked_slp)
    data = pose_json()
    data["mOKS"] = math.nan
    write_json_atomic(tmp_path / "m/metrics.test.json", data)
    build_report(tmp_path / "r", **inputs, n_example_frames=0)
    assert "| m | test | 10 | 30 | 29 | n/a | 0.850 |" in (tmp_path / "r/summary.md").read_text()


def test_tracking_eval_wrapper_scores_perfect_tracks(tmp_path: Path, tracked_slp: Path) -> None:
    pytest.importorskip("pipeline_lib.evaluation.tracking_metrics")
    from pipeline_lib.report.tracking_eval import evaluate_tracking_files

    out = tmp_path / "t.json"
    metrics = evaluate_tracking_files(tracked_slp, tracked_slp, out)
    assert metrics["mota"] == pytest.approx(1.0) and metrics["id_switches"] == 0
    assert json.loads(out.read_text())["num_gt"] == 2 * N_FRAMES


def test_clip_renders_the_first_frames(tmp_path: Path, tracked_slp: Path) -> None:
    from pipeline_lib.report.clips import render_clip

    out = tmp_path / "clips/two_flies.mp4"
    out.parent.mkdir()
    assert render_clip(tracked_slp, out, n_frames=5) == 5
    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    ok, frame = video.read()
    assert ok and frame.shape[:2] == (1024, 1024)
    video.release()
    assert [p.name for p in out.parent.iterdir()] == ["two_flies.mp4"]  # no temporary left


def test_clips_are_off_by_default_and_a_dag_output_when_on(tmp_path: Path) -> None:
    from helpers import snakemake_dry_run

    off = snakemake_dry_run()
    assert off.returncode == 0, off.stderr[-2000:]
    assert "render_clip" not in off.stdout
    on_config = tmp_path / "clips.yaml"
    on_config.write_text("report:\n  clips: true\n  clip_frames: 50\n")
    on = snakemake_dry_run("--configfile", str(on_config))
    assert on.returncode == 0, on.stderr[-2000:]
    assert "results/report/clips/demo_0.mp4" in on.stdout


def test_empty_video_warns_with_the_knob(tmp_path: Path, tracked_slp: Path) -> None:
    labels = load_labels(tracked_slp)
    empty = tmp_path / "empty.slp"
    save_labels(sio.Labels(videos=labels.videos, skeletons=labels.skeletons), empty)
    inputs = {**make_inputs(tmp_path, empty), "tracked": {"two_flies": str(empty)}}
    summary = build_report(tmp_path / "r", **inputs, n_example_frames=2, peak_threshold=0.2)
    expected = (
        "two_flies: no instance predicted in any frame; lower inference.peak_threshold "
        "(now 0.2), or train longer"
    )
    assert any(w.startswith(expected) for w in summary["warnings"])
    assert expected in (tmp_path / "r/summary.html").read_text()
    assert expected in (tmp_path / "r/summary.md").read_text()


def _scored_copy(tracked: Path, out: Path, score: float) -> Path:
    """The tracked file with its instances as predictions of one instance score."""
    labels = load_labels(tracked)
    skeleton = labels.skeletons[0]
    for lf in labels.labeled_frames:
        lf.instances = [
            sio.PredictedInstance.from_numpy(
                inst.numpy(), skeleton=skeleton, score=score, track=inst.track
            )
            for inst in lf.instances
        ]
    save_labels(labels, out)
    return out


def test_example_frames_go_to_the_most_doubtful_videos(tmp_path: Path, tracked_slp: Path) -> None:
    """With more videos than ``max_example_videos``, montages go first to a video with more
    tracks than animals, then to the lowest mean instance score; the rest say why not."""
    tracked = {
        "confident": str(_scored_copy(tracked_slp, tmp_path / "confident.slp", 0.9)),
        "doubtful": str(_scored_copy(tracked_slp, tmp_path / "doubtful.slp", 0.3)),
        "middling": str(_scored_copy(tracked_slp, tmp_path / "middling.slp", 0.6)),
        "too_many_tracks": str(_scored_copy(tracked_slp, tmp_path / "flagged.slp", 0.95)),
    }
    summary = build_report(
        tmp_path / "r",
        pose_metrics={},
        training_logs={},
        tracked=tracked,
        tracking_metrics={},
        n_example_frames=2,
        expected_animals={"too_many_tracks": 1},
        max_example_videos=2,
    )
    rows = {r["video"]: r for r in summary["videos"]}
    assert rows["doubtful"]["mean_instance_score"] == pytest.approx(0.3)
    drawn = {v for v, r in rows.items() if r["example_frames"]}
    assert drawn == {"too_many_tracks", "doubtful"}
    assert sorted(p.stem for p in (tmp_path / "r/example_frames").glob("*.png")) == sorted(drawn)
    for video in ("confident", "middling"):
        assert "the 2 most doubtful of 4 videos (report.example_videos)" in rows[video]["note"]
    # Every video is drawn when the limit is off.
    summary = build_report(
        tmp_path / "all",
        pose_metrics={},
        training_logs={},
        tracked=tracked,
        tracking_metrics={},
        n_example_frames=2,
        max_example_videos=None,
    )
    assert all(r["example_frames"] for r in summary["videos"])
