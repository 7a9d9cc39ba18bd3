"""Weights & Biases logging of a training run (``trainer_config.use_wandb`` and ``.wandb``).

wandb is an optional extra: nothing here imports it unless ``use_wandb`` is true. The run's files
go under the run directory (``<run_dir>/wandb/``), so ``wandb_mode: offline`` keeps everything
local and ``wandb sync <run_dir>/wandb/offline-run-*`` can upload it later.

Two rules keep training jobs safe on clusters and in pipelines:

* an API key given in the config reaches wandb through the environment, only while the run is
  being started, and is never written to disk (use :func:`mask_secrets` before saving a config);
* wandb never prompts: online mode without credentials fails at once with a clear error instead
  of waiting for keyboard input that a batch job will never get.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger

log = logging.getLogger(__name__)

MASK = "****"
WANDB_MODES = ("online", "offline", "disabled")
_ENV_MODES = {"run": "online", "dryrun": "offline"}  # legacy spellings of WANDB_MODE
INSTALL_HINT = "pip install wandb  (or install this project with the extra: pip install '.[wandb]')"


def wandb_logger(trainer_cfg: dict, run_dir: Path, *, config: dict | None = None) -> Logger | None:
    """Lightning's WandbLogger for a ``trainer_config`` dict; None when ``use_wandb`` is false.

    The wandb run is started here (not lazily at the first metric) so that a missing package,
    bad credentials or a bad mode fail before any training time is spent. ``config`` (the whole
    training config, optional) is recorded as the run's config with secrets masked. The run is
    finished when Lightning finalises the logger at the end of ``fit``, so a second training in
    the same process gets its own run. ``prv_runid`` resumes that run (``resume="allow"``).
    """
    if not trainer_cfg.get("use_wandb"):
        return None
    wandb, wandb_logger_cls = _import_wandb()
    section = trainer_cfg.get("wandb") or {}
    mode = resolve_mode(section.get("wandb_mode"))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if wandb.run is not None:
        log.warning("Finishing wandb run %s left open in this process", wandb.run.id)
        wandb.finish()
    logger = _finishing_logger_cls(wandb_logger_cls)(
        save_dir=str(run_dir),
        name=section.get("name"),
        project=section.get("project"),
        id=section.get("prv_runid"),
        resume="allow",
        entity=section.get("entity"),
        group=section.get("group"),
        mode=mode,
        config=mask_secrets(config) if config is not None else None,
        settings=wandb.Settings(silent=True),
    )
    with _api_key_in_environment(section.get("api_key")):
        if mode == "online":
            _require_credentials(wandb)
        run = logger.experiment
    url = getattr(run, "url", None)  # None offline; not a str on ranks other than zero
    log.info(
        "wandb run %s (%s) logging to %s%s",
        logger.version,
        mode,
        run_dir / "wandb",
        f", {url}" if isinstance(url, str) else "",
    )
    return logger


def mask_secrets(config: dict) -> dict:
    """A deep copy of a training config with ``trainer_config.wandb.api_key`` replaced by MASK.

    For writing resolved configs and recording them in the wandb run: the key stays usable in
    memory but never lands in a file.
    """
    masked = copy.deepcopy(config)
    section = (masked.get("trainer_config") or {}).get("wandb")
    if isinstance(section, dict) and section.get("api_key"):
        section["api_key"] = MASK
    return masked


def resolve_mode(configured: str | None) -> str:
    """The wandb mode: the config's, else ``WANDB_MODE`` from the environment, else online."""
    mode = configured or os.environ.get("WANDB_MODE") or "online"
    mode = _ENV_MODES.get(mode, mode)
    if mode not in WANDB_MODES:
        raise ValueError(
            f"trainer_config.wandb.wandb_mode must be one of {WANDB_MODES} (or null), got {mode!r}"
        )
    return mode


def _import_wandb() -> tuple[Any, type]:
    """The wandb module and Lightning's WandbLogger, or an error saying how to install wandb."""
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger
    except ImportError as exc:
        raise ImportError(
            f"trainer_config.use_wandb is true but wandb is not installed: {INSTALL_HINT}"
        ) from exc
    return wandb, WandbLogger


def _finishing_logger_cls(base: type) -> type:
    """WandbLogger that finishes its run when Lightning finalises it (success or failure).

    Lightning leaves the run open, so the next WandbLogger in the same process would silently
    log into it. Built on demand because WandbLogger is importable only with wandb installed.
    """

    class FinishingWandbLogger(base):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # Lightning always passes anonymous=None, which recent wandb warns about.
            init_kwargs = getattr(self, "_wandb_init", {})
            if init_kwargs.get("anonymous", "") is None:
                del init_kwargs["anonymous"]

        def finalize(self, status: str) -> None:
            super().finalize(status)
            run = self._experiment
            if run is not None and not getattr(self, "_run_finished", False):
                self._run_finished = True
                run.finish(exit_code=0 if status in ("success", "finished") else 1)

    return FinishingWandbLogger


@contextmanager
def _api_key_in_environment(api_key: str | None) -> Iterator[None]:
    """``WANDB_API_KEY`` set to the config's key while the block runs, then restored."""
    if not api_key:
        yield
        return
    previous = os.environ.get("WANDB_API_KEY")
    os.environ["WANDB_API_KEY"] = api_key
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("WANDB_API_KEY", None)
        else:
            os.environ["WANDB_API_KEY"] = previous


def _require_credentials(wandb: Any) -> None:
    """Raise unless wandb finds credentials without asking (env, settings or .netrc)."""
    try:
        found = wandb.login(prompt=False, verify=False)
    except TypeError:  # wandb without login(prompt=...): only the environment can be checked
        found = bool(os.environ.get("WANDB_API_KEY"))
    if not found:
        raise RuntimeError(
            "wandb online mode needs credentials and training never prompts for them: set "
            "trainer_config.wandb.api_key or WANDB_API_KEY, or run `wandb login` once; "
            "or set trainer_config.wandb.wandb_mode: offline to log locally"
        )
