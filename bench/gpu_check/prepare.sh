#!/usr/bin/env bash
# Build what the GPU check carries to a lent GPU machine, in build/gpu-check (git-ignored):
#   wheelhouse/    Python 3.12 wheels of what that machine's image lacks (wheelhouse.txt)
#   debs/          Debian packages of the system libraries skia-python links (syslibs.py)
#   shared/data/   the few shared test files the check reads (data.txt)
# and say how big the call will be: the working tree plus this folder must stay under the
# 64 MiB that travels with one call (this script stops above LIMIT_MIB, default 60).
#
#   bash bench/gpu_check/prepare.sh [wheelhouse|data|all]
# PYTHON312 picks the Python 3.12 that builds the wheels (default: python3.12 on PATH, then
# pyenv's); PIPELINE_SHARED_DIR the shared folder (default ../shared).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/bench/gpu_check"
dest="$root/build/gpu-check"
shared="${PIPELINE_SHARED_DIR:-$root/../shared}"
limit_mib="${LIMIT_MIB:-60}"

python312() {
    local candidate
    for candidate in "${PYTHON312:-}" python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "prepare.sh: no Python 3.12 found (set PYTHON312)" >&2
    return 1
}

wheelhouse() {
    local py tmp
    py="$(python312)"
    tmp="$dest/wheelhouse.partial"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    # --no-deps: the list is the whole closure minus the image (see wheelhouse.txt's header).
    # GPU_CHECK_PEER=0 leaves out the sleap-nn section (about 36 MB) should the tree outgrow it.
    if [ "${GPU_CHECK_PEER:-1}" = 0 ]; then
        sed '/^# sleap-nn 0.3.5/,$d' "$here/wheelhouse.txt" >"$tmp/requirements.txt"
    else
        cp "$here/wheelhouse.txt" "$tmp/requirements.txt"
    fi
    "$py" -m pip wheel --quiet --no-deps --wheel-dir "$tmp" -r "$tmp/requirements.txt"
    rm "$tmp/requirements.txt"
    rm -rf "$dest/wheelhouse"
    mv "$tmp" "$dest/wheelhouse"
    echo "wheelhouse: $(find "$dest/wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$dest/wheelhouse" | cut -f1)"
}

debs() {
    # The system libraries skia-python links (syslibs.py's list), as Debian packages for amd64,
    # through a private package list (the system's apt state is left alone). Without apt-get
    # the check relies on the image having them.
    local lists="${TMPDIR:-/tmp}/gpu-check-apt-lists" packages
    packages=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import syslibs; print(*syslibs.LIBS)' "$here")
    if ! command -v apt-get >/dev/null; then
        echo "prepare.sh: no apt-get here; not carrying $packages" >&2
        return 0
    fi
    local o=(-qq -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
    mkdir -p "$lists/partial"
    rm -rf "$dest/debs"
    mkdir -p "$dest/debs"
    apt-get "${o[@]}" update
    # shellcheck disable=SC2086 # one word per package
    (cd "$dest/debs" && apt-get "${o[@]}" download $packages 2>&1 | grep -v unsandboxed || true)
    local deb
    for deb in "$dest"/debs/*%3a*.deb; do # epochs ("2%3a1.8.4") make odd file names
        [ -e "$deb" ] && mv "$deb" "${deb//%3a/-}"
    done
    echo "system libraries: $(find "$dest/debs" -name '*.deb' | wc -l) packages, $(du -sh "$dest/debs" | cut -f1)"
}

data() {
    local rel
    if [ ! -d "$shared/data" ]; then
        echo "prepare.sh: shared data not found at $shared/data (set PIPELINE_SHARED_DIR)" >&2
        return 1
    fi
    rm -rf "$dest/shared"
    while read -r rel; do
        case "$rel" in '' | '#'*) continue ;; esac
        if [ ! -e "$shared/data/$rel" ]; then
            echo "prepare.sh: $shared/data/$rel (listed in data.txt) is missing" >&2
            return 1
        fi
        mkdir -p "$dest/shared/data/$(dirname "$rel")"
        cp -r "$shared/data/$rel" "$dest/shared/data/$rel"
    done <"$here/data.txt"
    echo "device data: $(du -sh "$dest/shared" | cut -f1)"
}

report_size() {
    local tree carried total
    tree=$(cd "$root" && git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
    carried=$(du -sb "$dest" | cut -f1)
    total=$(( (tree + carried) / 1048576 ))
    echo "one call carries about ${total} MiB (working tree $((tree / 1048576)) MiB + build/gpu-check $((carried / 1048576)) MiB; the cap is 64)"
    if [ "$total" -gt "$limit_mib" ]; then
        echo "prepare.sh: over ${limit_mib} MiB, too close to the 64 MiB cap: trim wheelhouse.txt or data.txt" >&2
        return 1
    fi
}

if [ "${1:-}" = "--functions-only" ]; then # sourced by rehearse.sh for python312
    return 0
fi
mkdir -p "$dest"
case "${1:-all}" in
wheelhouse) wheelhouse && debs ;;
data) data ;;
all) wheelhouse && debs && data ;;
*)
    echo "usage: prepare.sh [wheelhouse|data|all]" >&2
    exit 2
    ;;
esac
report_size
