"""How long Snakemake takes to plan the workflow for many videos, and to find nothing to do.

Two measurements, each the wall time of a whole ``snakemake`` command (Python start-up, parsing
the Snakefile and config, building the DAG, checking files), median of ``--repeats`` runs:

* **DAG construction**: ``snakemake -n`` (dry run) in a fresh folder whose config lists N empty
  placeholder videos (``vid_0000.mp4`` ...) next to the demo, for each N of ``--counts``. Nothing
  has run there, so the plan holds every job: demo data, splits, caches, training, evaluation,
  and one prediction and one tracking job per video.
* **No-op rerun**: ``snakemake --cores all`` in ``--finished-dir`` (default: this repository),
  which must hold a finished run (``make demo``); it should find nothing to do.

    .venv/bin/python bench/dag_scale.py --counts 10 100 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{run.stderr[-3000:]}")
    return seconds, run.stdout + run.stderr


def placeholder_workdir(root: Path, n_videos: int) -> Path:
    """A folder with the project's configs and ``n_videos`` empty .mp4 files listed in it."""
    work = root / f"videos_{n_videos}"
    shutil.copytree(ROOT / "config", work / "config")
    videos = work / "videos"
    videos.mkdir(parents=True)
    for i in range(n_videos):
        (videos / f"vid_{i:04d}.mp4").touch()
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    config["videos"]["globs"] = ["videos"]
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


def count_jobs(dry_run_output: str) -> int:
    """The total of the dry run's job table."""
    match = re.search(r"^total\s+(\d+)", dry_run_output, flags=re.MULTILINE)
    return int(match.group(1)) if match else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--finished-dir", type=Path, default=ROOT)
    ap.add_argument("--skip-noop", action="store_true", help="only time DAG construction")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="dag_scale_") as tmp:
        for n in args.counts:
            work = placeholder_workdir(Path(tmp), n)
            cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-n", "--cores", "1"]
            cmd += ["--workflow-profile", "none"]
            times, jobs = [], -1
            for _ in range(args.repeats):
                seconds, out = timed(cmd, work)
                times.append(seconds)
                jobs = count_jobs(out)
            row = {"case": f"DAG, {n} videos", "jobs": jobs, "median_s": statistics.median(times)}
            row["runs_s"] = [round(t, 2) for t in times]
            rows.append(row)
            print(json.dumps(row), flush=True)

    if not args.skip_noop:
        cmd = [str(SNAKEMAKE), "--cores", "all"]
        times = []
        for _ in range(args.repeats):
            seconds, out = timed(cmd, args.finished_dir)
            if "Nothing to be done" not in out:
                raise SystemExit(f"{args.finished_dir} is not a finished run: snakemake did work")
            times.append(seconds)
        row = {"case": "no-op rerun of the finished demo", "median_s": statistics.median(times)}
        row["runs_s"] = [round(t, 2) for t in times]
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
