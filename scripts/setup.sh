#!/usr/bin/env bash
# Create .venv (once) and install opensim-biopose with its plugins and test tools.
# torch==2.13.0 goes first so pip takes the CPU build; the core's torch range is then satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=23.1"
.venv/bin/python -m pip install -q torch==2.13.0
plugin_args=()
for p in plugins/*/; do
  [ -f "$p/setup.cfg" ] && plugin_args+=(-e "$p")
done
.venv/bin/python -m pip install -q -e ".[test]" "${plugin_args[@]}"
