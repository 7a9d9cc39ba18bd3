"""The tracking transformer trained and run on a CUDA GPU, and GPU claiming against the real
``nvidia-smi`` (``gpu`` marker; bench/gpu_check/run.sh runs them on a lent GPU).

Elsewhere they skip, saying why; the GPU check's rehearsal runs the tracker test's body on the
CPU (``gpu_device`` in conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sleap_io as sio
import torch

from pipeline_lib.evaluation.tracking_metrics import evaluate_tracking
from pipeline_lib.gpu_claim import list_gpus
from pipeline_lib.tracking.gt_detections import as_untracked_predictions, load_subsampled
from pipeline_lib.tracking.gtr.training import train_tracker
from pipeline_lib.tracking.track import track_file

pytestmark = pytest.mark.gpu

FLIES = Path("dreem_assets/sleap")


def _frames(src: Path, video: Path, frames: range, out: Path) -> Path:
    """The labelled frames of ``src`` in ``frames``, saved with an absolute video path."""
    labels = sio.load_slp(str(src), open_videos=False)
    labels.videos[0].replace_filename(str(video), open=False)
    keep = [lf for lf in labels.labeled_frames if lf.frame_idx in frames]
    sio.save_slp(
        sio.Labels(keep, videos=labels.videos, skeletons=labels.skeletons, tracks=labels.tracks),
        str(out),
    )
    return out


def test_tracker_trains_and_tracks_on_the_device(shared_data: Path, tmp_path, gpu_device):
    """A tiny transformer with visual features (crops through its encoder on the device), 12
    steps on frames 0-95, then tracking every 4th frame of the whole video on the device."""
    src, video = shared_data / FLIES / "two_flies.slp", shared_data / FLIES / "two_flies.mp4"
    dataset = {"crop_size": 32, "clip_length": 8}
    config = {
        "model": {"d_model": 32, "nhead": 2, "dim_feedforward": 64, "dropout": 0.0},
        "dataset": {
            "train_dataset": {
                "slp_files": [str(_frames(src, video, range(96), tmp_path / "train.slp"))],
                **dataset,
            },
            "val_dataset": {
                "slp_files": [str(_frames(src, video, range(96, 128), tmp_path / "val.slp"))],
                "mode": "val",
                **dataset,
            },
        },
        "trainer": {
            "max_epochs": 3,
            "limit_train_batches": 4,
            "seed": 0,
            "accelerator": gpu_device,
        },
        "optimizer": {"lr": 0.001},
        "tracker": {"use_vis_feats": True, "window_size": 4},
    }
    run_dir = tmp_path / "tracker"
    summary = train_tracker(config, run_dir, threads=2)
    assert summary["steps"] == 12 and summary["epochs"] == 3
    state = torch.load(run_dir / "best.ckpt", weights_only=True)["state_dict"]
    assert next(iter(state.values())).device.type == gpu_device

    gt = load_subsampled(src, 4)
    gt.videos[0].replace_filename(str(video), open=False)
    untracked = tmp_path / "untracked.slp"
    sio.save_slp(as_untracked_predictions(gt, seed=3), str(untracked))
    out = tmp_path / "tracked.slp"
    result = track_file(
        untracked, out, {"method": "gtr", "model": str(run_dir), "device": gpu_device}
    )
    assert result["n_frames"] == 32 and result["n_tracks"] >= 2
    metrics = evaluate_tracking(gt, sio.load_slp(str(out), open_videos=False), match="exact")
    assert metrics["mota"] > 0.5, metrics


CLAIM = """
import json, sys
import torch
from pipeline_lib.gpu_claim import claim_gpus
claimed = claim_gpus(1, lock_dir=sys.argv[1], wait_s=float(sys.argv[2]), poll_s=0.2)
x = torch.ones(1024, device="cuda")  # CUDA starts only now, on the claimed card
print(json.dumps({"claimed": claimed, "visible": torch.cuda.device_count(),
                  "sum": float(x.sum())}), flush=True)
sys.stdin.read()  # hold the card until the test lets go
"""


def test_gpu_claim_with_the_real_nvidia_smi(tmp_path):
    """Two jobs side by side: each claims a card from the real ``nvidia-smi`` listing before
    CUDA starts and then sees only that card; on a one-card machine the second shares it."""
    if shutil.which("nvidia-smi") is None or not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and nvidia-smi (runs on a lent GPU via bench/gpu_check)")
    gpus = list_gpus()
    assert len(gpus) == torch.cuda.device_count() >= 1, gpus
    assert all(g.free_mb > 0 for g in gpus), gpus
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    jobs = []
    try:
        for _ in range(2):
            job = subprocess.Popen(
                [sys.executable, "-c", CLAIM, str(tmp_path), "1"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            jobs.append(job)
            jobs[-1].report = json.loads(job.stdout.readline())
    finally:
        for job in jobs:
            job.communicate("", timeout=60)
    first, second = (job.report for job in jobs)
    assert first["visible"] == second["visible"] == 1
    assert first["sum"] == second["sum"] == 1024.0
    if len(gpus) > 1:
        assert first["claimed"] != second["claimed"]
    else:
        assert first["claimed"] == second["claimed"] == [0]
    assert all(job.returncode == 0 for job in jobs)
