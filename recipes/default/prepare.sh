#!/usr/bin/env bash
# Prepare every corpus in ../shared/data (or $DATA) for the bundled default model, holding out
# speakers and prompts the model never trains on. Usage: bash recipes/default/prepare.sh [DATA] [OUT]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-data/default}
# speechocean762: 15 speakers for test, 10 for dev (model selection), 100 to train
python3 -m asr prepare speechocean762 "$DATA/speechocean762" --out "$OUT/speechocean762" --test 15 --dev 10 --seed 1
# kathleen (CMU ARCTIC prompts): hold out whole prompts, never single takes
python3 -m asr prepare folder "$DATA/kathleen/data" --speaker kathleen --out "$OUT/kathleen" \
  --group-by 'id:arctic_([ab]\d+)_' --test 100 --dev 50 --seed 1
# FSDD: two speakers held out entirely
python3 -m asr prepare fsdd "$DATA/fsdd" --out "$OUT/fsdd" --split speaker --test-speakers theo,yweweler
# AN4: its own train/extra/test splits
python3 -m asr prepare nemo "$DATA/an4_mini/manifest.json" --out "$OUT/an4"
