"""The batch engine behind ``videos.per_job`` (pipeline_lib/batch.py): a failed video is named
and the others are kept and reused; stale staged outputs are redone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline_lib.batch import BatchError, run_batch, video_batches


def _items(tmp_path: Path, ids: list[str]) -> dict:
    items = {}
    for vid in ids:
        source = tmp_path / f"{vid}.txt"
        if not source.exists():
            source.write_text(vid)
        items[vid] = {
            "inputs": [str(source)],
            "params": {"scale": 2},
            "staged": {"out": str(tmp_path / "staged" / f"{vid}.out")},
            "outputs": {"out": str(tmp_path / "final" / f"{vid}.out")},
        }
    return items


def test_batches_are_consecutive_runs_in_listing_order() -> None:
    assert video_batches(["c", "a", "b", "d", "e"], 2) == {
        "b0000": ["c", "a"],
        "b0001": ["b", "d"],
        "b0002": ["e"],
    }


def test_a_failed_video_is_named_and_the_others_are_kept_and_reused(tmp_path: Path) -> None:
    calls: list[str] = []

    def run_one(vid, item):
        calls.append(vid)
        if vid == "bad" and not (tmp_path / "fixed").exists():
            raise ValueError("frame 7 does not decode")
        Path(item["staged"]["out"]).write_text(Path(item["inputs"][0]).read_text() * 2)

    items = _items(tmp_path, ["a", "bad", "c"])
    with pytest.raises(BatchError) as err:
        run_batch(items, run_one, code="v1")
    message = str(err.value)
    assert "1 of 3 videos failed: video bad (" in message and "frame 7 does not decode" in message
    assert "The 2 finished are kept" in message
    assert (tmp_path / "staged/a.out").read_text() == "aa"
    assert not (tmp_path / "final/bad.out").exists()
    # Snakemake removes every output of a failed job; the staged copies survive that
    for final in (tmp_path / "final").iterdir():
        final.unlink()

    (tmp_path / "fixed").touch()
    calls.clear()
    summary = run_batch(items, run_one, code="v1")
    assert calls == ["bad"]
    assert summary["videos"] == {"a": "reused", "bad": "done", "c": "reused"}
    assert {p.name: p.read_text() for p in (tmp_path / "final").iterdir()} == {
        "a.out": "aa",
        "bad.out": "badbad",
        "c.out": "cc",
    }


def test_stale_staged_outputs_are_redone(tmp_path: Path) -> None:
    calls: list[str] = []

    def run_one(vid, item):
        calls.append(vid)
        Path(item["staged"]["out"]).write_text("x")

    items = _items(tmp_path, ["a", "b", "c"])
    run_batch(items, run_one, code="v1")
    calls.clear()
    source = tmp_path / "b.txt"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    run_batch(items, run_one, code="v1")
    assert calls == ["b"]  # its input changed
    calls.clear()
    run_batch(items, run_one, code="v2")
    assert calls == ["a", "b", "c"]  # the code changed
    calls.clear()
    (tmp_path / "staged/c.out").unlink()
    run_batch(items, run_one, code="v2")
    assert calls == ["c"]  # its output went missing
