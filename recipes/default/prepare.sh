#!/usr/bin/env bash
# Prepare every corpus in ../shared/data (or $DATA) for the bundled default model, holding out
# whole speakers (or prompts) of every corpus for dev (model selection) and test. Usage:
#   bash recipes/default/prepare.sh [DATA] [OUT]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-data/default}
PY=${PYTHON:-python3}
# speechocean762: 15 speakers for test, 10 for dev, 100 to train
$PY -m asr prepare speechocean762 "$DATA/speechocean762" --out "$OUT/speechocean762" --test 15 --dev 10 --seed 1
# kathleen (CMU ARCTIC prompts): hold out whole prompts, never single takes
$PY -m asr prepare folder "$DATA/kathleen/data" --speaker kathleen --out "$OUT/kathleen" \
  --group-by 'id:arctic_([ab]\d+)_' --test 100 --dev 50 --seed 1
# FSDD: two speakers held out entirely (test); no dev speakers are left to spare
$PY -m asr prepare fsdd "$DATA/fsdd" --out "$OUT/fsdd" --split speaker --test-speakers theo,yweweler
# ... and from the twelfth generation on, theo trains too (a third FSDD voice saying digits) and only
# yweweler is held out: fsdd_ywe/train.jsonl = jackson, nicolas, theo; fsdd_ywe/test.jsonl = yweweler
$PY -m asr prepare fsdd "$DATA/fsdd" --out "$OUT/fsdd_ywe" --split speaker --test-speakers yweweler
# theo's two clips in examples/ stay out of training: the demo's clips are ones the model never heard
$PY - "$OUT/fsdd_ywe/train.jsonl" "$(dirname "$0")/../../examples/examples.jsonl" <<'PYEOF'
import json, os, sys
train, examples = sys.argv[1:3]
with open(examples, encoding="utf-8") as f:
    held = {json.loads(line)["id"] for line in f if line.strip()}
with open(train, encoding="utf-8") as f:
    lines = [line for line in f if json.loads(line)["id"] not in held]
with open(train + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(lines)
os.replace(train + ".tmp", train)
print(f"{train}: {len(lines)} utterances after dropping the clips of examples/")
PYEOF
# Mini LibriSpeech train-clean-5 (28 speakers): 2 for dev, 2 for test
$PY -m asr prepare librispeech "$DATA/librispeech" --splits train-clean-5 --out "$OUT/librispeech" --dev 2 --test 2 --seed 1
# AN4 training set (74 speakers): 4 for dev, 4 for test
$PY -m asr prepare an4 "$DATA/an4" --out "$OUT/an4" --dev 4 --test 4 --seed 1
# Speech Commands v0.02 test set (196 speakers of single words): 10 for dev, 10 for test;
# its background-noise clips become noise.jsonl, the real-noise source of augment.noise_sources
$PY -m asr prepare speechcommands "$DATA/speech_commands" --out "$OUT/speechcommands" --dev 10 --test 10 --seed 1
# Common Voice English, a delta release (validated.tsv alone; 146 speakers, three of them a third of
# the clips): 15 speakers for dev, 15 for test, the rest to train
$PY -m asr prepare commonvoice "$DATA/commonvoice" --out "$OUT/commonvoice" --dev 15 --test 15 --seed 1
