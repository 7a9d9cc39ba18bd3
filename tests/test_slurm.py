"""The reduced demo through Snakemake's SLURM executor on a real single-node SLURM cluster.

cluster/local_slurm.sh starts munge, MariaDB + slurmdbd (the plugin polls job states with
sacct, which needs accounting), slurmctld and slurmd in a temporary state directory. Every
rule job then really goes through sbatch, srun and sacct. Needs root (slurmd launches jobs as
their users; the packages are apt-get installed when missing); skips with the reason otherwise.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import reduced_demo_config

from pipeline_lib.workflow_resources import resolve_resources

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cluster/local_slurm.sh"
PARTITION = "local"
pytestmark = pytest.mark.slow

# Requests the one 2-CPU node can grant: one thread each (two jobs side by side), no GPU.
# predict_video's run time scales with the video, so its time limit in sacct shows that the
# input-dependent value was computed before submission.
PREDICT_RUNTIME = {"runtime": 10, "runtime_per_gb": 100_000}


def _free_port_block(n: int = 4) -> int:
    """A port p with p..p+n-1 free on 127.0.0.1 (slurmctld, slurmd, slurmdbd, mariadbd)."""
    for base in range(16817, 30000, 10):
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports for the local SLURM cluster")


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    if sys.platform != "linux":
        pytest.skip("the local SLURM cluster needs Linux")
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root: slurmd launches jobs as their users")
    # Not under pytest's tmp_path: munged wants every folder above its socket to be
    # traversable by all users, and pytest's base folder is private.
    state = Path(tempfile.mkdtemp(prefix="pipeline-slurm-"))
    env = {
        **os.environ,
        "LOCAL_SLURM_DIR": str(state),
        "LOCAL_SLURM_PORT": str(_free_port_block()),
        "LOCAL_SLURM_PARTITION": PARTITION,
    }
    start = subprocess.run(
        [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900
    )
    if start.returncode == 2:  # packages missing and not installable: the script says why
        pytest.skip(f"local SLURM cluster unavailable: {start.stderr.strip().splitlines()[-1]}")
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        env["SLURM_CONF"] = str(state / "etc/slurm.conf")
        # The script's srun wrapper: the jobstep plugin drops SLURM_CONF before its srun.
        env["PATH"] = f"{state / 'bin'}{os.pathsep}{env['PATH']}"
        yield env
    finally:
        stop = subprocess.run(
            [str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=300
        )
        assert stop.returncode == 0, stop.stderr
        shutil.rmtree(state, ignore_errors=True)


def _local_profile(dst: Path) -> None:
    """profiles/slurm pointed at the local partition, without GPU requests (no GPU here)."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = PARTITION
    for resources in profile.get("set-resources", {}).values():
        for key in ("gpu", "gpu_model", "gres"):
            resources.pop(key, None)
        resources["slurm_partition"] = PARTITION
    profile.update(
        {
            "jobs": 4,
            "retries": 0,  # a failing job should fail the test, not be retried
            "latency-wait": 10,
            "slurm-init-seconds-before-status-checks": 2,  # default 40 s per poll
        }
    )
    dst.mkdir(parents=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))


@pytest.fixture(scope="module")
def slurm_run(slurm_env, tmp_path_factory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("wf")
    config = reduced_demo_config(work)
    config["resources"] = {
        rule: {"threads": 1, "mem_mb": 1000, "runtime": 20, "gpu": 0}
        for rule in config["resources"]
    }
    config["resources"]["predict_video"].update(PREDICT_RUNTIME)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _local_profile(work / "profile")

    exe = Path(sys.executable).with_name("snakemake")
    cmd = [
        str(exe),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--profile",
        str(work / "profile"),
        "--workflow-profile",
        "none",
    ]
    run = subprocess.run(cmd, env=slurm_env, capture_output=True, text=True, timeout=1800)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    return work, out


def _planned_rule_jobs(out: str) -> collections.Counter:
    """Rule -> job count from Snakemake's 'Job stats' table, without the local rule 'all'."""
    table = out.split("Job stats:", 1)[1]
    counts = collections.Counter()
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("all", None)
    return counts


def _minutes(limit: str) -> int:
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days) if days else 0) * 1440 + h * 60 + m + (s > 0)


def test_demo_runs_on_slurm_and_every_rule_job_is_in_sacct(slurm_run, slurm_env) -> None:
    work, out = slurm_run
    assert (work / "results/report/summary.md").exists()
    for vid in ("demo_0", "demo_1"):
        assert (work / f"results/tracks/{vid}.tracked.slp").exists()

    planned = _planned_rule_jobs(out)
    assert planned["train_model"] == 2 and planned["predict_video"] == 2
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) == sum(planned.values()), out[-4000:]

    sacct = subprocess.run(
        [
            "sacct",
            "-X",
            "-P",
            "-n",
            "-j",
            ",".join(submitted),
            "--format=JobIdRaw,State,Partition,Timelimit,Comment",
        ],
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sacct.returncode == 0, sacct.stderr
    print(sacct.stdout)  # shown with pytest -s or -rP
    rows = [line.split("|") for line in sacct.stdout.splitlines() if line]
    assert sorted(r[0] for r in rows) == sorted(submitted)
    assert {r[1] for r in rows} == {"COMPLETED"}
    assert {r[2] for r in rows} == {PARTITION}
    rules = collections.Counter(
        r[4].removeprefix("rule_").partition("_wildcards_")[0] for r in rows
    )
    assert rules == planned

    # Time limits as configured; scaled from the input's size for predict_video and
    # track_video (computed when the job became ready, since the inputs did not exist at first).
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    specs = resolve_resources(config["resources"])
    scaled_inputs = {
        "predict_video": "results/demo/videos/{}.mp4",
        "track_video": "results/predictions/{}.predictions.slp",
    }
    for row in rows:
        rule, _, wildcards = row[4].removeprefix("rule_").partition("_wildcards_")
        expected = specs[rule].runtime
        if rule in scaled_inputs:
            size = (work / scaled_inputs[rule].format(wildcards)).stat().st_size
            expected = specs[rule].runtime_for(size)
            assert expected > specs[rule].runtime, rule
        assert _minutes(row[3]) == expected, row

    # Provenance was written by a SLURM job and carries the job id of each training job.
    record = json.loads((work / "results/provenance.json").read_text())
    assert record["slurm_job_id"] in submitted
    trained = {model: env["slurm_job_id"] for model, env in record["training_jobs"].items()}
    assert set(trained) == set(config["models"]) and set(trained.values()) <= set(submitted)
    assert record["job_threads"] == {"train_model": 1, "evaluate_model": 1, "predict_video": 1}


def test_batches_of_videos_are_one_sbatch_each(slurm_env, tmp_path, shared_data) -> None:
    """videos.per_job on SLURM: each batch of videos is one cluster job for prediction and one
    for tracking; the per-video jobs only link the staged results on the submitting host."""
    work = tmp_path / "wf"
    (work / "config").mkdir(parents=True)
    assets = shared_data / "sleap_nn_assets"
    video = assets / "datasets/centered_pair_small.mp4"
    rows = [f"{video},clip_{i},{i * 4}-{i * 4 + 3}" for i in range(3)]
    (work / "videos.csv").write_text("path,id,frames\n" + "\n".join(rows) + "\n")
    config = {
        "demo": {"enabled": False},
        "models": {
            "centroid": {"run_dir": str(assets / "model_ckpts/minimal_instance_centroid")},
            "centered": {"run_dir": str(assets / "model_ckpts/minimal_instance_centered_instance")},
        },
        "predictor": {"models": ["centroid", "centered"]},
        "videos": {"manifest": "videos.csv", "per_job": 2},
        "tracking": {"max_tracks": 2},
        "resources": {
            rule: {"threads": 1, "mem_mb": 1000, "runtime": 20, "gpu": 0}
            for rule in ("predict_batch", "track_batch", "report", "provenance")
        },
    }
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _local_profile(work / "profile")
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "-s", str(ROOT / "Snakefile"), "--directory", str(work)]
    cmd += ["--profile", str(work / "profile"), "--workflow-profile", "none"]
    run = subprocess.run(cmd, env=slurm_env, capture_output=True, text=True, timeout=1800)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    for i in range(3):
        assert (work / f"results/tracks/clip_{i}.tracked.slp").is_file()
    assert "predict_video" not in out and "track_video" not in out
    planned = _planned_rule_jobs(out)
    assert sorted(r for r in planned if "_batch_" in r) == [
        "predict_batch_b0000",
        "predict_batch_b0001",
        "track_batch_b0000",
        "track_batch_b0001",
    ]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    sacct = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-j", ",".join(submitted), "--format=JobIdRaw,Comment"],
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sacct.returncode == 0, sacct.stderr
    rules = sorted(
        line.split("|")[1].removeprefix("rule_").partition("_wildcards_")[0]
        for line in sacct.stdout.splitlines()
        if line
    )
    batches = [r for r in rules if "_batch_" in r]
    assert batches == sorted(r for r in planned if "_batch_" in r), rules  # one sbatch each
