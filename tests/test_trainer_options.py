"""Every trainer_config option changes what training does (each test fails if it were ignored).

Real training runs are tiny (single_fly at scale 0.25, UNet filters 8, a few steps) so the file
stays quick; options that only shape an object (optimizer, schedulers, devices) are checked on
that object directly.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import tiny_model_config

from pipeline_lib.cli import main as cli_main
from pipeline_lib.data.split import split_labels
from pipeline_lib.training.loaders import make_loader as _loader
from pipeline_lib.training.losses import confmap_loss, ohkm_loss
from pipeline_lib.training.module import PoseModule
from pipeline_lib.training.run_dir import BEST_CKPT, TRAINING_LOG, WORK_DIR
from pipeline_lib.training.train import train_model
from pipeline_lib.training.trainer_setup import resolve_devices

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "sleap_nn_assets/sample_configs/config_single_instance_unet_medium_rf.yaml"


@pytest.fixture(scope="module")
def fly_split(shared_data, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("fly_split")
    paths = {k: out / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels(
        [shared_data / "dreem_assets/sleap/single_fly.slp"],
        paths["train"],
        paths["val"],
        paths["test"],
        0.05,
        0.0,
        None,
        0,
        True,
    )
    return paths


def tiny_config(shared_data: Path, dst: Path, **trainer) -> Path:
    """The single-instance sample config shrunk to a few cheap steps, with trainer overrides."""
    cfg = yaml.safe_load((shared_data / SAMPLE).read_text())
    cfg["data_config"]["preprocessing"]["scale"] = 0.25
    cfg["data_config"]["use_augmentations_train"] = False
    cfg["model_config"]["backbone_config"]["unet"]["filters"] = 8
    tc = cfg["trainer_config"]
    tc.update(
        {
            "max_epochs": 2,
            "train_steps_per_epoch": 2,
            "enable_progress_bar": False,
            "visualize_preds_during_training": False,
            "seed": 0,
            "zmq": None,
        }
    )
    tc["early_stopping"]["stop_training_on_plateau"] = False
    tc["lr_scheduler"] = {"step_lr": None, "reduce_lr_on_plateau": None}
    for key, value in trainer.items():
        section, _, field = key.partition("__")
        if field:
            tc[section] = {**(tc.get(section) or {}), field: value}
        else:
            tc[key] = value
    dst.write_text(yaml.safe_dump(cfg))
    return dst


def train(shared_data, fly_split, tmp_path, name="run", **trainer) -> Path:
    cfg = tiny_config(shared_data, tmp_path / f"{name}.yaml", **trainer)
    run_dir = tmp_path / name
    train_model(cfg, fly_split["train"], fly_split["val"], None, run_dir, threads=2)
    return run_dir


def log_rows(run_dir: Path) -> list[dict]:
    with (run_dir / TRAINING_LOG).open() as fh:
        return list(csv.DictReader(fh))


# ---- checkpointing ---------------------------------------------------------------------------
def test_save_top_k_keeps_the_k_best_epochs(shared_data, fly_split, tmp_path):
    run = train(
        shared_data, fly_split, tmp_path, max_epochs=4, save_ckpt=True, model_ckpt__save_top_k=2
    )
    top = sorted(p.name for p in (run / WORK_DIR).glob("best-*.ckpt"))
    assert len(top) == 2, top
    run1 = train(shared_data, fly_split, tmp_path, "k1", save_ckpt=True, model_ckpt__save_top_k=1)
    assert not list((run1 / WORK_DIR).glob("best-*.ckpt"))


@pytest.mark.parametrize(
    ("save_ckpt", "save_last", "work_exists", "last_exists"),
    [(True, False, True, False), (True, True, True, True), (False, True, False, False)],
)
def test_save_ckpt_and_save_last(
    shared_data, fly_split, tmp_path, save_ckpt, save_last, work_exists, last_exists
):
    run = train(
        shared_data, fly_split, tmp_path, save_ckpt=save_ckpt, model_ckpt__save_last=save_last
    )
    assert (run / BEST_CKPT).exists()  # the stage's output, whatever the options
    assert (run / WORK_DIR).exists() == work_exists
    assert (run / WORK_DIR / "last.ckpt").exists() == last_exists


def test_resume_ckpt_path_continues_from_that_checkpoint(shared_data, fly_split, tmp_path):
    first = train(
        shared_data, fly_split, tmp_path, "first", save_ckpt=True, model_ckpt__save_last=True
    )
    second = train(
        shared_data,
        fly_split,
        tmp_path,
        "second",
        max_epochs=3,
        resume_ckpt_path=str(first / WORK_DIR / "last.ckpt"),
    )
    rows = log_rows(second)
    assert [int(r["epoch"]) for r in rows] == [2]  # epochs 0 and 1 came from the checkpoint
    assert int(rows[0]["step"]) == 6


@pytest.mark.parametrize("keep_viz", [True, False])
def test_visualize_preds_during_training_and_keep_viz(shared_data, fly_split, tmp_path, keep_viz):
    run = train(
        shared_data,
        fly_split,
        tmp_path,
        visualize_preds_during_training=True,
        keep_viz=keep_viz,
    )
    figures = sorted(p.name for p in (run / "viz").glob("*.png")) if keep_viz else []
    assert (run / "viz").exists() == keep_viz
    if keep_viz:
        assert figures == [
            "train.0000.png",
            "train.0001.png",
            "validation.0000.png",
            "validation.0001.png",
        ]
    quiet = train(shared_data, fly_split, tmp_path, "quiet", keep_viz=True)
    assert not (quiet / "viz").exists()  # keep_viz alone does not visualise


# ---- steps, epochs, stopping -------------------------------------------------------------------
def test_steps_per_epoch_and_max_epochs(shared_data, fly_split, tmp_path):
    run = train(shared_data, fly_split, tmp_path, max_epochs=3, train_steps_per_epoch=3)
    assert [(int(r["epoch"]), int(r["step"])) for r in log_rows(run)] == [(0, 3), (1, 6), (2, 9)]


def test_loader_options():
    ds = torch.utils.data.TensorDataset(torch.arange(10))
    tc = {"train_steps_per_epoch": None, "min_train_steps_per_epoch": 7}
    ordered = _loader(ds, {"batch_size": 3, "shuffle": False, "num_workers": 0}, tc, 0, True)
    assert len(ordered) == 7  # min_train_steps_per_epoch beats ceil(10 / 3) = 4
    batches = [b[0].tolist() for b in ordered]
    assert batches[:2] == [[0, 1, 2], [3, 4, 5]]  # shuffle false: in order, cycling
    tc = {"train_steps_per_epoch": 2, "min_train_steps_per_epoch": 7}
    assert len(_loader(ds, {"batch_size": 3, "shuffle": True}, tc, 0, True)) == 2
    tc = {"train_steps_per_epoch": None, "min_train_steps_per_epoch": 1}
    shuffled = _loader(ds, {"batch_size": 5, "shuffle": True, "num_workers": 0}, tc, 0, True)
    order = [i for b in shuffled for i in b[0].tolist()]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    again = _loader(ds, {"batch_size": 5, "shuffle": True, "num_workers": 0}, tc, 0, True)
    assert [i for b in again for i in b[0].tolist()] == order  # seeded
    workers = _loader(ds, {"batch_size": 5, "shuffle": True, "num_workers": 2}, tc, 0, True)
    assert workers.num_workers == 2
    assert sorted(i for b in workers for i in b[0].tolist()) == list(range(10))


def test_early_stopping_fields(shared_data, fly_split, tmp_path):
    # min_delta so large that no epoch counts as an improvement: patience 1 stops after epoch 1.
    stop = train(
        shared_data,
        fly_split,
        tmp_path,
        "stop",
        max_epochs=5,
        early_stopping={"stop_training_on_plateau": True, "min_delta": 1e9, "patience": 1},
    )
    assert len(log_rows(stop)) == 2
    patient = train(
        shared_data,
        fly_split,
        tmp_path,
        "patient",
        max_epochs=5,
        early_stopping={"stop_training_on_plateau": True, "min_delta": 1e9, "patience": 2},
    )
    assert len(log_rows(patient)) == 3


def test_step_lr_changes_the_learning_rate_every_step_size_epochs(shared_data, fly_split, tmp_path):
    run = train(
        shared_data,
        fly_split,
        tmp_path,
        max_epochs=4,
        optimizer={"lr": 1e-3, "amsgrad": False},
        lr_scheduler={"step_lr": {"step_size": 2, "gamma": 0.5}, "reduce_lr_on_plateau": None},
    )
    lrs = [float(r["learning_rate"]) for r in log_rows(run)]
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4])


# ---- optimizer, schedulers, OHKM: the objects the options build ----------------------------------
def _module(**kwargs) -> PoseModule:
    model_config = tiny_model_config(part_names=["a", "b", "c"], stride=2)
    model_config["head_configs"]["single_instance"]["confmaps"]["sigma"] = 2.0
    args = {
        "model_config": model_config,
        "head": "single_instance",
        "n_nodes": 3,
        "in_channels": 1,
        "augmentation": None,
        "optimizer": {"name": "Adam", "lr": 1e-3, "amsgrad": False},
        "lr_scheduler": {},
        "ohkm": None,
    }
    return PoseModule(**{**args, **kwargs})


def test_optimizer_name_lr_amsgrad():
    opt = _module(optimizer={"name": "AdamW", "lr": 3e-4, "amsgrad": True}).configure_optimizers()
    assert type(opt) is torch.optim.AdamW
    assert opt.param_groups[0]["lr"] == 3e-4 and opt.param_groups[0]["amsgrad"] is True
    opt = _module(optimizer={"name": "Adam", "lr": 1e-2, "amsgrad": False}).configure_optimizers()
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["amsgrad"] is False


def test_reduce_lr_on_plateau_fields_reach_the_scheduler():
    plateau = {
        "threshold": 1e-6,
        "threshold_mode": "abs",
        "cooldown": 3,
        "patience": 5,
        "factor": 0.25,
        "min_lr": 1e-7,
    }
    out = _module(
        lr_scheduler={"step_lr": None, "reduce_lr_on_plateau": plateau}
    ).configure_optimizers()
    sched = out["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (sched.threshold, sched.threshold_mode, sched.cooldown, sched.patience) == (
        1e-6,
        "abs",
        3,
        5,
    )
    assert sched.factor == 0.25 and sched.min_lrs == [1e-7]
    assert out["lr_scheduler"]["monitor"] == "val_loss"


def test_ohkm_fields_shape_the_training_loss():
    ohkm = {
        "online_mining": True,
        "hard_to_easy_ratio": 1.5,
        "min_hard_keypoints": 1,
        "max_hard_keypoints": 2,
        "loss_scale": 3.0,
    }
    torch.manual_seed(0)
    pred = {"confmaps": torch.rand(2, 3, 8, 8)}
    target = {"confmaps": torch.rand(2, 3, 8, 8)}
    mined, _ = _module(ohkm=ohkm)._loss(pred, target, mine=True)
    expected = confmap_loss(pred["confmaps"], target["confmaps"]) + ohkm_loss(
        pred["confmaps"], target["confmaps"], 1.5, 1, 2, 3.0
    )
    assert torch.allclose(mined, expected)
    plain, _ = _module(ohkm={**ohkm, "online_mining": False})._loss(pred, target, mine=True)
    assert torch.allclose(plain, confmap_loss(pred["confmaps"], target["confmaps"]))
    assert not torch.allclose(mined, plain)
    val, _ = _module(ohkm=ohkm)._loss(pred, target, mine=False)  # validation never mines
    assert torch.allclose(val, plain)


# ---- devices, profiler ---------------------------------------------------------------------------
def test_device_options_resolve_for_lightning():
    cpu = {"trainer_accelerator": "cpu"}
    assert resolve_devices({**cpu, "trainer_devices": None}) == ("cpu", "auto")
    assert resolve_devices({**cpu, "trainer_devices": 3}) == ("cpu", 3)
    # indices override the count; on CPU they become a process count
    assert resolve_devices({**cpu, "trainer_devices": 1, "trainer_device_indices": [0, 1]}) == (
        "cpu",
        2,
    )
    gpu = {"trainer_accelerator": "gpu", "trainer_devices": 2, "trainer_device_indices": [2]}
    assert resolve_devices(gpu) == ("gpu", [2])
    assert resolve_devices({"trainer_accelerator": "cuda", "trainer_devices": 1}) == ("gpu", 1)


def test_profiler_writes_its_report_into_the_run_dir(shared_data, fly_split, tmp_path):
    run = train(shared_data, fly_split, tmp_path, profiler="simple")
    report = run / "fit-profile.txt"
    assert report.exists() and "run_training_epoch" in report.read_text()


# ---- seed, config-only runs, DDP -----------------------------------------------------------------
def _standalone(shared_data, tmp_path, run_name: str, seed: int) -> Path:
    cfg_path = tiny_config(shared_data, tmp_path / f"{run_name}.yaml", seed=seed, max_epochs=1)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data_config"]["train_labels_path"] = [
        str(shared_data / "dreem_assets/sleap/single_fly.slp")
    ]
    cfg["data_config"]["val_labels_path"] = None
    cfg["data_config"]["validation_fraction"] = 0.1
    cfg["trainer_config"].update({"ckpt_dir": str(tmp_path / "models"), "run_name": run_name})
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert cli_main(["train", str(cfg_path), "--threads", "2"]) == 0
    return tmp_path / "models" / run_name


def test_same_seed_same_split_and_first_epoch_losses(shared_data, tmp_path):
    import sleap_io as sio

    a = _standalone(shared_data, tmp_path, "a", seed=5)
    b = _standalone(shared_data, tmp_path, "b", seed=5)
    c = _standalone(shared_data, tmp_path, "c", seed=6)

    def val_frames(run: Path) -> list[int]:
        return [lf.frame_idx for lf in sio.load_slp(str(run / "labels_val_gt.slp"))]

    assert val_frames(a) == val_frames(b) != val_frames(c)
    assert log_rows(a)[0]["train_loss"] == log_rows(b)[0]["train_loss"]
    assert log_rows(a)[0]["train_loss"] != log_rows(c)[0]["train_loss"]
    assert (a / BEST_CKPT).exists()


DDP_SNIPPET = """
import sys
from pipeline_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ddp_trains_with_two_cpu_processes(shared_data, fly_split, tmp_path):
    cfg = tiny_config(
        shared_data,
        tmp_path / "ddp.yaml",
        trainer_accelerator="cpu",
        trainer_devices=2,
        trainer_strategy="ddp",
        train_steps_per_epoch=4,
    )
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SNIPPET)
    run_dir = tmp_path / "ddp_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--verbose",
            "train",
            str(cfg),
            "--train",
            str(fly_split["train"]),
            "--val",
            str(fly_split["val"]),
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr  # Lightning's line for the second of two processes
    assert (run_dir / BEST_CKPT).exists()
    rows = log_rows(run_dir)
    assert len(rows) == 2
    # the training sampler's 4 steps of batches are shared between the two processes
    assert int(rows[-1]["step"]) == 4


# ---- experiment logging and the GUI's sockets, in real training runs -------------------------------
def test_wandb_offline_run_in_the_run_dir(shared_data, fly_split, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    try:
        run = train(
            shared_data,
            fly_split,
            tmp_path,
            use_wandb=True,
            wandb={"wandb_mode": "offline", "project": "p", "name": "tiny", "api_key": "s3cret"},
        )
    finally:
        wandb.teardown()  # wandb keeps process-wide settings (the key too); later tests need none
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    resolved = yaml.safe_load((run / "training_config.yaml").read_text())
    assert resolved["trainer_config"]["wandb"]["current_run_id"]
    for name in ("training_config.yaml", "initial_config.yaml"):
        assert "s3cret" not in (run / name).read_text()


def test_zmq_publishes_progress_and_stop_ends_training_with_a_checkpoint(
    shared_data, fly_split, tmp_path
):
    import json
    import threading

    import zmq

    ctx = zmq.Context.instance()
    listener = ctx.socket(zmq.SUB)
    listener.setsockopt(zmq.SUBSCRIBE, b"")
    publish_port = listener.bind_to_random_port("tcp://127.0.0.1")
    controller = ctx.socket(zmq.PUB)
    controller_port = controller.bind_to_random_port("tcp://127.0.0.1")
    events: list[dict] = []
    done = threading.Event()

    def gui() -> None:  # listen to progress; once an epoch has ended, keep asking to stop
        poller = zmq.Poller()
        poller.register(listener, zmq.POLLIN)
        while not done.is_set():
            if poller.poll(50):
                events.append(json.loads(listener.recv()))
            if any(e["event"] == "epoch_end" for e in events):
                controller.send_string(json.dumps({"command": "stop"}))

    thread = threading.Thread(target=gui, daemon=True)
    thread.start()
    try:
        run = train(
            shared_data,
            fly_split,
            tmp_path,
            max_epochs=50,
            zmq={
                "publish_port": publish_port,
                "controller_port": controller_port,
                "controller_polling_timeout": 10,
            },
        )
    finally:
        done.set()
        thread.join(5)
        listener.close(0)
        controller.close(0)
    epochs = len(log_rows(run))
    assert 1 <= epochs < 50
    assert (run / "stopped.ckpt").exists() and (run / BEST_CKPT).exists()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "train_begin" and "epoch_end" in kinds
    ends = [e for e in events if e["event"] == "epoch_end"]
    assert all(isinstance(e["logs"]["train_loss"], float) for e in ends)


def test_resume_fingerprint_ignores_how_a_run_is_fed_but_not_what_it_learns(fly_split):
    from pipeline_lib.training.train import _fingerprint

    base = {
        "data_config": {"data_pipeline_fw": "torch_dataset", "preprocessing": {"scale": 0.5}},
        "model_config": {"backbone_config": {"unet": {"filters": 8}}},
        "trainer_config": {"optimizer": {"lr": 1e-3}, "zmq": None, "keep_viz": False},
    }
    key = _fingerprint(base, fly_split["train"], fly_split["val"])

    def changed(section: str, field: str, value) -> str:
        cfg = {k: dict(v) for k, v in base.items()}
        cfg[section][field] = value
        return _fingerprint(cfg, fly_split["train"], fly_split["val"])

    assert changed("data_config", "data_pipeline_fw", "torch_dataset_cache_img_disk") == key
    assert changed("trainer_config", "zmq", {"publish_port": 9001}) == key
    assert changed("trainer_config", "keep_viz", True) == key
    assert changed("trainer_config", "optimizer", {"lr": 1e-4}) != key
    assert changed("data_config", "preprocessing", {"scale": 0.25}) != key
    assert _fingerprint(base, fly_split["train"], fly_split["train"]) != key


def test_precision_auto_uses_bf16_only_on_cpus_with_native_bf16(monkeypatch):
    import pipeline_lib.devices as devices

    assert devices.cpu_has_native_bf16("flags\t: fpu sse avx512f avx512_bf16 amx_tile")
    assert devices.cpu_has_native_bf16("flags\t: fpu amx_bf16")
    assert not devices.cpu_has_native_bf16("flags\t: fpu sse avx2 avx512f")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert devices.resolve_precision("auto", cpu) == "bf16-mixed"
    assert devices.resolve_precision(None, cpu) == "bf16-mixed"
    assert devices.resolve_precision("auto", cuda) == "32"  # GPUs: not measured here
    assert devices.resolve_precision("32", cpu) == "32"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert devices.resolve_precision("auto", cpu) == "32"
    with pytest.raises(ValueError, match="precision"):
        devices.resolve_precision("fp8", cpu)
