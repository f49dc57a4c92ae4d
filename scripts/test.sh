#!/usr/bin/env bash
# The one test command (README and CI): installs what is missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
python3 -m pytest "$@"
