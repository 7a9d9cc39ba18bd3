"""What each rule asks the machine or the cluster for: threads, memory, run time and GPUs.

The same numbers serve a local run (threads; the GPU counter of profiles/default) and a SLURM
cluster, where they become the job's ``--cpus-per-task``, ``--mem``, ``-t`` and ``--gpus``:
too small and the cluster kills the job, too large and it queues for hours. So they are
configuration (``resources`` in config/config.yaml), not constants in the rules. The defaults
live here, in one place; config/config.yaml spells the same values out for users to edit, and
a test keeps the two equal.

Prediction and tracking take time in proportion to the video (frames x pixels), and 1000 videos
can differ by orders of magnitude, so those two rules add minutes (and, for tracking, memory)
per GB of their main input. The size is one ``stat()`` per job, taken when the job is ready:
opening each video to read its frame count and size costs 2-90 ms per file with OpenCV
(measured on the shared test videos), seconds to minutes for a 1000-video project. Only a
video with a manifest frame range is opened, to scale its size by the share of frames
selected. File size is a coarse proxy: real videos measured 0.002-0.013 bytes per
pixel-frame, so the per-GB rates below are set from the compressed end and err on the long
side. Prediction memory does not grow with the video (predictions are streamed to disk,
bench/RESULTS.md), so only tracking, which holds every predicted instance in memory, scales
its memory.

Nothing here imports Snakemake: common.smk turns a :class:`RuleResources` into the rule's
``threads`` and ``resources`` (plain numbers, or functions of the job's input where a value
scales).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from pipeline_lib.workflow_support import WorkflowConfigError

GB = 1024**3

#: The input (by its name in the rule) whose size a scaling rule's requests follow:
#: prediction reads the video; tracking reads the predictions (about frames x animals).
#: A batch of videos (``videos.per_job``) scales with all its videos together.
SCALE_INPUT = {
    "predict_video": "video",
    "predict_batch": "videos",
    "track_video": "predictions",
    "track_batch": "predictions",
}

_GPU_MODEL_RE = re.compile(r"^[A-Za-z0-9_.]+$")  # what the SLURM plugin accepts in --gpus=MODEL:N


@dataclass(frozen=True)
class RuleResources:
    """One rule's requests. ``runtime`` is in minutes, memory in MB (Snakemake's units)."""

    threads: int
    mem_mb: int
    runtime: int
    gpu: int = 0
    gpu_model: str | None = None
    mem_mb_per_gb: float = 0.0
    runtime_per_gb: float = 0.0

    def mem_mb_for(self, input_bytes: int) -> int:
        """Memory for a job whose scaling input has ``input_bytes`` bytes."""
        return math.ceil(self.mem_mb + self.mem_mb_per_gb * input_bytes / GB)

    def runtime_for(self, input_bytes: int) -> int:
        """Minutes for a job whose scaling input has ``input_bytes`` bytes."""
        return math.ceil(self.runtime + self.runtime_per_gb * input_bytes / GB)


#: Defaults. train_model's memory and time are what clusters running the demo-sized models
#: needed with headroom (the former SLURM profile values); the GPU rules ask for one card.
DEFAULTS: dict[str, RuleResources] = {
    "make_demo": RuleResources(threads=1, mem_mb=2000, runtime=30),
    "split_labels": RuleResources(threads=1, mem_mb=4000, runtime=30),
    "cache_images": RuleResources(threads=4, mem_mb=8000, runtime=120),
    "train_model": RuleResources(threads=8, mem_mb=32000, runtime=1440, gpu=1),
    "evaluate_model": RuleResources(threads=4, mem_mb=8000, runtime=60, gpu=1),
    "predict_video": RuleResources(threads=4, mem_mb=8000, runtime=60, gpu=1, runtime_per_gb=120),
    "predict_batch": RuleResources(threads=4, mem_mb=8000, runtime=60, gpu=1, runtime_per_gb=120),
    # The small tracking transformer trains fastest on one CPU thread (bench/RESULTS.md).
    "train_tracker": RuleResources(threads=1, mem_mb=8000, runtime=240, gpu=1),
    "track_video": RuleResources(
        threads=1, mem_mb=4000, runtime=30, mem_mb_per_gb=8000, runtime_per_gb=120
    ),
    "track_batch": RuleResources(
        threads=1, mem_mb=4000, runtime=30, mem_mb_per_gb=8000, runtime_per_gb=120
    ),
    "evaluate_tracking": RuleResources(threads=1, mem_mb=4000, runtime=30),
    "report": RuleResources(threads=1, mem_mb=4000, runtime=30),
    "render_clip": RuleResources(threads=1, mem_mb=4000, runtime=60),
    "provenance": RuleResources(threads=1, mem_mb=2000, runtime=10),
}

_KEYS = tuple(f.name for f in fields(RuleResources))
_SCALING_KEYS = ("mem_mb_per_gb", "runtime_per_gb")


def _check_value(key: str, value: Any, where: str) -> Any:
    if key == "gpu_model":
        if value is None or (isinstance(value, str) and _GPU_MODEL_RE.match(value)):
            return value
        raise WorkflowConfigError(
            f"{where}: expected a GPU model name of letters, digits, '_' or '.' "
            f"(e.g. a100), got {value!r}"
        )
    if key in _SCALING_KEYS:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        raise WorkflowConfigError(f"{where}: expected a number >= 0, got {value!r}")
    minimum = 0 if key == "gpu" else 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    raise WorkflowConfigError(f"{where}: expected a whole number >= {minimum}, got {value!r}")


def resolve_resources(
    section: Mapping[str, Any] | None, key: str = "resources"
) -> dict[str, RuleResources]:
    """Every rule's requests: :data:`DEFAULTS` with the config's per-rule, per-key overrides.

    Raises :class:`WorkflowConfigError` naming ``resources.<rule>.<key>`` for an unknown rule
    or key, a value of the wrong kind, or a per-GB rate on a rule that does not scale.
    """
    section = section or {}
    if not isinstance(section, Mapping):
        raise WorkflowConfigError(f"config key {key}: expected a mapping of rule names")
    resolved = dict(DEFAULTS)
    for rule, overrides in section.items():
        where = f"config key {key}.{rule}"
        if rule not in DEFAULTS:
            raise WorkflowConfigError(
                f"{where}: unknown rule; rules with resources: {', '.join(sorted(DEFAULTS))}"
            )
        if not isinstance(overrides, Mapping):
            raise WorkflowConfigError(f"{where}: expected a mapping such as {{mem_mb: 8000}}")
        checked = {}
        for name, value in overrides.items():
            if name not in _KEYS:
                raise WorkflowConfigError(f"{where}.{name}: unknown key; known: {', '.join(_KEYS)}")
            if name in _SCALING_KEYS and rule not in SCALE_INPUT and value:
                raise WorkflowConfigError(
                    f"{where}.{name}: only {', '.join(list(SCALE_INPUT)[:-1])} and "
                    f"{list(SCALE_INPUT)[-1]} scale with their input"
                )
            checked[name] = _check_value(name, value, f"{where}.{name}")
        resolved[rule] = replace(DEFAULTS[rule], **checked)
    return resolved


def input_bytes(path: str) -> int:
    """Size of one input file.

    A file that does not exist yet (made by an upstream job) raises FileNotFoundError naming
    it; Snakemake then leaves the value undecided until the job is ready to run.
    """
    return os.path.getsize(path)


def selected_share(selection: str | None, video_path: str | os.PathLike) -> float:
    """The share of a video's frames that a frame selection (``"0-999"``) covers.

    1.0 without a selection, and also when the video cannot be opened or the selection does not
    fit it: the job then fails and says why itself, and a resource function must not fail
    first with a less helpful message. Opening the video costs 2-90 ms, so this is only done
    for videos with a selection, when their job is ready to run (not while the DAG is built).
    """
    if not selection:
        return 1.0
    from pipeline_lib.inference.frames import parse_frame_selection
    from pipeline_lib.io.video import open_video

    try:
        n_frames = int(open_video(video_path).shape[0])
        return len(parse_frame_selection(selection, n_frames)) / n_frames
    except (ValueError, TypeError):  # VideoError is a ValueError
        return 1.0


#: ``share(wildcards, input)``: the part of the scaling input a job really processes.
InputShare = Callable[[Any, Any], float]


def _scaled(
    per_size: Callable[[int], int], input_name: str, share: InputShare | None
) -> Callable[..., int]:
    def value(wildcards: Any, input: Any) -> int:  # Snakemake passes `input` by name
        files = getattr(input, input_name)
        files = [files] if isinstance(files, str | os.PathLike) else files
        size = sum(input_bytes(str(f)) for f in files)
        if share is not None:
            size = math.ceil(size * share(wildcards, input))
        return per_size(size)

    return value


def snakemake_resources(
    spec: RuleResources, scale_input: str | None = None, input_share: InputShare | None = None
) -> dict[str, Any]:
    """Keyword arguments for a rule's ``resources:`` directive.

    ``gpu`` is the resource the SLURM executor plugin submits as ``--gpus=N`` (with
    ``gpu_model``: ``--gpus=MODEL:N``) and profiles/default counts locally. Memory and run time
    are functions of the job's input when ``scale_input`` names the input they follow and the
    rule has a per-GB rate; ``input_share`` scales that size down to the part a job processes
    (prediction of a frame range: :func:`selected_share`).
    """
    resources: dict[str, Any] = {"mem_mb": spec.mem_mb, "runtime": spec.runtime, "gpu": spec.gpu}
    if spec.gpu_model:
        resources["gpu_model"] = spec.gpu_model
    if scale_input is not None:
        if spec.mem_mb_per_gb:
            resources["mem_mb"] = _scaled(spec.mem_mb_for, scale_input, input_share)
        if spec.runtime_per_gb:
            resources["runtime"] = _scaled(spec.runtime_for, scale_input, input_share)
    return resources
