"""sleap-nn options this pipeline accepts but does not act on, each said once when switched on.

Why: a user's sleap-nn config must load unchanged, so these keys are accepted; but a key that
silently does nothing would let someone believe, for example, that validation OKS was tracked
during training. Each entry below is an option of the sleap-nn format with no effect here; the
loader calls :func:`warn_ignored` once per config it loads, and a key gets one warning when its
value differs from its default (or, for a section with an on/off switch, when it is switched
on). Keys left at their defaults stay silent. config/README.md lists the same keys.
"""

from __future__ import annotations

import warnings
from typing import Any

#: key path -> (the value that switches it on, relative to the key; why nothing happens here).
#: An empty switch means the key itself: any value but its default (null) is "on".
IGNORED_KEYS: dict[str, tuple[str, str]] = {
    "trainer_config.eval": (
        "enabled",
        "pose metrics of the validation set are not computed during training; each trained "
        "model is scored after training on its validation and test splits instead "
        "(results/models/NAME/metrics.val.json / metrics.test.json)",
    ),
    "data_config.test_file_path": (
        "",
        "no test file is predicted after training; in the workflow the test split comes from "
        "datasets.NAME.test_labels / test_fraction",
    ),
    "trainer_config.lr_scheduler.cosine_annealing_warmup": (
        "",
        "this scheduler is not implemented; the learning rate stays constant (use step_lr or "
        "reduce_lr_on_plateau)",
    ),
    "trainer_config.lr_scheduler.linear_warmup_linear_decay": (
        "",
        "this scheduler is not implemented; the learning rate stays constant (use step_lr or "
        "reduce_lr_on_plateau)",
    ),
}


class IgnoredOptionWarning(UserWarning):
    """A config key that is accepted for compatibility with sleap-nn but has no effect here."""


def _lookup(cfg: Any, path: str) -> Any:
    for name in path.split("."):
        if cfg is None:
            return None
        cfg = getattr(cfg, name)
    return cfg


def ignored_keys_in_use(cfg: Any) -> list[str]:
    """The keys of :data:`IGNORED_KEYS` that ``cfg`` (a ``TrainingJobConfig``) switches on."""
    used = []
    for key, (switch, _) in IGNORED_KEYS.items():
        value = _lookup(cfg, f"{key}.{switch}" if switch else key)
        if value not in (None, False, "", [], {}):
            used.append(key)
    return used


def warn_ignored(cfg: Any, source: str | None) -> list[str]:
    """One :class:`IgnoredOptionWarning` per key of ``cfg`` that is on but has no effect, naming
    the key and ``source`` (the config file); returns those keys. Warned from one place, so
    loading the same file again in one process (parse-time checks do) repeats nothing."""
    where = f"'{source}'" if source else "the training config"
    used = ignored_keys_in_use(cfg)
    for key in used:
        why = IGNORED_KEYS[key][1]
        warnings.warn(
            f"{where}: {key} is accepted but has no effect in this pipeline: {why}",
            IgnoredOptionWarning,
            stacklevel=1,  # one place: Python shows a repeated load's same warning only once
        )
    return used
