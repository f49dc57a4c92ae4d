#!/usr/bin/env bash
# Installs what the server and its tests need on a fresh machine; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

if [ -f tests/node/package.json ]; then
  (cd tests/node && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

# A Redis server binary for the cluster tests (they start their own when none answers).
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) || echo "bootstrap: could not install redis-server" >&2
  fi
fi
