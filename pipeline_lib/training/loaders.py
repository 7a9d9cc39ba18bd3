"""DataLoaders of a training run: a fixed number of steps per epoch, reproducible order.

sleap-nn's ``train_steps_per_epoch`` / ``min_train_steps_per_epoch`` set how many batches an
epoch has, independent of the dataset size (small projects would otherwise have epochs of two
steps). The sampler below draws exactly ``steps × batch_size`` indices per epoch, cycling through
the data, in an order that depends only on the seed and the epoch number, so a resumed run sees
the same batches as an uninterrupted one.

It is deliberately not a ``RandomSampler``: Lightning replaces those with its own
``DistributedSampler`` over the whole dataset under DDP, which would ignore the step budget. A
custom sampler is instead wrapped and split between the processes, so ``N`` devices take
``steps / N`` steps each, as the config guide says.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler


class StepBudgetSampler(Sampler[int]):
    """``n_samples`` indices per epoch: seeded permutations of the data, one after another
    (``shuffle``), or the data in order, repeated."""

    def __init__(self, n_items: int, n_samples: int, shuffle: bool, seed: int) -> None:
        if n_items < 1:
            raise ValueError("The training dataset is empty")
        self.n_items = int(n_items)
        self.n_samples = int(n_samples)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_samples

    def __iter__(self) -> Iterator[int]:
        rounds = math.ceil(self.n_samples / self.n_items)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = np.concatenate([rng.permutation(self.n_items) for _ in range(rounds)])
        else:
            order = np.tile(np.arange(self.n_items), rounds)
        return iter(order[: self.n_samples].tolist())


def steps_per_epoch(n_items: int, batch_size: int, tc: dict) -> int:
    """``train_steps_per_epoch``, else the batches in the data or ``min_train_steps_per_epoch``,
    whichever is larger (the guide's rule)."""
    steps = tc.get("train_steps_per_epoch")
    if steps is None:
        steps = max(math.ceil(n_items / batch_size), int(tc.get("min_train_steps_per_epoch") or 1))
    return int(steps)


def make_loader(
    ds: Dataset, loader_cfg: dict, tc: dict, seed: int | None, train: bool
) -> DataLoader:
    """DataLoader from a ``*_data_loader`` section (batch_size, shuffle, num_workers).

    Validation goes through the data once, in order. ``seed`` None draws a random seed, so
    unseeded runs still differ from each other.
    """
    batch_size = int(loader_cfg["batch_size"])
    workers = int(loader_cfg.get("num_workers") or 0)
    common = {"batch_size": batch_size, "num_workers": workers, "persistent_workers": workers > 0}
    if not train:
        return DataLoader(ds, shuffle=False, **common)
    n_samples = steps_per_epoch(len(ds), batch_size, tc) * batch_size
    sampler = StepBudgetSampler(
        len(ds),
        n_samples,
        shuffle=bool(loader_cfg.get("shuffle", True)),
        seed=int(seed) if seed is not None else random.SystemRandom().randrange(2**31),
    )
    return DataLoader(ds, sampler=sampler, drop_last=False, **common)
