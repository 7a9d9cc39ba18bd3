"""Live progress and remote control of a training run over ZeroMQ (``trainer_config.zmq``).

The SLEAP GUI's loss viewer binds two sockets on the loopback interface and starts the training:

* a SUB socket on ``publish_port``: the run publishes its progress there (batch and epoch losses),
* a PUB socket on ``controller_port``: the GUI's "Stop Early" button publishes commands there.

Training only ever *connects* to those ports. Whoever watches owns the ports, so two trainings
never fight over one, and a run whose viewer is gone (or was never started) keeps training: zmq
queues nothing for a peer that is not there and sends never block.

Progress messages are JSON objects, one per zmq frame, in the shape SLEAP's ``LossViewer`` reads::

    {"event": "train_begin", "what": <run>, "epoch": 0, "step": 0}
    {"event": "epoch_begin", "what": <run>, "epoch": 3}
    {"event": "batch_end",   "what": <run>, "epoch": 3, "batch": 7, "step": 52,
     "logs": {"loss": 0.012}}
    {"event": "epoch_end",   "what": <run>, "epoch": 3, "step": 56,
     "logs": {"loss": 0.011, "train_loss": 0.011, "val_loss": 0.013, "learning_rate": 1e-4}}
    {"event": "train_end",   "what": <run>, "epoch": 9, "step": 140}

``logs.loss`` repeats ``train_loss`` because that is the key the viewer plots; metrics that were
not computed (no validation yet, a NaN) are left out, so every message is strict JSON.

Commands are JSON objects too: ``{"command": "stop"}`` and ``{"command": "set_lr", "lr": x}``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import zmq

from pipeline_lib.training.run_dir import WORK_DIR

log = logging.getLogger(__name__)

LOOPBACK = "tcp://127.0.0.1"
# How long close() may spend flushing queued progress messages to a connected viewer. Short,
# because a viewer that is not there must not delay the end of training.
SEND_LINGER_MS = 200
# How long the publisher waits, at the start of training, for the viewer's subscription to
# arrive. Without it, zmq drops ``train_begin`` if the TCP handshake is not finished yet (the
# "slow joiner"), and the viewer keys the whole run on that message's ``what``.
SUBSCRIBER_WAIT_S = 0.5


def zmq_callbacks(
    zmq_cfg: dict | None, checkpoint_path: Path, *, what: str | None = None
) -> list[L.Callback]:
    """Callbacks for the ``trainer_config.zmq`` section; [] when it is absent or both ports null.

    ``checkpoint_path`` is where a remote ``stop`` saves the final state. ``what`` names the run
    in progress messages (the viewer ignores messages of another run); by default it is the run
    directory's name, taken from ``checkpoint_path`` (``<run_dir>/checkpoints/<file>`` or
    ``<run_dir>/<file>``).
    """
    if not zmq_cfg:
        return []
    callbacks: list[L.Callback] = []
    if zmq_cfg.get("publish_port") is not None:
        name = what if what is not None else _run_name(Path(checkpoint_path))
        callbacks.append(ProgressPublisher(int(zmq_cfg["publish_port"]), what=name))
    if zmq_cfg.get("controller_port") is not None:
        timeout = zmq_cfg.get("controller_polling_timeout")
        callbacks.append(
            TrainingController(
                int(zmq_cfg["controller_port"]),
                Path(checkpoint_path),
                polling_timeout_us=10 if timeout is None else int(timeout),
            )
        )
    return callbacks


def _run_name(checkpoint_path: Path) -> str:
    """The run directory's name for a checkpoint inside it or inside its checkpoints folder."""
    folder = checkpoint_path.parent
    if folder.name == WORK_DIR:
        folder = folder.parent
    return folder.name


class _ZmqCallback(L.Callback):
    """A callback owning one zmq socket, opened on global rank zero only when fitting starts.

    Opening in ``setup`` (not ``__init__``) keeps the callback picklable and keeps other ranks
    off the GUI's ports. The socket is closed whichever way fitting ends.
    """

    socket_type: int = zmq.PUB
    linger_ms: int = 0

    def __init__(self, port: int) -> None:
        self.port = int(port)
        self.address = f"{LOOPBACK}:{self.port}"
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None

    @property
    def is_open(self) -> bool:
        return self._socket is not None

    def _open(self) -> zmq.Socket:
        self._context = zmq.Context()
        sock = self._context.socket(self.socket_type)
        sock.setsockopt(zmq.LINGER, self.linger_ms)
        sock.connect(self.address)
        self._socket = sock
        return sock

    def close(self) -> None:
        """Close the socket and its context; safe to call more than once."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._context is not None:
            self._context.term()  # returns once queued messages are sent or linger expires
            self._context = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero and self._socket is None:
            self._open()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.close()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.close()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.close()


class ProgressPublisher(_ZmqCallback):
    """Publishes training progress to ``tcp://127.0.0.1:<port>`` for SLEAP's loss viewer.

    Uses an XPUB socket (a PUB that also sees subscriptions) so the start of training can wait
    briefly for the viewer's subscription; after that every send is non-blocking and a missing
    viewer costs nothing.
    """

    socket_type = zmq.XPUB
    linger_ms = SEND_LINGER_MS

    def __init__(self, port: int, what: str = "", subscriber_wait_s: float = SUBSCRIBER_WAIT_S):
        super().__init__(port)
        self.what = what
        self.subscriber_wait_s = float(subscriber_wait_s)
        self.sent = 0  # messages handed to zmq (for tests and diagnostics)
        self._opened_at = 0.0

    def _open(self) -> zmq.Socket:
        sock = super()._open()
        self._opened_at = time.monotonic()
        log.info("Publishing training progress to %s as '%s'", self.address, self.what)
        return sock

    def _wait_for_subscriber(self) -> bool:
        """True once a subscriber is connected, waiting at most until the deadline."""
        assert self._socket is not None
        remaining = self._opened_at + self.subscriber_wait_s - time.monotonic()
        if not self._socket.poll(max(0, int(remaining * 1000)), zmq.POLLIN):
            log.debug("No progress listener on %s yet; publishing anyway", self.address)
            return False
        while self._socket.poll(0, zmq.POLLIN):  # the subscription frames themselves
            self._socket.recv(zmq.NOBLOCK)
        return True

    def send(self, event: str, **fields: Any) -> None:
        """Publish one event; a no-op on other ranks and once closed, never blocking."""
        if self._socket is None:
            return
        message = {"event": event, "what": self.what, **fields}
        try:
            self._socket.send_string(json.dumps(message), zmq.NOBLOCK)
            self.sent += 1
        except zmq.ZMQError as exc:  # e.g. EAGAIN under back-pressure: drop, never stall
            log.debug("Dropped progress message %s: %s", event, exc)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._socket is not None:
            self._wait_for_subscriber()
        self.send("train_begin", epoch=trainer.current_epoch, step=trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send("epoch_begin", epoch=trainer.current_epoch)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = _finite(outputs.get("loss") if isinstance(outputs, dict) else outputs)
        self.send(
            "batch_end",
            epoch=trainer.current_epoch,
            batch=batch_idx,
            step=trainer.global_step,
            logs={} if loss is None else {"loss": loss},
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Read the metrics on every rank: computing synced metrics is a collective operation.
        logs = epoch_logs(trainer)
        self.send("epoch_end", epoch=trainer.current_epoch, step=trainer.global_step, logs=logs)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send("train_end", epoch=trainer.current_epoch, step=trainer.global_step)


def epoch_logs(trainer: L.Trainer) -> dict[str, float]:
    """The epoch's losses and learning rate; ``loss`` repeats ``train_loss`` for the viewer."""
    metrics = trainer.callback_metrics
    logs = {
        "train_loss": _finite(metrics.get("train_loss")),
        "val_loss": _finite(metrics.get("val_loss")),
        "learning_rate": _finite(
            trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        ),
    }
    logs = {key: value for key, value in logs.items() if value is not None}
    if "train_loss" in logs:
        logs = {"loss": logs["train_loss"], **logs}
    return logs


def _finite(value: Any) -> float | None:
    """A tensor or number as a float; None when absent or not finite (JSON has no NaN)."""
    if value is None:
        return None
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return number if math.isfinite(number) else None


class TrainingController(_ZmqCallback):
    """Applies commands published on ``tcp://127.0.0.1:<port>`` (SLEAP's "Stop Early" button).

    The socket is polled after every training batch, for ``polling_timeout_us`` microseconds: the
    unit the sleap-nn config guide documents for ``controller_polling_timeout``. zmq polls in
    whole milliseconds, so the value is divided by 1000 and rounded down; the default of 10 us
    becomes a non-blocking check. That loses nothing, because zmq's I/O thread queues commands
    as they arrive and each check drains the queue, and it spares every batch the 10 ms wait
    sleap-nn incurs by passing the number to zmq unconverted.

    * ``{"command": "stop"}`` sets ``trainer.should_stop`` (Lightning ends the run after the
      current batch, running validation and the epoch-end callbacks as usual) and, when training
      ends, saves a full checkpoint to ``checkpoint_path`` so the work done is kept.
    * ``{"command": "set_lr", "lr": x}`` sets the learning rate of every parameter group of
      every optimizer (a scheduler then continues from the new value).

    Anything else is logged as a warning and ignored. Only global rank zero listens; under
    multi-process training its commands are broadcast so every rank applies them.
    """

    socket_type = zmq.SUB
    linger_ms = 0

    def __init__(self, port: int, checkpoint_path: Path, polling_timeout_us: int = 10) -> None:
        super().__init__(port)
        self.checkpoint_path = Path(checkpoint_path)
        self.timeout_ms = max(0, int(polling_timeout_us)) // 1000
        self.stop_requested = False
        self.polls = 0  # number of checks for commands (for tests and diagnostics)

    def _open(self) -> zmq.Socket:
        sock = super()._open()
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        log.info("Listening for training commands on %s", self.address)
        return sock

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.stop_requested = False
        super().setup(trainer, pl_module, stage)

    def receive(self) -> list[dict]:
        """Every command queued so far (waiting up to the polling timeout for the first)."""
        if self._socket is None:
            return []
        self.polls += 1
        commands: list[dict] = []
        if not self._socket.poll(self.timeout_ms, zmq.POLLIN):
            return commands
        while True:
            try:
                raw = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return commands
            command = parse_command(raw)
            if command is not None:
                commands.append(command)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        commands = self.receive()
        if trainer.world_size > 1:  # collective: every rank must call it, every batch
            commands = trainer.strategy.broadcast(commands, src=0)
        for command in commands:
            self.apply(trainer, command)

    def apply(self, trainer: L.Trainer, command: dict) -> None:
        """Carry out one parsed command."""
        name = command.get("command")
        if name == "stop":
            if not self.stop_requested:
                log.info("Stop requested over %s; finishing after this batch", self.address)
            self.stop_requested = True
            trainer.should_stop = True
        elif name == "set_lr":
            lr = _learning_rate(command.get("lr"))
            if lr is None:
                log.warning("Ignoring set_lr with invalid lr %r", command.get("lr"))
                return
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            log.info("Learning rate set to %g over %s", lr, self.address)
        else:
            log.warning("Ignoring unknown training command %r", name)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Saving here rather than on receipt keeps the checkpoint consistent: the interrupted
        # epoch's validation and epoch-end callbacks have run. Every rank calls it (collective).
        if self.stop_requested:
            trainer.save_checkpoint(self.checkpoint_path)
            log.info("Stopped on request; checkpoint saved to %s", self.checkpoint_path)


def parse_command(raw: bytes) -> dict | None:
    """A command message as a dict with a string ``command``; None (and a warning) otherwise."""
    try:
        message = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        log.warning("Ignoring malformed training command %r", raw[:200])
        return None
    if not isinstance(message, dict) or not isinstance(message.get("command"), str):
        log.warning("Ignoring training command without a 'command' name: %r", message)
        return None
    return message


def _learning_rate(value: Any) -> float | None:
    """A positive finite learning rate from a command, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        lr = float(value)
    except ValueError:
        return None
    return lr if math.isfinite(lr) and lr > 0 else None
