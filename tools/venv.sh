#!/usr/bin/env bash
# tools/venv.sh TOOL...: make the tool venvs (tools/TOOL.txt pins each one) and link them at
# .tools/TOOL. A venv is built once per pin file and Python, in the user's cache directory
# ($XDG_CACHE_HOME or ~/.cache, then postern-tools/TOOL-<hash>), so a fresh clone (CI's) reuses
# it instead of spending minutes asking the package index again. A lock file beside each venv
# keeps two checkouts from building the same one at once.
# Needs: PYTHON (default python3.11). Exit status: non-zero if any venv could not be made.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
CACHE="${POSTERN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/postern-tools}"
mkdir -p "$CACHE" .tools

make_one() {
    local tool="$1" pins="tools/$1.txt" key dir
    key=$( { cat "$pins"; "$PYTHON" -c 'import sys; print(sys.version, sys.executable)'; } | sha256sum | cut -c1-16)
    dir="$CACHE/$tool-$key"
    (
        flock 9  # one builder per venv, whichever checkout asks first
        if [ ! -e "$dir/.installed" ]; then
            rm -rf "$dir"
            "$PYTHON" -m venv "$dir"
            "$dir/bin/python" -m pip install --quiet --upgrade pip
            "$dir/bin/python" -m pip install --quiet --no-deps -r "$pins"
            "$dir/bin/python" -m pip check > /dev/null
            touch "$dir/.installed"
        fi
    ) 9> "$dir.lock"
    ln -sfn "$dir" ".tools/$tool"
}

pids=()
for tool in "$@"; do
    make_one "$tool" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
