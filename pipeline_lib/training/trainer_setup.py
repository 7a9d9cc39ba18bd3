"""The Lightning Trainer of a training run, built from ``trainer_config``.

One place maps the sleap-nn trainer options onto Lightning: checkpointing (``model_ckpt``,
``save_ckpt``), early stopping, devices/accelerator/strategy, the profiler, and the extra
callbacks and loggers (progress publishing, remote stop, prediction images, wandb) that the
caller passes in.

Checkpoints live in the run's working folder (``checkpoints/``):

* ``best.ckpt``: lowest validation loss so far. Always kept while training, because the run
  directory's published ``best.ckpt`` (the stage's output) is copied from it.
* ``last.ckpt``: written every epoch so a killed job resumes; removed at the end unless
  ``model_ckpt.save_last`` is true.
* ``best-epoch=NNNN-val_loss=X.ckpt``: the ``save_top_k`` best epochs when ``save_top_k`` is
  more than 1 or -1 (all). With 0 or 1 only ``best.ckpt`` exists.

``save_ckpt: false`` (the guide's default) keeps nothing of the working folder once training has
finished; the published ``best.ckpt`` is still written, as the pipeline needs it.
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from pipeline_lib.devices import pick_device
from pipeline_lib.errors import Interrupted, sigterm_handler
from pipeline_lib.io.atomic import atomic_path

log = logging.getLogger(__name__)

PROFILE_FILENAME = "profile"  # Lightning writes fit-profile.txt from this stem

# The working folder always holds the resume fingerprint (and, on resume, the checkpoints
# themselves), so Lightning's "directory exists and is not empty" warning is noise here.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def build_trainer(
    tc: dict,
    work: Path,
    run_dir: Path,
    precision: str = "32",
    callbacks: list[Callback] | None = None,
    loggers: list | None = None,
) -> L.Trainer:
    """Trainer for ``trainer_config`` ``tc``; ``callbacks``/``loggers`` are added to ours."""
    accelerator, devices = resolve_devices(tc)
    all_callbacks: list[Callback] = [*checkpoint_callbacks(tc, work), *(callbacks or [])]
    stopper = early_stopping(tc)
    if stopper is not None:
        all_callbacks.append(stopper)
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=tc.get("trainer_strategy") or "auto",
        max_epochs=int(tc["max_epochs"]),
        callbacks=all_callbacks,
        logger=list(loggers) if loggers else False,
        enable_progress_bar=bool(tc.get("enable_progress_bar", True)),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
        profiler=make_profiler(tc.get("profiler"), run_dir),
        precision=precision,
        log_every_n_steps=1,
        plugins=[AtomicCheckpointIO()],
    )


class TrainingInterrupted(Interrupted):
    """Training stopped by SIGTERM or SIGINT; its checkpoints are kept for the resume."""


def run_fit(trainer: L.Trainer, work: Path, *args, **kwargs) -> None:
    """``trainer.fit(*args, **kwargs)``; a stop signal raises :class:`TrainingInterrupted`.

    Lightning ends a fit on SIGTERM by raising ``SIGTERMException``, a ``SystemExit`` without a
    code, and on Ctrl-C (or the :class:`~pipeline_lib.errors.Interrupted` of
    ``sigterm_raises``) with ``sys.exit(1)``: either would end the process silently, the first
    with exit status 0, as if training had finished. The checkpoints in ``work`` stay, so
    the same command resumes.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    received: list[int] = []
    try:
        # SIGTERM only noted here: Lightning (which adds its own handler) then stops at the next
        # step, never inside a checkpoint save.
        with sigterm_handler(lambda signum, _frame: received.append(signum)):
            trainer.fit(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as exc:
        if not trainer.interrupted:
            raise
        raise _interrupted(trainer, work, exc) from None
    finally:
        if main_thread and sigint is not None:
            signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C after the first
    if trainer.interrupted or received:  # a SIGTERM before Lightning was listening
        raise _interrupted(trainer, work, None)


def _interrupted(trainer: L.Trainer, work: Path, exc: BaseException | None) -> TrainingInterrupted:
    signum = signal.SIGTERM if trainer.received_sigterm or exc is None else signal.SIGINT
    while exc is not None:  # our own handler's exception, under Lightning's SystemExit
        if isinstance(exc, Interrupted):
            signum = exc.signum
            break
        exc = exc.__cause__ or exc.__context__
    name = signal.Signals(signum).name
    return TrainingInterrupted(
        signum,
        f"Training was interrupted by {name}; its checkpoints in {work} are kept: rerun the "
        "same command to resume",
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their final name and renamed into place.

    Lightning's own writer builds the file in the system temp folder and moves it: when that is
    another file system (node-local /tmp on a cluster) the move is a copy, and a job killed
    during it leaves a truncated ``last.ckpt`` that every rerun then fails to resume from. The
    hidden partial file a kill leaves here is removed by the next attempt
    (``train._resume_checkpoint``).
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (writing {path})")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def checkpoint_callbacks(tc: dict, work: Path) -> list[ModelCheckpoint]:
    """Best (+ last, for resuming) in ``work``, and the ``save_top_k`` best epochs if k > 1."""
    callbacks = [
        ModelCheckpoint(
            dirpath=work,
            filename="best",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,
        )
    ]
    top_k = int((tc.get("model_ckpt") or {}).get("save_top_k", 1))
    if top_k > 1 or top_k == -1:
        callbacks.append(
            TopKCheckpoint(
                dirpath=work,
                filename="best-{epoch:04d}-{val_loss:.6f}",
                monitor="val_loss",
                mode="min",
                save_top_k=top_k,
                save_last=False,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    return callbacks


class TopKCheckpoint(ModelCheckpoint):
    """The ``save_top_k`` checkpoints, beside the ``best``/``last`` one.

    Lightning keys a checkpoint callback's saved state by its monitor and schedule, which both
    share; a distinct key lets the two be restored side by side on resume.
    """

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, kind="top_k")


def early_stopping(tc: dict) -> EarlyStopping | None:
    """EarlyStopping on the validation loss when ``stop_training_on_plateau`` is set."""
    es = tc.get("early_stopping") or {}
    if not es.get("stop_training_on_plateau"):
        return None
    return EarlyStopping(
        monitor="val_loss",
        mode="min",
        min_delta=float(es.get("min_delta", 0.0)),
        patience=int(es.get("patience", 1)),
    )


def resolve_devices(tc: dict) -> tuple[str, int | str | list[int]]:
    """Lightning ``(accelerator, devices)`` from ``trainer_accelerator``/``trainer_devices``/
    ``trainer_device_indices``.

    Indices select GPUs (``[2]`` runs on GPU 2 only, ``[0, 1]`` on two); they override the count,
    as the guide says. Lightning's CPU accelerator only takes a process count, so on CPU the
    indices become their number (``[0, 1]`` means two CPU processes).
    """
    accelerator = tc.get("trainer_accelerator") or "auto"
    if accelerator == "cuda":
        accelerator = "gpu"
    count = tc.get("trainer_devices")
    indices = tc.get("trainer_device_indices")
    if indices:
        indices = [int(i) for i in indices]
        if training_accelerator(tc) == "cpu":
            return "cpu", len(indices)
        return accelerator, indices
    if count in (None, "auto"):
        return accelerator, "auto"
    return accelerator, int(count)


def training_accelerator(tc: dict) -> str:
    """The device type training will use: ``trainer_accelerator``, with "auto" resolved to
    cuda, mps or cpu by what this machine has (:func:`pipeline_lib.devices.pick_device`)."""
    accelerator = tc.get("trainer_accelerator") or "auto"
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator != "auto":
        return accelerator
    return pick_device("auto").type


def make_profiler(name: str | None, run_dir: Path):
    """Lightning profiler whose report is written into the run directory.

    ``simple`` and ``advanced`` write ``fit-profile.txt``; ``pytorch`` writes its text summary
    the same way (plus traces); ``passthrough`` profiles nothing.
    """
    if name is None:
        return None
    from lightning.pytorch import profilers

    kinds = {
        "simple": profilers.SimpleProfiler,
        "advanced": profilers.AdvancedProfiler,
        "pytorch": profilers.PyTorchProfiler,
        "passthrough": profilers.PassThroughProfiler,
    }
    if name not in kinds:
        raise ValueError(f"trainer_config.profiler '{name}' is not one of {sorted(kinds)}")
    if name == "passthrough":
        return profilers.PassThroughProfiler()
    return kinds[name](dirpath=str(run_dir), filename=PROFILE_FILENAME)
