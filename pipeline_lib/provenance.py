"""What produced a run's results: software versions, code revision, configs, seeds, hardware.

Written by the workflow's ``provenance`` rule as ``results/provenance.json`` and shown in the
report, so a result can be traced to the environment that made it and a run can be repeated
exactly: the same package versions, the same commit (and whether it had local edits), the same
config files (by hash) and seeds. Metrics are only bitwise repeatable on the same kind of
hardware and thread count (floating-point sums depend on both), so those are recorded too.

Nothing here needs Snakemake or a git repository: without git (a release tarball, a conda
package) the revision fields say why they are empty.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_lib.config.yaml_io import load_yaml
from pipeline_lib.io.atomic import write_json_atomic

#: Bumped when keys are renamed or removed, so readers can tell old files apart.
PROVENANCE_VERSION = 1

#: Distributions reported besides this project's own dependencies (tools that shape a run but
#: are not imported by pipeline_lib, or are optional).
EXTRA_PACKAGES = (
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "pytorch-lightning",
    "wandb",
    "nvidia-cudnn-cu12",
    "nvidia-cudnn-cu13",
)
PROJECT_DISTRIBUTION = "pipeline-lib"

#: Top-level keys of the provenance record (tests check them; the report shows them).
KEYS = (
    "provenance_version",
    "created_utc",
    "project",
    "packages",
    "python",
    "platform",
    "hardware",
    "torch",
    "config_files",
    "config_sha256",
    "seeds",
    "job_threads",
    "training_jobs",
)

#: Written by each training job into its run directory (:func:`write_job_environment`).
JOB_ENVIRONMENT_FILE = "environment.json"


def collect_provenance(
    project_root: str | os.PathLike,
    config: Mapping[str, Any],
    config_files: Mapping[str, str | os.PathLike],
    seeds: Mapping[str, Any],
    job_threads: Mapping[str, Any] | None = None,
    model_dirs: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """The provenance record of a run.

    Args:
        project_root: the project folder (its git revision is recorded).
        config: the pipeline config as the workflow used it (after defaults were filled in);
            its hash identifies a run's settings even when they came from several files or the
            command line.
        config_files: label -> path of every config file the run read (pipeline config, model
            configs, tracker config, video manifest); each is recorded with its SHA-256.
        seeds: label -> seed actually used (pipeline, demo, per model, tracker).
        job_threads: threads the workflow gives the jobs that compute results (training,
            evaluation, prediction). ``torch.num_threads`` below is only this process's, and
            results depend on the thread count of the job that computed them.
        model_dirs: model name -> its run directory. The environment each training job
            recorded there (:func:`write_job_environment`) is copied under ``training_jobs``:
            on a cluster the trained weights come from a node this job may never see.
    """
    return {
        "provenance_version": PROVENANCE_VERSION,
        "project": project_info(project_root),
        "packages": package_versions(),
        **job_environment(),
        "config_files": {label: file_record(path) for label, path in config_files.items()},
        "config_sha256": _sha256_bytes(_canonical_json(config)),
        "seeds": dict(seeds),
        "job_threads": dict(job_threads or {}),
        "training_jobs": {
            model: read_job_environment(run_dir) for model, run_dir in (model_dirs or {}).items()
        },
    }


def job_environment() -> dict[str, Any]:
    """Where this process runs: time, Python, OS and node, hardware, torch settings, and the
    scheduler's job id and GPU choice when there are any."""
    return {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "node": platform.node(),
        },
        "hardware": hardware_info(),
        "torch": torch_info(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def write_job_environment(run_dir: str | os.PathLike) -> None:
    """Record :func:`job_environment` in ``run_dir`` (atomically), for the run's provenance."""
    write_json_atomic(Path(run_dir) / JOB_ENVIRONMENT_FILE, job_environment())


def read_job_environment(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The environment a training job recorded in ``run_dir``; None for run directories made
    before jobs recorded it (or by other tools, e.g. sleap-nn)."""
    path = Path(run_dir) / JOB_ENVIRONMENT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def write_provenance(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write ``record`` as JSON atomically (a killed job leaves no half-written file)."""
    missing = [k for k in KEYS if k not in record]
    if missing:
        raise ValueError(f"Provenance record for {path} lacks the keys {missing}")
    write_json_atomic(path, dict(record))


def model_seeds(
    model_configs: Mapping[str, str | os.PathLike], default_seed: int | None
) -> dict[str, int | None]:
    """``"model:NAME"`` -> the seed training uses: the model config's ``trainer_config.seed``,
    else the pipeline's ``seed`` (the rule passes it when the config leaves it null)."""
    seeds: dict[str, int | None] = {}
    for model, path in model_configs.items():
        data = load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a sleap-nn training config mapping")
        seed = (data.get("trainer_config") or {}).get("seed")
        seeds[f"model:{model}"] = seed if seed is not None else default_seed
    return seeds


# ---------------------------------------------------------------------------------- pieces


def project_info(project_root: str | os.PathLike) -> dict[str, Any]:
    """This project's version, and its git commit, branch and dirtiness where git can tell."""
    from pipeline_lib import __version__

    return {"name": PROJECT_DISTRIBUTION, "version": __version__, **git_info(project_root)}


def git_info(root: str | os.PathLike) -> dict[str, Any]:
    """``commit``, ``branch`` and ``dirty`` (uncommitted changes to tracked files) of the
    repository at ``root``; all None with ``git_error`` saying why when that is not possible
    (no git executable, not a repository)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no")
    except FileNotFoundError:
        return _no_git("git is not installed")
    except subprocess.CalledProcessError as exc:  # e.g. "not a git repository"
        lines = (exc.stderr or "").strip().splitlines()
        return _no_git(lines[-1] if lines else f"git exited with {exc.returncode}")
    except subprocess.TimeoutExpired:
        return _no_git("git did not answer within 30 s")
    return {
        "git_commit": commit,
        "git_branch": branch,
        "git_dirty": bool(changes),
        "git_changed_files": len(changes.splitlines()),
    }


def _no_git(reason: str) -> dict[str, Any]:
    return {
        "git_commit": None,
        "git_branch": None,
        "git_dirty": None,
        "git_changed_files": None,
        "git_error": reason,
    }


def package_versions() -> dict[str, str | None]:
    """Installed version of this project's dependencies and :data:`EXTRA_PACKAGES` (None when
    a distribution is not installed), by distribution name, sorted."""
    names = set(EXTRA_PACKAGES) | {PROJECT_DISTRIBUTION}
    try:
        requirements = importlib.metadata.requires(PROJECT_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    for req in requirements:
        if "extra ==" in req:
            continue
        names.add(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0])
    versions: dict[str, str | None] = {}
    for name in sorted(names, key=str.lower):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware_info() -> dict[str, Any]:
    """CPU model, cores (all, and those this process may use), RAM and GPUs."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": usable,
        "ram_bytes": _ram_bytes(),
        "gpus": _gpus(),
    }


def torch_info() -> dict[str, Any]:
    """Torch build and the settings that change floating-point results: threads, CUDA/cuDNN
    versions, deterministic algorithms, cuDNN benchmark mode."""
    import torch

    cudnn = torch.backends.cudnn
    return {
        "version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": bool(cudnn.benchmark),
    }


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "sha256"}`` of a file; a missing file is an error naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Config file recorded in the provenance does not exist: {p}")
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"path": os.fspath(path), "sha256": digest.hexdigest()}


def model_record(run_dir: str | os.PathLike, config_name: str) -> dict[str, Any]:
    """A model folder as outputs record it: its absolute path (a relative one would not
    resolve from elsewhere once the file is shared) and the sha256 of its config file
    ``config_name`` (None when the folder has none), so two runs can tell whether they used
    the same training settings."""
    path = Path(run_dir).resolve()
    config = path / config_name
    sha = file_record(config)["sha256"] if config.is_file() else None
    return {"path": str(path), "config": config_name, "config_sha256": sha}


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "cpu model"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _ram_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[dict[str, Any]]:
    """Visible CUDA devices (respecting CUDA_VISIBLE_DEVICES); empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append(
            {
                "index": i,
                "name": props.name,
                "memory_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return gpus


def _canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
