#!/usr/bin/env bash
# Runs one node on the embedded defaults (no Redis needed). Extra arguments go to `realtime serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
exec python3 -m realtime serve "$@"
