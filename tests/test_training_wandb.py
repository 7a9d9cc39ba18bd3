"""The trainer_config.wandb logger, in offline mode only: no network, everything under tmp_path.

What a run recorded is read back from its ``run-<id>.wandb`` file: wandb's own protobuf records
(``wandb.proto.wandb_internal_pb2.Record``) in LevelDB-log framing. Offline runs write nothing
else that holds metrics or config (``files/`` only gets requirements and console output).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

from pipeline_lib.training.experiment_logger import (  # noqa: E402
    MASK,
    mask_secrets,
    resolve_mode,
    wandb_logger,
)

SECRET = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module", autouse=True)
def wandb_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """wandb's settings, cache and credentials point into a temporary folder, offline.

    Module-scoped because wandb reads its environment once per process.
    """
    home = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_PROJECT"):
            mp.delenv(name, raising=False)
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_DIR", str(home / "default_dir"))
        mp.setenv("WANDB_CONFIG_DIR", str(home / "config"))
        mp.setenv("WANDB_CACHE_DIR", str(home / "cache"))
        mp.setenv("WANDB_DATA_DIR", str(home / "data"))
        mp.setenv("NETRC", str(home / "no-netrc"))
        yield home
        wandb.teardown()


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class TinyModule(L.LightningModule):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters({"width": 4})
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.fail = fail

    def training_step(self, batch, batch_idx):
        if self.fail:
            raise RuntimeError("boom")
        loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)


def fit(logger, epochs: int = 2, **module_kw) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(TinyModule(**module_kw))
    return trainer


def trainer_cfg(**wandb_section) -> dict:
    section = {
        "entity": None,
        "project": "pose-tests",
        "name": None,
        "api_key": None,
        "wandb_mode": "offline",
        "prv_runid": None,
        "group": None,
        "save_viz_imgs_wandb": False,
    }
    return {"use_wandb": True, "wandb": {**section, **wandb_section}}


def read_records(run_file: Path) -> list:
    """Every record of a ``.wandb`` file, decoded with wandb's protobuf definitions."""
    data = run_file.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0)
    block, pos, pending, chunks = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 or pos + 7 + length > len(data):  # the end, or a record being written
            break
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = payload if kind in (1, 2) else pending + payload  # FULL/FIRST vs MIDDLE/LAST
        if kind in (1, 4):
            chunks.append(pending)
    records = []
    for raw in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        records.append(record)
    return records


def as_dict(items) -> dict:
    """History/config items as {key: value}; wandb stores a key flat or as a nested path."""
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def only_run(run_dir: Path) -> Path:
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def records_of(run_dir: Path, timeout: float = 20.0) -> dict[str, list]:
    """The finished run's records by kind.

    wandb's service process writes the file asynchronously, so it is re-read until the closing
    ``exit`` record (written last) is there.
    """
    deadline = time.monotonic() + timeout
    while True:
        by_kind: dict[str, list] = {}
        for record in read_records(next(only_run(run_dir).glob("run-*.wandb"))):
            by_kind.setdefault(record.WhichOneof("record_type"), []).append(record)
        if "exit" in by_kind or time.monotonic() > deadline:
            return by_kind
        time.sleep(0.05)


# -------------------------------------------------------------------------------------------
def test_use_wandb_false_gives_no_logger(tmp_path: Path) -> None:
    assert wandb_logger({"use_wandb": False, "wandb": trainer_cfg()["wandb"]}, tmp_path) is None
    assert wandb_logger({}, tmp_path) is None
    assert not (tmp_path / "wandb").exists()


def test_offline_run_records_metrics_config_name_and_group(
    tmp_path: Path, wandb_home: Path
) -> None:
    run_dir = tmp_path / "run"
    cfg = trainer_cfg(name="centroid-7", group="sweep-A", api_key=SECRET)
    full_config = {"model_config": {"width": 4}, "trainer_config": cfg}
    logger = wandb_logger(cfg, run_dir, config=full_config)
    fit(logger, epochs=2)

    assert wandb.run is None, "the run must be finished when fit ends"
    records = records_of(run_dir)
    run = records["run"][0].run
    assert (run.display_name, run.run_group, run.project) == ("centroid-7", "sweep-A", "pose-tests")
    assert only_run(run_dir).name.endswith(run.run_id) and logger.version == run.run_id

    config = as_dict(run.config.update)
    assert config["model_config"] == {"width": 4}
    assert config["trainer_config"]["wandb"]["api_key"] == MASK
    hparams = as_dict(u for r in records["config"] for u in r.config.update)
    assert hparams["width"] == 4  # the module's hyperparameters, logged by Lightning

    history = [as_dict(r.history.item) for r in records["history"]]
    losses = [h["train_loss"] for h in history if "train_loss" in h]
    assert len(losses) == 2 and all(isinstance(x, float) for x in losses)
    assert [h["epoch"] for h in history if "train_loss" in h] == [0, 1]
    assert records["exit"][0].exit.exit_code == 0

    # The key reached wandb only through the environment: no file of the run or of wandb has it.
    for path in [*run_dir.rglob("*"), *wandb_home.rglob("*")]:
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def test_api_key_is_in_the_environment_only_while_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    real_init = wandb.init

    def spy_init(*args, **kwargs):
        seen.append(os.environ.get("WANDB_API_KEY"))
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", spy_init)
    logger = wandb_logger(trainer_cfg(api_key=SECRET), tmp_path)
    assert seen == [SECRET]
    assert "WANDB_API_KEY" not in os.environ
    logger.finalize("success")


def test_prv_runid_resumes_that_run(tmp_path: Path) -> None:
    logger = wandb_logger(trainer_cfg(prv_runid="resume42"), tmp_path)
    assert logger.version == "resume42"
    assert only_run(tmp_path).name.endswith("-resume42")
    logger.finalize("success")


def test_failed_training_finishes_the_run_as_failed(tmp_path: Path) -> None:
    logger = wandb_logger(trainer_cfg(name="will-fail"), tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        fit(logger, fail=True)
    assert wandb.run is None
    assert records_of(tmp_path)["exit"][0].exit.exit_code == 1


def test_online_without_credentials_fails_instead_of_prompting(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="never prompts"):
        wandb_logger(trainer_cfg(wandb_mode="online"), tmp_path)
    assert wandb.run is None


def test_mode_comes_from_config_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode(None) == "offline"
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode(None) == "online"
    with pytest.raises(ValueError, match="wandb_mode"):
        resolve_mode("sometimes")


def test_missing_wandb_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(ImportError, match="pip install wandb"):
        wandb_logger(trainer_cfg(), tmp_path)


def test_mask_secrets_masks_a_copy() -> None:
    config = {"trainer_config": {"wandb": {"api_key": SECRET, "name": "x"}}, "data_config": {}}
    masked = mask_secrets(config)
    assert masked["trainer_config"]["wandb"] == {"api_key": MASK, "name": "x"}
    assert config["trainer_config"]["wandb"]["api_key"] == SECRET
    unset = {"trainer_config": {"wandb": {"api_key": None}}}
    assert mask_secrets(unset) == unset
    assert mask_secrets({"model_config": {}}) == {"model_config": {}}
