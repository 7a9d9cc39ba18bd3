"""How the pipeline's log reads: one line per record, our own INFO lines shown, no adverts.

Three things made job logs noisy, and each is handled here once for the command line and the
workflow scripts:

* ``import lightning`` adds its own console handler to the ``lightning`` logger, so with a root
  handler configured every Lightning line was printed twice (``INFO: Seed set to 0`` and the
  root handler's copy). :func:`quiet_third_party` removes that handler when the root logger has
  one, so records propagate once.
* Lightning announces its ``litlogger`` product at every ``Trainer`` start; a filter drops that
  one message.
* Lightning's ``_pytree`` helper subclasses a torch class that torch now deprecates, which warns
  once per training process; it is not ours and not actionable, so that exact warning is
  filtered.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings

#: Format of every log line (time, level, logger, message).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ADVERT = "try installing [litlogger]"


class _DropAdverts(logging.Filter):
    """Drops Lightning's product tips (``litlogger``); everything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _ADVERT not in record.getMessage()


def setup_logging(verbose: bool = False, stream=None) -> None:
    """Log our own INFO lines by default and third-party ones only at WARNING, unless
    ``verbose`` (then everything at INFO). Used by ``pipeline-lib``; the workflow scripts log
    everything at INFO into the job's log file and call :func:`quiet_third_party` only."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=LOG_FORMAT,
        stream=stream or sys.stderr,
    )
    logging.getLogger("pipeline_lib").setLevel(logging.INFO)
    warnings_as_log_lines()
    quiet_third_party()


def warnings_as_log_lines() -> None:
    """Show each Python warning as one log line (``WARNING py.warnings: Category: message``).

    The default display adds the warning's source file and code line, two lines of our
    internals around a message written for the user; logging it keeps one line per warning,
    like every other message of the command line and the job logs."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)

    warnings.showwarning = show


def quiet_third_party() -> None:
    """Undo Lightning's second console handler, drop its advert, filter torch's warning about
    Lightning. Safe to call more than once and before or after Lightning is imported."""
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )
    if "lightning" in sys.modules and logging.getLogger().hasHandlers():
        lightning = logging.getLogger("lightning")
        for handler in list(lightning.handlers):
            if type(handler) is logging.StreamHandler:  # the one `import lightning` added
                lightning.removeHandler(handler)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``: short enough for a progress line."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def epoch_line(
    epoch: int, max_epochs: int | None, metrics: dict[str, float], epoch_s: float, eta_s: float
) -> str:
    """One training progress line: ``epoch 3/40: train_loss 0.000123, val_loss 0.000145,
    12.3 s/epoch, ETA 7m36s``. Losses use ``%.3g`` because confidence-map losses are ~1e-4,
    which fixed decimals print as 0.000."""
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    parts = [f"{name} {value:.3g}" for name, value in metrics.items() if math.isfinite(value)]
    parts.append(f"{epoch_s:.1f} s/epoch")
    if math.isfinite(eta_s):
        parts.append(f"ETA {format_duration(eta_s)}")
    return f"epoch {epoch}{total}: " + ", ".join(parts)
