"""Reading checkpoint files without ever running code from them.

A ``.ckpt`` is a pickle, and unpickling may call any function the file names: a crafted
checkpoint could delete files or start programs the moment it is opened. Every checkpoint this
pipeline reads (run directories for prediction and evaluation, sleap-nn run directories,
``pretrained_backbone_weights`` / ``pretrained_head_weights``, resume checkpoints before
Lightning opens them, the tracking transformer) therefore goes through :func:`load_checkpoint`:
torch's ``weights_only`` unpickler, which builds only tensors, containers, numbers and strings.

One extension, because sleap-nn's own checkpoints need it: their Lightning hyper-parameters are
sleap-nn config classes wrapped in OmegaConf containers (plus the ``typing`` names those refer
to). Those names, and only those, are rebuilt as inert :class:`_StandIn` objects, never as the
real classes, so their data is dropped and no code of theirs runs; the tensors are untouched.
Any other name in a checkpoint is refused before unpickling starts, with an error naming the
file and the name. Our own checkpoints contain no such objects (nothing but tensors and plain
values), which :func:`check_resumable` demands of a checkpoint Lightning is about to open.
"""

from __future__ import annotations

import collections
import pickle
import re
from pathlib import Path
from typing import Any

import torch

#: Modules whose classes appear in the hyper-parameters of sleap-nn's checkpoints.
STAND_IN_MODULES = ("omegaconf.", "sleap_nn.config.")
#: Further names those hyper-parameters use (type annotations of the config fields).
STAND_IN_NAMES = frozenset(
    {
        "typing.Any",
        "typing.Dict",
        "typing.List",
        "typing.Tuple",
        "typing.Optional",
        "typing.Union",
        "_operator.getitem",
        "operator.getitem",
    }
)
#: Plain types those hyper-parameters name as values (field types); built as themselves.
PLAIN_TYPES: dict[str, type] = {
    **{f"builtins.{t.__name__}": t for t in (bool, int, float, str, list, dict, tuple, set)},
    "collections.defaultdict": collections.defaultdict,
}


class CheckpointRefused(ValueError):
    """A checkpoint that could run code when unpickled, or that is not a checkpoint at all."""


class _StandIn:
    """Takes the place of a sleap-nn / OmegaConf object: accepts anything, keeps nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __new__(cls, *args: Any, **kwargs: Any) -> _StandIn:
        return super().__new__(cls)

    def __setstate__(self, state: Any) -> None:
        pass


def _is_stand_in(name: str) -> bool:
    return name in STAND_IN_NAMES or name.startswith(STAND_IN_MODULES)


def _allowed(name: str) -> tuple[Any, str]:
    """What the unpickler builds for an allowed name beyond torch's defaults."""
    return (PLAIN_TYPES[name] if name in PLAIN_TYPES else _StandIn), name


def _unsafe_names(path: Path) -> list[str]:
    """Names in the checkpoint that torch's weights-only unpickler does not build by default
    (read statically from the pickle, nothing is run). Legacy non-zip files cannot be scanned;
    for them the weights-only load alone decides."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except ValueError:
        return []
    except Exception as exc:  # a truncated or foreign file: zip or pickle errors of many types
        raise CheckpointRefused(f"{path} is not a readable checkpoint: {exc}") from None


def _refusal(path: Path, names: list[str], plain_only: bool) -> CheckpointRefused:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if plain_only:
        why = (
            "holds objects other than tensors and plain values, which Lightning would unpickle "
            "to resume; only checkpoints written by this pipeline can be resumed (a sleap-nn "
            "checkpoint can start a model through pretrained_backbone_weights / "
            "pretrained_head_weights instead)"
        )
    else:
        why = (
            "names what is not a tensor, a plain value or a known hyper-parameter type, and "
            "unpickling it could run code; only checkpoints written by this pipeline, sleap-nn "
            "or Lightning are read"
        )
    return CheckpointRefused(f"{path}: refused to load this checkpoint ({shown}): it {why}")


def load_checkpoint(path: str | Path, allow_foreign_hyperparameters: bool = True) -> Any:
    """The contents of the checkpoint at ``path``, on the CPU, without running code from it.

    Args:
        path: a ``torch.save`` file (Lightning ``.ckpt``, ``.pth``).
        allow_foreign_hyperparameters: accept sleap-nn's OmegaConf hyper-parameters (as inert
            stand-ins). False for checkpoints Lightning will restore, which must be plain.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointRefused: the file names anything beyond tensors, plain values and (when
            allowed) sleap-nn's hyper-parameter types, or is not a checkpoint; the message
            names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    names = _unsafe_names(path)
    foreign = [n for n in names if _is_stand_in(n) or n in PLAIN_TYPES]
    refused = [n for n in names if not (allow_foreign_hyperparameters and n in foreign)]
    if refused:
        raise _refusal(path, refused, not allow_foreign_hyperparameters)
    try:
        with torch.serialization.safe_globals([_allowed(n) for n in foreign]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointRefused(
            f"{path}: refused to load this checkpoint: it is not a checkpoint of tensors and "
            f"plain values, and unpickling it could run code ({_unpickler_reason(exc)})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointRefused(f"{path} is not a readable checkpoint: {exc}") from None


def _unpickler_reason(exc: Exception) -> str:
    """The one informative line of torch's weights-only error (the rest suggests loading
    without the restriction, which is exactly what must not happen)."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    return found.group(1).strip() if found else text.splitlines()[0] if text else type(exc).__name__


def check_resumable(path: str | Path) -> None:
    """Refuse a checkpoint before Lightning restores training from it: Lightning unpickles the
    whole file, so it must hold nothing but tensors and plain values (as ours do)."""
    try:
        load_checkpoint(path, allow_foreign_hyperparameters=False)
    except CheckpointRefused as exc:
        raise CheckpointRefused(f"Cannot resume training: {exc}") from None
