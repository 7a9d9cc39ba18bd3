"""Shared start-up for the workflow scripts.

Each script is a thin adapter: it reads ``snakemake.input/output/params`` and calls one
pipeline_lib function. What every script needs before that call lives here: everything it prints
(including C-level output from ffmpeg or torch) goes to the rule's log file, thread pools follow
the rule's ``threads``, a job with a ``gpu`` resource claims cards that no other job of this
machine holds (``pipeline_lib.gpu_claim``), partial files a killed earlier attempt left beside
the outputs are removed, and ``pipeline_lib`` is imported from the project this workflow belongs
to, the same sources whose hash the rules pass as their ``code`` param.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _redirect_output(log_file: str) -> None:
    """Point file descriptors 1 and 2 (and Python's streams) at ``log_file``."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)


def _limit_threads(threads: int) -> None:
    """Keep numeric libraries and torch to the threads Snakemake granted this job."""
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def run_stage(smk: Any, stage: Callable[[Any], Any]) -> None:
    """Set up logging and threads, run ``stage(smk)``, and log its returned summary.

    An exception propagates, so the job fails and its traceback ends up in the log; a failure
    :func:`pipeline_lib.errors.failure_line` knows (full disk, SIGTERM/SIGINT, run folder in use)
    is logged as one line instead and the job exits non-zero.
    """
    if not smk.log:
        raise RuntimeError(f"Rule {smk.rule} declares no log file; every rule must have one")
    threads = max(1, int(smk.threads))
    _redirect_output(smk.log[0])
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    _limit_threads(threads)
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    import pipeline_lib
    from pipeline_lib.logs import warnings_as_log_lines

    warnings_as_log_lines()
    from pipeline_lib.gpu_claim import claim_gpus

    # Before anything starts CUDA: a job asking for GPUs takes cards no other job holds.
    claim_gpus(int(getattr(smk.resources, "gpu", 0) or 0))
    log = logging.getLogger(f"workflow.{smk.rule}")
    log.info(
        "rule %s, wildcards %s, threads %d, pipeline_lib %s, python %s, node %s%s",
        smk.rule,
        dict(smk.wildcards.items()),
        threads,
        pipeline_lib.__version__,
        platform.python_version(),
        platform.node(),
        f", SLURM job {os.environ['SLURM_JOB_ID']}" if os.environ.get("SLURM_JOB_ID") else "",
    )
    # Snakemake gives this job sole ownership of its outputs, so hidden temporary copies of
    # them can only be the partial files of an earlier attempt that was killed.
    from pipeline_lib.io.atomic import remove_stale_temporaries

    for tmp in remove_stale_temporaries(smk.output):
        log.info("removed %s, left by a killed earlier attempt of this job", tmp)
    from pipeline_lib.errors import exit_after_disk_full, failure_line, is_disk_full, sigterm_raises

    start = time.perf_counter()
    try:
        with sigterm_raises():  # a scheduler's time limit ends the job with a message
            result = stage(smk)
    except BaseException as exc:
        log.error("rule %s failed after %.1f s", smk.rule, time.perf_counter() - start)
        known = failure_line(exc)
        if known is None:
            raise  # Python prints the traceback into this log, right after that line
        # A known condition (full disk, stop signal, run folder in use): one line, no traceback.
        log.error("%s", known[0])
        if is_disk_full(exc):
            exit_after_disk_full(known[1])
        sys.exit(known[1])
    log.info("rule %s finished in %.1f s", smk.rule, time.perf_counter() - start)
    if result is not None:
        log.info("result: %s", json.dumps(result, indent=2, default=str))
