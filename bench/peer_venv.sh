#!/usr/bin/env bash
# Create the peer venv the benchmarks compare against: sleap-nn 0.3.5 with the same torch as
# ours, in bench/.peer-venv (git-ignored). It is never a dependency of this project.
#   bash bench/peer_venv.sh            then pass --peer-python bench/.peer-venv/bin/python
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PEER_VENV:-$here/.peer-venv}"
python="${PYTHON:-python3.11}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet sleap-nn==0.3.5 torch==2.14.1 torchvision==0.29.1
"$venv/bin/python" -c "import sleap_nn; print('sleap-nn', sleap_nn.__version__)"
