#!/usr/bin/env bash
# The test suite: install the package with its test extras, lint, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q -e ".[test]" 2>&1 | grep -v "Running pip as the 'root' user" || true
# the page's browser tests drive Debian's chromium (Playwright's own browser downloads are not
# used); install it when missing and we may, and never fail here: without it they are skipped
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing chromium for the browser tests (apt-get)" >&2
    { timeout 300 apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium; } \
        >/tmp/asr-chromium-install.log 2>&1 \
        || echo "scripts/test.sh: chromium did not install (see /tmp/asr-chromium-install.log);" \
            "the browser tests will be skipped" >&2
fi
"$PYTHON" -m ruff check asr tests benchmarks
"$PYTHON" -m ruff format --check asr tests benchmarks
"$PYTHON" -m pytest -q "$@"
