#!/usr/bin/env bash
# The main job: install, then transcribe the bundled example audio with the bundled model and score it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q -e . 2>&1 | grep -v "Running pip as the 'root' user" || true
# the bundled model decodes with beam search and its language model unless told otherwise
"$PYTHON" -m asr transcribe examples/
echo
"$PYTHON" -m asr evaluate --manifest examples/examples.jsonl --show
echo
echo "Greedy decoding (--decoder greedy: no language model, the raw speed):"
"$PYTHON" -m asr evaluate --manifest examples/examples.jsonl --decoder greedy
