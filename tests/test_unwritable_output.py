"""An output folder that cannot be written is reported in one line naming it, with the reason:
by the workflow when it is parsed (so even ``snakemake -n`` says so, before any job has run),
and by the command line. As root, permission bits do not stop a write, so the folders here
are made unwritable the ways that stop root too: a file where a folder should be, and a
read-only mount."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT

from pipeline_lib.workflow_support import WorkflowConfigError, check_output_folders

LABELS = Path("dreem_assets/sleap/single_fly.slp")


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only onto itself while inside (skips where not allowed)."""
    steps = (
        ["mount", "--bind", str(folder), str(folder)],
        ["mount", "-o", "remount,ro,bind", str(folder)],
    )
    for i, step in enumerate(steps):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            if i:
                subprocess.run(["umount", str(folder)], check=False)
            pytest.skip(f"cannot make a read-only mount here (needs root): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _workdir(tmp_path: Path) -> Path:
    """A Snakemake working directory with the shipped config (its demo needs no input files)."""
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    shutil.copyfile(ROOT / "config/config.yaml", work / "config/config.yaml")
    return work


def _dry_run(work: Path) -> tuple[int, str]:
    exe = Path(sys.executable).with_name("snakemake")
    argv = [str(exe), "-n", "--cores", "1", "-s", str(ROOT / "Snakefile")]
    run = subprocess.run(
        [*argv, "--directory", str(work), "--workflow-profile", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run.returncode, run.stdout + run.stderr


def test_results_folder_that_is_a_file(tmp_path):
    work = _workdir(tmp_path)
    (work / "results").write_text("")
    with pytest.raises(WorkflowConfigError) as info:
        check_output_folders(base_dir=work)
    assert str(info.value) == f"Cannot create the output folder {work / 'results'}: it is a file"

    code, out = _dry_run(work)
    assert code != 0
    assert f"Cannot create the output folder {work / 'results'}: it is a file" in out.splitlines()
    assert "Traceback" not in out


def test_results_folder_on_a_read_only_mount(tmp_path):
    """The folder does not exist yet: the folder it would be made in is tried instead, and
    the dry run leaves nothing behind."""
    work = _workdir(tmp_path)
    check_output_folders(base_dir=work)
    assert sorted(p.name for p in work.iterdir()) == ["config"]  # nothing made
    with read_only(work):
        code, out = _dry_run(work)
    line = f"Output folder is not writable: {work / 'results'} (in {work}): Read-only file system"
    assert code != 0
    assert line in out.splitlines(), out
    assert "Traceback" not in out


def test_command_line_output_on_a_read_only_mount(shared_data, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    argv = [sys.executable, "-m", "pipeline_lib.cli", "split", str(shared_data / LABELS)]
    with read_only(folder):
        run = subprocess.run(
            [*argv, "--out-dir", str(folder / "splits")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"pipeline-lib split: error: Cannot create the output folder {folder / 'splits'} for "
        "train.slp: Read-only file system"
    ]
