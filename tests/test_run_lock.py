"""One training per run directory: a second training into a folder another process is training
into fails at once, naming the folder and the holder, and writes nothing; a killed holder
releases the folder by itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib.cli import main
from pipeline_lib.tracking.gtr.training import train_tracker
from pipeline_lib.training.run_lock import LOCK_FILE, RunDirLocked, run_dir_lock
from pipeline_lib.training.train import train_model

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "sleap_nn_assets/sample_configs/config_centroid_unet.yaml"
LABELS = "dreem_assets/sleap/two_flies.slp"

HOLDER = """
import sys
from pipeline_lib.training.run_lock import run_dir_lock
with run_dir_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)
"""


def _hold(run_dir: Path) -> subprocess.Popen:
    """Another process that holds ``run_dir``'s lock until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A run directory whose lock another process holds: (run_dir, that process). The tests
    that use it leave it as it was."""
    run_dir = tmp_path_factory.mktemp("held") / "run"
    proc = _hold(run_dir)
    yield run_dir, proc
    proc.kill()
    proc.wait()


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_names_holder(message: str, run_dir: Path, pid: int) -> None:
    assert f"Run directory {run_dir} is in use by another training" in message
    assert f"pid {pid} on host {socket.gethostname()}" in message


def test_second_pose_training_fails_at_once_and_writes_nothing(shared_data, held):
    run_dir, holder = held
    before = _contents(run_dir)
    labels = shared_data / LABELS
    with pytest.raises(RunDirLocked) as err:
        train_model(shared_data / CONFIG, labels, labels, None, run_dir)
    _assert_names_holder(str(err.value), run_dir, holder.pid)
    assert _contents(run_dir) == before

    # The command line says the same in one line and exits non-zero.
    argv = ["train", str(shared_data / CONFIG), "--train", str(labels), "--val", str(labels)]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline_lib.cli", *argv, "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    # One line for the failure; the sample config's ignored-option warning is one line too.
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if "py.warnings" not in line] == [lines[-1]], result.stderr
    assert all("Warning: " in line for line in lines[:-1]), result.stderr
    _assert_names_holder(result.stderr, run_dir, holder.pid)
    assert _contents(run_dir) == before


def test_second_tracker_training_fails_at_once(held):
    run_dir, holder = held
    before = _contents(run_dir)
    with pytest.raises(RunDirLocked) as err:
        train_tracker({"dataset": {"train_dataset": {"slp_files": ["missing.slp"]}}}, run_dir)
    _assert_names_holder(str(err.value), run_dir, holder.pid)
    assert _contents(run_dir) == before
    assert main(["train-tracker", "missing.yaml", "--run-dir", str(run_dir)]) == 1


def test_killed_holder_releases_the_folder(tmp_path):
    run_dir = tmp_path / "run"
    holder = _hold(run_dir)
    with pytest.raises(RunDirLocked):
        with run_dir_lock(run_dir):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with run_dir_lock(run_dir) as path:  # no stale lock: the OS released it with the process
        assert path.name == LOCK_FILE
        assert path.read_text() == f"pid {os.getpid()} on host {socket.gethostname()}\n"
    with run_dir_lock(run_dir):  # released again on leaving
        pass
