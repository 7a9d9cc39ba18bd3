"""A full disk ends prediction, training and tracking with one line naming the file being
written ("No space left on device while writing FILE"), a non-zero exit and no crash; an
earlier output under the same name stays as it was and no partial file is left behind.

The disks are real where it matters: a test mounts a tmpfs of a few hundred KiB (root only;
skipped with the reason where mounting is not allowed) and unmounts it when done. Only the
checkpoint writer's ENOSPC is injected, as the frame cache fills a small disk first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_trainer_options import tiny_config as tiny_pose_config

from pipeline_lib.cli import main as cli_main
from pipeline_lib.data.split import split_labels
from pipeline_lib.training import trainer_setup

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path("sleap_nn_assets/model_ckpts")
VIDEO = Path("sleap_nn_assets/datasets/centered_pair_small.mp4")
FLIES = Path("dreem_assets/sleap")


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` while inside (skips where mount fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _cli(argv: list[str]) -> subprocess.CompletedProcess:
    """``pipeline-lib ARGV`` in its own process: a crash shows as a signal exit, not a hang."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline_lib.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def _assert_one_line(result: subprocess.CompletedProcess, command: str, path: Path) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert result.returncode != -signal.SIGSEGV
    lines = result.stderr.replace("\r", "\n").splitlines()  # the progress bar uses \r
    expected = f"pipeline-lib {command}: error: No space left on device while writing {path}"
    assert expected in lines, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_prediction_on_a_full_disk(shared_data, tmp_path):
    """The .slp is streamed to a hidden temporary file: when the disk fills, HDF5 must not be
    left with a failed write (closing such a file segfaults), the temporary goes and the
    earlier predictions under the same name stay."""
    models = shared_data / MODELS
    with small_disk(tmp_path / "disk", "128k") as disk:
        out = disk / "pred.slp"
        out.write_bytes(b"earlier predictions")
        result = _cli(
            [
                "predict",
                str(models / "minimal_instance_centroid"),
                str(models / "minimal_instance_centered_instance"),
                "--video",
                str(shared_data / VIDEO),
                "--frames",
                "0-299",
                "--out",
                str(out),
            ]
        )
        _assert_one_line(result, "predict", out)
        assert sorted(p.name for p in disk.iterdir()) == ["pred.slp"]
        assert out.read_bytes() == b"earlier predictions"


def _fly_split(shared_data: Path, folder: Path) -> dict[str, Path]:
    split = {k: folder / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels([shared_data / FLIES / "single_fly.slp"], *split.values(), 0.05, 0.0, None, 0, 1)
    return split


def _train_line(shared_data: Path, tmp_path: Path, run_dir: Path, capsys) -> str:
    """Train the tiny model into ``run_dir``; the file its one disk-full line names."""
    split = _fly_split(shared_data, tmp_path)
    config = tiny_pose_config(shared_data, tmp_path / "run.yaml", max_epochs=1)
    argv = ["train", str(config), "--train", str(split["train"]), "--val", str(split["val"])]
    code = cli_main([*argv, "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 1, err
    prefix = "pipeline-lib train: error: No space left on device while writing "
    named = [line[len(prefix) :] for line in err.splitlines() if line.startswith(prefix)]
    assert len(named) == 1 and "Traceback" not in err, err
    assert not (run_dir / "best.ckpt").exists()
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]
    return named[0]


@pytest.mark.slow
def test_training_on_a_full_disk(shared_data, tmp_path, capsys):
    """A real small disk: the first file that does not fit (the frame cache, here) is named,
    and no part of it is left."""
    with small_disk(tmp_path / "disk", "256k") as disk:
        named = Path(_train_line(shared_data, tmp_path, disk / "run", capsys))
        assert named.is_relative_to(disk / "run") and not named.exists()


@pytest.mark.slow
def test_checkpoint_save_on_a_full_disk(shared_data, tmp_path, monkeypatch, capsys):
    """The checkpoint writer hits ENOSPC: the message names the checkpoint being saved."""

    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(trainer_setup.torch, "save", full)
    run_dir = tmp_path / "run"
    named = _train_line(shared_data, tmp_path, run_dir, capsys)
    assert named.startswith(str(run_dir / "checkpoints")) and named.endswith(".ckpt")
    assert not Path(named).exists()


def test_tracking_on_a_full_disk(shared_data, tmp_path):
    """sleap-io writes the tracked .slp itself (HDF5 again): the message names the file the
    tracker was writing, and the earlier tracked file stays."""
    with small_disk(tmp_path / "disk", "64k") as disk:
        out = disk / "tracked.slp"
        out.write_bytes(b"earlier tracks")
        labels = shared_data / FLIES / "three_flies.slp"
        result = _cli(["track", str(labels), "-o", str(out), "--max-tracks", "3"])
        _assert_one_line(result, "track", out)
        assert sorted(p.name for p in disk.iterdir()) == ["tracked.slp"]
        assert out.read_bytes() == b"earlier tracks"
