"""Loading a model never runs code from its checkpoint.

Each loading path (predict / evaluate, sleap-nn run directories, pretrained backbone and head
weights, training resume, the tracker's model and its training resume) is given a checkpoint
whose unpickling would create a marker file: it must be refused with a message naming the file,
and the marker must not appear. Real checkpoints (sleap-nn's, and ours freshly trained) load.
"""

from __future__ import annotations

import pathlib
import shutil
from pathlib import Path

import pytest
import torch
from helpers import SLEAP_NN_RUN_DIRS, tiny_model_config
from test_gtr_training import _frame_range
from test_gtr_training import tiny_config as tiny_tracker_config
from test_trainer_options import tiny_config as tiny_pose_config

from pipeline_lib.cli import main as cli_main
from pipeline_lib.data.split import split_labels
from pipeline_lib.evaluation.evaluate import evaluate_model
from pipeline_lib.io.checkpoints import CheckpointRefused, load_checkpoint
from pipeline_lib.models.model import build_model
from pipeline_lib.models.pretrained import load_pretrained
from pipeline_lib.tracking.gtr.inference import load_tracker_model
from pipeline_lib.tracking.gtr.training import train_tracker
from pipeline_lib.training.run_dir import BEST_CKPT, WORK_DIR, load_trained_model
from pipeline_lib.training.train import train_model

RUN_DIRS = "sleap_nn_assets/model_ckpts"
FRAME = "sleap_nn_assets/datasets/minimal_instance.pkg.slp"
FLIES = Path("dreem_assets") / "sleap"


class _Touch:
    """Unpickles into a call of ``Path.touch(marker)``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _malicious(path: Path, marker: Path, state: dict | None = None) -> Path:
    """A Lightning-looking checkpoint (real tensors) with one hostile object beside them."""
    state = state if state is not None else {"model.w": torch.zeros(2)}
    torch.save({"state_dict": state, "hyper_parameters": _Touch(marker)}, path)
    return path


def _assert_refused(call, path: Path, marker: Path) -> None:
    with pytest.raises(CheckpointRefused, match="refused to load this checkpoint") as info:
        call()
    assert str(path) in str(info.value)
    assert not marker.exists(), "unpickling the checkpoint ran code"


def test_the_crafted_checkpoint_really_runs_code_when_unpickled(tmp_path):
    """Guards the other tests: an unrestricted load of the crafted file creates the marker."""
    marker = tmp_path / "marker"
    path = _malicious(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


# ---- pose models ---------------------------------------------------------------------------
def _run_dir_with(shared_data: Path, tmp_path: Path, name: str, marker: Path) -> Path:
    """A copy of a sleap-nn run directory whose best.ckpt is the crafted one."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    shutil.copy(shared_data / RUN_DIRS / name / "training_config.yaml", run_dir)
    _malicious(run_dir / BEST_CKPT, marker)
    return run_dir


def test_sleap_nn_run_dir_with_a_crafted_checkpoint_is_refused(shared_data, tmp_path):
    marker = tmp_path / "marker"
    run_dir = _run_dir_with(shared_data, tmp_path, "minimal_instance_centroid", marker)
    _assert_refused(lambda: load_trained_model(run_dir), run_dir / BEST_CKPT, marker)


def test_predict_and_evaluate_refuse_a_crafted_checkpoint(shared_data, tmp_path, capsys):
    marker = tmp_path / "marker"
    run_dir = _run_dir_with(shared_data, tmp_path, "minimal_instance_bottomup", marker)
    frame = shared_data / FRAME
    pred = tmp_path / "pred.slp"
    code = cli_main(["predict", str(run_dir), "--labels", str(frame), "--out", str(pred)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"{run_dir / BEST_CKPT}: refused to load this checkpoint" in err
    assert not marker.exists() and not pred.exists()

    out = tmp_path / "eval"
    args = (out.with_suffix(".json"), out.with_suffix(".npz"), out.with_suffix(".pred.slp"))
    _assert_refused(lambda: evaluate_model([run_dir], frame, *args), run_dir / BEST_CKPT, marker)
    assert not any(p.exists() for p in args)


@pytest.mark.parametrize("part", ["backbone", "head"])
def test_pretrained_weights_refuse_a_crafted_checkpoint(tmp_path, part):
    marker = tmp_path / "marker"
    model = build_model(tiny_model_config(), n_nodes=2)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = _malicious(tmp_path / "weights.ckpt", marker, state)
    paths = (str(path), None) if part == "backbone" else (None, str(path))
    _assert_refused(lambda: load_pretrained(model, *paths), path, marker)


def test_every_sleap_nn_checkpoint_loads_and_keeps_no_foreign_object(shared_data):
    for name in SLEAP_NN_RUN_DIRS:
        ckpt = load_checkpoint(shared_data / RUN_DIRS / name / BEST_CKPT)
        assert ckpt["state_dict"] and all(
            isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values()
        )


# ---- pose training resume ------------------------------------------------------------------
@pytest.fixture(scope="module")
def fly_split(shared_data, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("fly_split")
    paths = {k: out / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels(
        [shared_data / FLIES / "single_fly.slp"], *paths.values(), 0.05, 0.0, None, 0, True
    )
    return paths


def test_training_resume_refuses_a_crafted_checkpoint(shared_data, fly_split, tmp_path):
    """Both resume sources: ``last.ckpt`` of an interrupted run of the same job, and the
    config's ``resume_ckpt_path``. Lightning never gets to open either."""
    marker = tmp_path / "marker"
    options = {"save_ckpt": True, "model_ckpt__save_last": True, "max_epochs": 1}
    cfg = tiny_pose_config(shared_data, tmp_path / "run.yaml", **options)
    run_dir = tmp_path / "run"
    train_model(cfg, fly_split["train"], fly_split["val"], None, run_dir, threads=2)
    # Our own checkpoints hold only tensors and plain values: a weights-only load reads them.
    torch.load(run_dir / BEST_CKPT, weights_only=True)

    last = _malicious(run_dir / WORK_DIR / "last.ckpt", marker)
    again = lambda: train_model(  # noqa: E731
        cfg, fly_split["train"], fly_split["val"], None, run_dir, threads=2
    )
    _assert_refused(again, last, marker)

    evil = _malicious(tmp_path / "evil.ckpt", marker)
    resume_cfg = tiny_pose_config(shared_data, tmp_path / "b.yaml", resume_ckpt_path=str(evil))
    start = lambda: train_model(  # noqa: E731
        resume_cfg, fly_split["train"], fly_split["val"], None, tmp_path / "b", threads=2
    )
    _assert_refused(start, evil, marker)


def test_a_sleap_nn_checkpoint_is_not_resumed(shared_data, fly_split, tmp_path):
    """Lightning would unpickle its OmegaConf objects; it can start a model as pretrained
    weights instead, which the message says."""
    sleap_nn = shared_data / RUN_DIRS / "minimal_instance_single_instance" / BEST_CKPT
    cfg = tiny_pose_config(shared_data, tmp_path / "c.yaml", resume_ckpt_path=str(sleap_nn))
    with pytest.raises(CheckpointRefused, match="pretrained_backbone_weights") as info:
        train_model(cfg, fly_split["train"], fly_split["val"], None, tmp_path / "c", threads=2)
    assert str(sleap_nn) in str(info.value) and "Cannot resume training" in str(info.value)


# ---- tracking transformer ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tracker_run(shared_data, tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("tracker")
    src, video = shared_data / FLIES / "two_flies.slp", shared_data / FLIES / "two_flies.mp4"
    splits = {
        "train": _frame_range(src, video, range(0, 64), root / "train.slp"),
        "val": _frame_range(src, video, range(64, 96), root / "val.slp"),
    }
    config = tiny_tracker_config(splits, trainer={"max_epochs": 1, "limit_train_batches": 2})
    train_tracker(config, root / "run", threads=1)
    return config, root / "run"


def test_tracker_model_and_its_resume_refuse_a_crafted_checkpoint(tracker_run, tmp_path):
    config, trained = tracker_run
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    assert load_tracker_model(run_dir, device="cpu")  # ours, freshly trained, loads
    marker = tmp_path / "marker"

    best = _malicious(run_dir / BEST_CKPT, marker)
    _assert_refused(lambda: load_tracker_model(run_dir, device="cpu"), best, marker)

    last = _malicious(run_dir / WORK_DIR / "last.ckpt", marker)
    rerun = lambda: train_tracker(config, run_dir, threads=1)  # noqa: E731
    _assert_refused(rerun, last, marker)


def test_foreign_and_broken_files_are_named(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointRefused, match="Unsupported operand") as info:
        load_checkpoint(text)
    assert str(info.value).startswith(f"{text}: refused to load this checkpoint")
    assert "weights_only` set to `False`" not in str(info.value)  # torch's unsafe advice
    cut = tmp_path / "cut.ckpt"
    model = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, model)
    cut.write_bytes(model.read_bytes()[:2000])
    with pytest.raises(CheckpointRefused, match=f"{cut} is not a readable checkpoint"):
        load_checkpoint(cut)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_checkpoint(tmp_path / "missing.ckpt")
