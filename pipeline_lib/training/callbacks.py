"""Lightning callbacks of the training stage."""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path

import lightning as L

from pipeline_lib.io.atomic import write_text_atomic
from pipeline_lib.logs import epoch_line, quiet_third_party

log = logging.getLogger(__name__)

# Lightning was just imported (above): drop its duplicate console handler and its advert before
# any Trainer of this process starts.
quiet_third_party()

LOG_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "learning_rate", "elapsed_s")


class EpochLogWriter(L.Callback):
    """Writes ``training_log.csv`` (one row per epoch), rewritten atomically after every epoch,
    and logs one progress line per epoch (losses, seconds per epoch, ETA), so a job's log shows
    how far training got while it runs, not only when it ends.

    On resume the rows of epochs already finished are kept, so the file always covers the whole
    run; elapsed time continues from the last recorded row.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []
        self._offset = 0.0
        self._start = time.time()
        self._epoch_lr = float("nan")
        self._epoch_start = time.time()
        self._session_epochs = 0
        self._session_start = time.time()
        self._session_step0 = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After a resume, current_epoch is only restored by now (not yet at on_fit_start).
        self._start = time.time()
        self.rows = []
        if self.path.exists():
            with self.path.open() as fh:
                self.rows = [
                    r for r in csv.DictReader(fh) if int(r["epoch"]) < trainer.current_epoch
                ]
        self._offset = float(self.rows[-1]["elapsed_s"]) if self.rows else 0.0
        self._session_start, self._session_epochs = time.time(), 0
        self._session_step0 = trainer.global_step

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The rate the epoch trains with: epoch-interval schedulers step before the epoch-end
        # hook, so reading it there would report the next epoch's rate.
        self._epoch_start = time.time()
        self._epoch_lr = (
            trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        )

    #: The file's columns, in order; a subclass with other metrics sets its own.
    columns: tuple[str, ...] = LOG_COLUMNS

    def epoch_metrics(self, trainer: L.Trainer) -> dict:
        """This epoch's metric columns (everything but epoch, step, learning rate, time)."""
        metrics = trainer.callback_metrics
        return {
            "train_loss": _num(metrics.get("train_loss")),
            "val_loss": _num(metrics.get("val_loss")),
        }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                **self.epoch_metrics(trainer),
                "learning_rate": self._epoch_lr,
                "elapsed_s": round(self._offset + time.time() - self._start, 3),
            }
        )
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buf.getvalue())
        if trainer.is_global_zero:
            self._log_progress(trainer, self.rows[-1])

    def _log_progress(self, trainer: L.Trainer, row: dict) -> None:
        """The epoch's progress line; the ETA extrapolates this session's mean epoch (or step)
        time to ``max_epochs`` (or ``max_steps`` when only that is set)."""
        now = time.time()
        self._session_epochs += 1
        spent = now - self._session_start
        done_epochs = trainer.current_epoch + 1
        max_epochs = trainer.max_epochs if (trainer.max_epochs or -1) > 0 else None
        eta = math.nan
        if max_epochs is not None:
            eta = spent / self._session_epochs * max(0, max_epochs - done_epochs)
        elif trainer.max_steps and trainer.max_steps > 0:
            steps = trainer.global_step - self._session_step0
            if steps > 0:
                eta = spent / steps * max(0, trainer.max_steps - trainer.global_step)
        losses = {k: float(v) for k, v in row.items() if k.endswith(("_loss", "_accuracy"))}
        log.info(epoch_line(done_epochs, max_epochs, losses, now - self._epoch_start, eta))


def _num(value) -> float:
    """Tensor or number to float (NaN when the metric was not logged)."""
    if value is None:
        return float("nan")
    return float(value.item() if hasattr(value, "item") else value)
