#!/usr/bin/env bash
# The whole GPU check in one call (at most 10 minutes on a lent GPU machine, no network there):
#   1. a fresh venv layered over the image's Python (its torch, Lightning, OpenCV ... stay in
#      use), this project installed from the working tree that travelled, and the wheelhouse
#      (build/gpu-check/wheelhouse, `make wheelhouse`) with pip --no-index;
#   2. bench/gpu_check/check.py: the gpu-marked tests, training and prediction throughput
#      ours vs sleap-nn 0.3.5, the forward-pass bound, bf16 against fp32; each step under its
#      own time limit, so one that hangs still leaves the others and the table.
# Results: $OUT/summary.md (the table, also printed last), summary.json, install.log and
# gpu-check-results.tar.gz with every log and benchmark file. Where OUT is unset they go to
# results/gpu_check.
#
# On the device (carry build/gpu-check):       bash bench/gpu_check/run.sh
# Rehearsal on a CPU machine:                   make gpu-check-rehearsal (bench/gpu_check/rehearse.sh)
# BASE_PYTHON: the image's Python (default python3); GPU_CHECK_BUDGET_S: seconds for check.py.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
base_python="${BASE_PYTHON:-python3}"
out="${OUT:-$root/results/gpu_check}"
work="${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/gpu-check}"
carried="$root/build/gpu-check"
mkdir -p "$out"
rm -rf "$work"
mkdir -p "$work"
started=$(date +%s)

if [ ! -d "$carried/wheelhouse" ] || [ ! -d "$carried/shared/data" ]; then
    echo "run.sh: $carried/wheelhouse or shared/data is missing: run 'make wheelhouse device-data' and carry build/gpu-check" | tee "$out/summary.md"
    exit 1
fi

# A venv of its own that still sees the image's packages: a .pth file puts the base Python's
# site-packages after the venv's (the base may itself be a venv, whose packages a
# --system-site-packages venv would not see).
# Should no venv be possible there, the wheels go to a folder on PYTHONPATH instead.
venv="$work/venv"
base_site=$("$base_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if "$base_python" -m venv --without-pip "$venv" >"$out/venv.log" 2>&1; then
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$base_site" >"$site/_gpu_check_image.pth"
    py="$venv/bin/python"
    target=()
else
    py="$base_python"
    target=(--target "$work/site")
    export PYTHONPATH="$work/site"
fi
# Nothing but the wheelhouse: no pip configuration's indexes, find-links or constraints.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT
{
    echo "base python: $("$base_python" -c 'import sys; print(sys.executable, sys.version)')"
    "$py" -m pip install --no-index --no-deps --no-compile --disable-pip-version-check \
        "${target[@]}" "$carried"/wheelhouse/*.whl
} >"$out/install.log" 2>&1
status=$?
# This project from the tree that travelled (never a stale wheel); where an editable install
# cannot be made, the root on PYTHONPATH serves (bench scripts run from other folders).
"$py" -m pip install --no-index --no-deps --no-build-isolation --disable-pip-version-check \
    "${target[@]}" -e "$root" >>"$out/install.log" 2>&1 ||
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
"$py" -m pip check >"$out/pip-check.txt" 2>&1 # informational: --no-deps leaves some out on purpose
echo "install: exit $status in $(($(date +%s) - started)) s (log: install.log)"
if [ "$status" -ne 0 ]; then
    tail -20 "$out/install.log"
    exit "$status"
fi

# System libraries skia-python needs that the image may lack (syslibs.py; all of them with
# GPU_CHECK_FORCE_SYSLIBS=1, as the rehearsal does to prove they load).
if [ -d "$carried/debs" ]; then
    libs=$("$py" "$root/bench/gpu_check/syslibs.py" "$carried/debs" "$work/syslibs" \
        ${GPU_CHECK_FORCE_SYSLIBS:+--force}) || exit 1
    if [ -n "$libs" ]; then
        echo "system libraries unpacked: $(ls "$work/syslibs/usr/lib/x86_64-linux-gnu" | tr '\n' ' ')"
        export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi

export PIPELINE_SHARED_DIR="$carried/shared"
export PYTHONUNBUFFERED=1
"$py" "$root/bench/gpu_check/check.py" --out "$out" --work "$work/results" \
    --budget "${GPU_CHECK_BUDGET_S:-$((540 - ($(date +%s) - started)))}"
