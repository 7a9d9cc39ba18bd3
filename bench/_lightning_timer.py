"""Run a training entry point with a Lightning callback that timestamps every training batch.

Used by bench/train_throughput.py to time our trainer and sleap-nn's the same way, from outside
either: the wrapper patches ``lightning.pytorch.Trainer.__init__`` to append one callback, then
calls the tool's own command-line entry point. It imports only the standard library and
Lightning, so it runs unchanged in our venv and in the peer's.

    BENCH_T0=<epoch seconds at launch> BENCH_TIMING_OUT=timing.json \
        python _lightning_timer.py <module>:<function> [argv...]
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import lightning.pytorch as pl


class _BatchTimer(pl.Callback):
    """Wall-clock time of every training batch and validation loop, written at exit."""

    def __init__(self) -> None:
        self.events: dict[str, list[float]] = {
            "batch_start": [],
            "batch_end": [],
            "val_start": [],
            "val_end": [],
        }
        self.batch_sizes: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.events["batch_start"].append(time.time())
        self.batch_sizes.append(_batch_size(batch))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.events["batch_end"].append(time.time())

    def on_validation_start(self, trainer, pl_module) -> None:
        self.events["val_start"].append(time.time())

    def on_validation_end(self, trainer, pl_module) -> None:
        self.events["val_end"].append(time.time())

    def dump(self, path: str) -> None:
        with open(path, "w") as fh:
            json.dump({**self.events, "batch_sizes": self.batch_sizes}, fh)


def _batch_size(batch) -> int:
    """Leading dimension of the first tensor found in a batch (dict, list or tensor)."""
    if hasattr(batch, "shape"):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, dict) else batch
    for value in values:
        size = _batch_size(value)
        if size:
            return size
    return 0


def main() -> None:
    entry, argv = sys.argv[1], sys.argv[2:]
    timer = _BatchTimer()
    original_init = pl.Trainer.__init__

    def init_with_timer(self, *args, **kwargs):
        kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), timer]
        original_init(self, *args, **kwargs)

    pl.Trainer.__init__ = init_with_timer
    module_name, func_name = entry.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    sys.argv = [module_name, *argv]
    code = 0
    try:
        result = func()
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        timer.dump(os.environ["BENCH_TIMING_OUT"])
    sys.exit(code)


if __name__ == "__main__":
    main()
