#!/usr/bin/env bash
# The test suite: install the package with its test extras, lint, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q -e ".[test]" 2>&1 | grep -v "Running pip as the 'root' user" || true
"$PYTHON" -m ruff check asr tests benchmarks
"$PYTHON" -m pytest -q "$@"
