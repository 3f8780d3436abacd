#!/usr/bin/env bash
# The main job: install, then transcribe the bundled example audio with the bundled model and score it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q -e . 2>&1 | grep -v "Running pip as the 'root' user" || true
"$PYTHON" -m asr transcribe examples/
echo
"$PYTHON" -m asr evaluate --manifest examples/examples.jsonl --show
echo
echo "Beam search with the bundled 3-gram language model:"
"$PYTHON" -m asr evaluate --manifest examples/examples.jsonl --show --decoder-config asr/pretrained/decoder.yaml
