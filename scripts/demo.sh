#!/usr/bin/env bash
# Install (scripts/setup.sh) and run the demo on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/opensim-biopose demo --out out/demo
