"""GPU choice for jobs running side by side (pipeline_lib.gpu_claim), on fake device lists."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline_lib import gpu_claim
from pipeline_lib.gpu_claim import GpuInfo, claim_gpus, list_gpus

TWO = [GpuInfo(0, 10_000), GpuInfo(1, 20_000)]


@pytest.fixture(autouse=True)
def _release():
    yield
    gpu_claim.release_all()


def test_jobs_side_by_side_get_different_cards_most_free_memory_first(tmp_path: Path) -> None:
    first, second = {}, {}
    assert claim_gpus(1, TWO, tmp_path, first) == [1]  # 20 GB free
    assert claim_gpus(1, TWO, tmp_path, second) == [0]
    assert (first["CUDA_VISIBLE_DEVICES"], second["CUDA_VISIBLE_DEVICES"]) == ("1", "0")


def test_more_jobs_than_cards_share_after_waiting_and_say_so(tmp_path: Path, caplog) -> None:
    claim_gpus(1, TWO, tmp_path, {})
    claim_gpus(1, TWO, tmp_path, {})
    third: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="pipeline_lib.gpu_claim"):
        started = time.monotonic()
        assert claim_gpus(1, TWO, tmp_path, third, wait_s=0.3, poll_s=0.1) == [1]
    assert time.monotonic() - started >= 0.3  # it waited for a card first
    assert "sharing GPU 1" in caplog.text and "--resources gpu=N" in caplog.text


def test_a_freed_card_is_claimed_again(tmp_path: Path) -> None:
    claim_gpus(1, TWO, tmp_path, {})
    gpu_claim.release_all()
    assert claim_gpus(1, TWO, tmp_path, {}) == [1]


def test_several_cards_for_one_job(tmp_path: Path) -> None:
    four = [GpuInfo(i, 1000 * (4 - i)) for i in range(4)]
    env: dict[str, str] = {}
    assert claim_gpus(2, four, tmp_path, env) == [0, 1]
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert claim_gpus(3, four, tmp_path, {}, wait_s=0) == [2, 3, 0]  # two free, one shared


def test_nothing_to_choose(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3"}  # SLURM or the user already chose
    assert claim_gpus(1, TWO, tmp_path, env) is None and env == {"CUDA_VISIBLE_DEVICES": "3"}
    env = {}
    assert claim_gpus(0, TWO, tmp_path, env) is None and env == {}  # not a GPU job
    assert claim_gpus(1, [], tmp_path, env) is None and env == {}  # no GPU here
    assert not list(tmp_path.iterdir())


def test_a_killed_job_frees_its_card(tmp_path: Path) -> None:
    """The kernel drops a flock when its process dies, even on SIGKILL: no stale claims."""
    child = textwrap.dedent(
        f"""
        import time
        from pipeline_lib.gpu_claim import GpuInfo, claim_gpus
        print(claim_gpus(1, [GpuInfo(0, 1), GpuInfo(1, 2)], {str(tmp_path)!r}, {{}}), flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "[1]"
        assert claim_gpus(1, TWO, tmp_path, {}, wait_s=0) == [0]  # the child holds card 1
        gpu_claim.release_all()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert claim_gpus(2, TWO, tmp_path, {}, wait_s=0) == [1, 0]
    finally:
        proc.kill()
        proc.wait()


def test_list_gpus_reads_nvidia_smi_and_copes_without_it() -> None:
    def fake_run(cmd, **kwargs):
        assert cmd[0] == "nvidia-smi"
        return subprocess.CompletedProcess(cmd, 0, stdout="0, 11000\n1, 24000\n", stderr="")

    assert list_gpus(fake_run) == [GpuInfo(0, 11000), GpuInfo(1, 24000)]

    def missing(cmd, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    assert list_gpus(missing) == []
