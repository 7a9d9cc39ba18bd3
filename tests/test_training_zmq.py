"""The trainer_config.zmq callbacks against real sockets on loopback, as the SLEAP GUI uses them.

A ``FakeViewer`` binds what SLEAP's loss viewer binds (a SUB for progress, a PUB for commands)
and runs its sockets on a background thread. Commands are re-sent every few milliseconds until
training ends, so the zmq "slow joiner" delay can only make a test slower, never flaky.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lightning as L
import pytest
import torch
import zmq
from torch.utils.data import DataLoader, TensorDataset

from pipeline_lib.training.remote_control import (
    ProgressPublisher,
    TrainingController,
    parse_command,
    zmq_callbacks,
)

LR = 0.01
STEPS = 4  # training batches per epoch
# Runs a remote command must cut short: 200 epochs of 4 steps of >= 5 ms, i.e. at least 4 s;
# a command honoured stops them within a few epochs, the tests allow up to half of them.
LONG = {"max_epochs": 200, "step_delay": 0.005}


@pytest.fixture(autouse=True)
def _one_thread_and_a_deadline() -> Iterator[None]:
    """One torch thread; a hung socket turns into a failure after 60 s instead of a stuck run."""
    torch.set_num_threads(1)

    def expire(_signum, _frame):
        raise TimeoutError("zmq test exceeded 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


class TinyModule(L.LightningModule):
    """A linear layer on random tensors; two parameter groups with different learning rates."""

    def __init__(self, fail_at_step: int | None = None, step_delay: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.fail_at_step = fail_at_step
        self.step_delay = step_delay  # pins an epoch's duration, whatever the machine's speed
        self.data = TensorDataset(torch.randn(STEPS * 4, 4), torch.randn(STEPS * 4, 1))

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx):
        if self.fail_at_step is not None and self.global_step >= self.fail_at_step:
            raise RuntimeError("boom")
        time.sleep(self.step_delay)
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(
            [{"params": [self.layer.weight]}, {"params": [self.layer.bias], "lr": LR / 2}], lr=LR
        )

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=4)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=8)


def fit(callbacks: list[L.Callback], max_epochs: int, **module_kw) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(TinyModule(**module_kw))
    return trainer


class FakeViewer:
    """The GUI side: binds progress SUB and command PUB on free ports, served by a thread.

    ``commands`` (raw frames) are published every 20 ms once ``send_when`` accepts the events
    received so far, until :meth:`stop` is called.
    """

    def __init__(self, commands: Sequence[bytes] = (), send_when: Callable[[list], bool] = bool):
        self.context = zmq.Context()
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.LINGER, 0)
        self.publish_port = self.sub.bind_to_random_port("tcp://127.0.0.1")
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.controller_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.commands = list(commands)
        self.send_when = send_when
        self.events: list[dict] = []
        self.raw: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        last_send = 0.0
        while not self._done.is_set():
            if self.sub.poll(5, zmq.POLLIN):
                text = self.sub.recv_string()
                self.raw.append(text)
                self.events.append(json.loads(text))
            if self.commands and self.send_when(self.events) and time.time() - last_send > 0.02:
                for frame in self.commands:
                    self.pub.send(frame)
                last_send = time.time()
        self.sub.close()
        self.pub.close()
        self.context.term()

    def wait_for(self, event: str, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not any(e["event"] == event for e in self.events):
            time.sleep(0.01)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)

    def names(self) -> list[str]:
        return [e["event"] for e in list(self.events)]


@pytest.fixture
def viewer_factory() -> Iterator[Callable[..., FakeViewer]]:
    viewers: list[FakeViewer] = []

    def make(*args, **kwargs) -> FakeViewer:
        viewers.append(FakeViewer(*args, **kwargs))
        return viewers[-1]

    yield make
    for v in viewers:
        v.stop()


def free_port() -> int:
    """A loopback port nobody listens on (bound, read back, released)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(0)
    ctx.term()
    return port


def after_first_batch(events: list) -> bool:
    return any(e["event"] == "batch_end" for e in events)


def cfg(publish=None, controller=None, timeout=10) -> dict:
    return {
        "publish_port": publish,
        "controller_port": controller,
        "controller_polling_timeout": timeout,
    }


# ---- configuration ----------------------------------------------------------------------------
def test_no_section_or_no_ports_gives_no_callbacks(tmp_path: Path) -> None:
    assert zmq_callbacks(None, tmp_path / "stop.ckpt") == []
    assert zmq_callbacks(cfg(), tmp_path / "stop.ckpt") == []


def test_callbacks_follow_the_ports_and_convert_the_timeout(tmp_path: Path) -> None:
    ckpt = tmp_path / "run7" / "checkpoints" / "stopped.ckpt"
    pub, ctl = zmq_callbacks(cfg(9001, 9000, timeout=25_000), ckpt)
    assert isinstance(pub, ProgressPublisher) and pub.address == "tcp://127.0.0.1:9001"
    assert pub.what == "run7"  # the run directory, not the checkpoints folder
    assert isinstance(ctl, TrainingController) and ctl.address == "tcp://127.0.0.1:9000"
    assert ctl.timeout_ms == 25  # microseconds in the config, milliseconds for zmq
    assert zmq_callbacks(cfg(controller=9000), ckpt)[0].timeout_ms == 0  # default 10 us
    assert [type(c) for c in zmq_callbacks(cfg(publish=9001), ckpt, what="x")] == [
        ProgressPublisher
    ]


def test_parse_command_rejects_what_is_not_a_command() -> None:
    assert parse_command(b'{"command": "stop"}') == {"command": "stop"}
    for raw in (b"\xff\xfe", b"not json", b"[1, 2]", b'{"lr": 1}', b'{"command": 3}'):
        assert parse_command(raw) is None


# ---- progress publishing ------------------------------------------------------------------------
def test_viewer_receives_progress_in_order(tmp_path: Path, viewer_factory) -> None:
    viewer = viewer_factory()
    callbacks = zmq_callbacks(cfg(publish=viewer.publish_port), tmp_path / "s.ckpt", what="run-a")
    fit(callbacks, max_epochs=3)
    viewer.wait_for("train_end")

    names = viewer.names()
    assert names[0] == "train_begin" and names[-1] == "train_end"
    assert names.count("epoch_begin") == 3 and names.count("epoch_end") == 3
    assert names.count("batch_end") == 3 * STEPS
    assert names.index("epoch_begin") < names.index("batch_end") < names.index("epoch_end")
    assert {e["what"] for e in viewer.events} == {"run-a"}

    epoch_ends = [e for e in viewer.events if e["event"] == "epoch_end"]
    assert [e["epoch"] for e in epoch_ends] == [0, 1, 2]
    for e in epoch_ends:
        logs = e["logs"]
        for key in ("loss", "train_loss", "val_loss", "learning_rate"):
            assert isinstance(logs[key], float)
        assert logs["loss"] == logs["train_loss"] and logs["learning_rate"] == LR
    batch = next(e for e in viewer.events if e["event"] == "batch_end")
    assert batch["batch"] == 0 and isinstance(batch["logs"]["loss"], float)
    for text in viewer.raw:  # strict JSON: no NaN/Infinity tokens
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert not callbacks[0].is_open


def test_training_without_viewer_or_controller_runs_normally(tmp_path: Path) -> None:
    callbacks = zmq_callbacks(cfg(free_port(), free_port()), tmp_path / "stop.ckpt")
    started = time.monotonic()
    trainer = fit(callbacks, max_epochs=3)
    elapsed = time.monotonic() - started

    assert trainer.current_epoch == 3 and not trainer.interrupted
    publisher, controller = callbacks
    assert publisher.sent == 2 + 3 * (2 + STEPS)  # everything was published, to nobody
    assert controller.polls == 3 * STEPS
    assert elapsed < 15, f"training without a listener took {elapsed:.1f} s"
    assert not (tmp_path / "stop.ckpt").exists()
    assert not publisher.is_open and not controller.is_open


# ---- remote control ------------------------------------------------------------------------------
def test_stop_command_ends_training_and_saves_a_checkpoint(tmp_path: Path, viewer_factory) -> None:
    viewer = viewer_factory([json.dumps({"command": "stop"}).encode()], after_first_batch)
    ckpt = tmp_path / "run" / "checkpoints" / "stopped.ckpt"
    callbacks = zmq_callbacks(cfg(viewer.publish_port, viewer.controller_port), ckpt)
    trainer = fit(callbacks, **LONG)

    assert trainer.current_epoch < 100, "the stop command was not honoured"
    assert callbacks[1].stop_requested
    state = torch.load(ckpt, weights_only=True)
    assert "state_dict" in state and "layer.weight" in state["state_dict"]
    assert state["global_step"] == trainer.global_step  # saved at the end: nothing lost
    viewer.wait_for("train_end")
    assert viewer.names()[-1] == "train_end"


def test_set_lr_changes_every_param_group(tmp_path: Path, viewer_factory) -> None:
    new_lr = 0.0123
    viewer = viewer_factory(
        [json.dumps({"command": "set_lr", "lr": new_lr}).encode()], after_first_batch
    )

    class StopOnceChanged(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.optimizers[0].param_groups[0]["lr"] == new_lr:
                trainer.should_stop = True

    callbacks = zmq_callbacks(cfg(viewer.publish_port, viewer.controller_port), tmp_path / "s")
    trainer = fit([*callbacks, StopOnceChanged()], **LONG)

    assert trainer.current_epoch < 100, "set_lr never arrived"
    assert [g["lr"] for g in trainer.optimizers[0].param_groups] == [new_lr, new_lr]
    viewer.wait_for("train_end")
    assert [e["logs"]["learning_rate"] for e in viewer.events if e["event"] == "epoch_end"][
        -1
    ] == new_lr


def test_malformed_commands_are_logged_not_fatal(
    tmp_path: Path, viewer_factory, caplog: pytest.LogCaptureFixture
) -> None:
    junk = [
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'{"command": "dance"}',
        b'{"command": "set_lr", "lr": "fast"}',
        b'{"command": "set_lr", "lr": -1}',
    ]
    # The stop is published last: training can only end early if the junk did not kill polling.
    viewer = viewer_factory([*junk, b'{"command": "stop"}'], after_first_batch)
    ports = cfg(viewer.publish_port, viewer.controller_port)
    callbacks = zmq_callbacks(ports, tmp_path / "s.ckpt")
    with caplog.at_level(logging.WARNING, logger="pipeline_lib.training.remote_control"):
        trainer = fit(callbacks, **LONG)

    assert trainer.current_epoch < 100 and (tmp_path / "s.ckpt").exists()
    assert [g["lr"] for g in trainer.optimizers[0].param_groups] == [LR, LR / 2]
    text = caplog.text
    assert "malformed" in text and "without a 'command'" in text
    assert "unknown training command 'dance'" in text and "invalid lr 'fast'" in text
    assert "invalid lr -1" in text


def test_sockets_are_closed_when_training_fails(tmp_path: Path, viewer_factory) -> None:
    viewer = viewer_factory()
    callbacks = zmq_callbacks(cfg(viewer.publish_port, free_port()), tmp_path / "s.ckpt")
    with pytest.raises(RuntimeError, match="boom"):
        fit(callbacks, max_epochs=3, fail_at_step=2)
    assert all(c.is_open is False for c in callbacks)
    assert callbacks[1].polls == 2  # it was listening until the failure
    viewer.wait_for("batch_end")
    assert "train_begin" in viewer.names()
