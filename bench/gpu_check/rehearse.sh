#!/usr/bin/env bash
# Rehearse the GPU check on this (CPU) machine before a lent GPU is spent on it: run.sh exactly
# as the device runs it, over a stand-in for the device image.
#
# The stand-in is a Python 3.12 venv (build/gpu-check-standin, git-ignored, built once and reused
# while image-standin.txt is unchanged) holding what the image ships: torch 2.11, Lightning,
# OpenCV ... from the package registry. run.sh then makes its own fresh venv over it and installs
# the project and the wheelhouse with pip --no-index, as on the device; its steps shrink to a
# few training steps and frames without CUDA, and the gpu tests run their bodies on the CPU
# (PIPELINE_GPU_TESTS_ON_CPU=1). Results: results/gpu_check_rehearsal.
#
#   make gpu-check-rehearsal        (builds the wheelhouse and the device data first)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/bench/gpu_check"
standin="$root/build/gpu-check-standin"
source "$here/prepare.sh" --functions-only

py312="$(python312)"
stamp="$standin/.installed-$(sha256sum "$here/image-standin.txt" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    rm -rf "$standin"
    "$py312" -m venv "$standin"
    "$standin/bin/pip" install --quiet -r "$here/image-standin.txt"
    touch "$stamp"
fi

export OUT="$root/results/gpu_check_rehearsal"
rm -rf "$OUT"
export BASE_PYTHON="$standin/bin/python"
export PIPELINE_GPU_TESTS_ON_CPU=1 GPU_CHECK_FORCE_SYSLIBS=1
export GPU_CHECK_WORK="${TMPDIR:-/tmp}/gpu-check-rehearsal"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
GPU_CHECK_BUDGET_S="${GPU_CHECK_BUDGET_S:-1500}" bash "$here/run.sh"
