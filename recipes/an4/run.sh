#!/usr/bin/env bash
# AN4 from the tarball to a tuned decoder config, in numbered stages (icefall's shape). Usage:
#
#   bash recipes/an4/run.sh [--stage N] [--stop-stage M] [--dry-run] [--source DIR]
#                           [--data DIR] [--exp DIR] [--model-config YAML] [KEY=VALUE ...]
#
#   --source DIR     an extracted copy holding an4/ (default: download CMU's an4_sphere.tar.gz)
#   --test-speakers N  also hold N training speakers out as a test set (for a copy without
#                    AN4's own test set, as ../shared/data/an4)
#   --data DIR       the manifests (default data/an4); --exp DIR the experiment (default exp/an4)
#   --model-config   the model size (default conf/model/small.yaml)
#   KEY=VALUE        config overrides for asr train (e.g. train.epochs=40)
#
# Stages: 0 prepare (5 training speakers held out as dev), 1 train, 2 a word 3-gram of the
# training transcripts, 3 tune its weights on dev, 4 score the test set greedy and with the LM.
# A stage whose output exists is skipped (and says so); training resumes from its last.pt.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/stages.sh

SOURCE=""
TEST_SPEAKERS=0
DATA=data/an4
EXP=exp/an4
MODEL_CONFIG=conf/model/small.yaml
LM_ORDER=3
parse_stage_options "$@"
set -- "${REST[@]+"${REST[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    --source) SOURCE=$2; shift 2 ;;
    --test-speakers) TEST_SPEAKERS=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --exp) EXP=$2; shift 2 ;;
    --model-config) MODEL_CONFIG=$2; shift 2 ;;
    *=*) OVERRIDES+=("$1"); shift ;;
    *) echo "run.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done

if stage 0 "prepare: the training set, 5 speakers held out as dev; the test set"; then
  if [ -n "$SOURCE" ]; then from=("$SOURCE"); else from=(--download); fi
  run "$DATA/dev.jsonl" $ASR prepare an4 "${from[@]}" --out "$DATA" --dev 5 \
    --test "$TEST_SPEAKERS" --seed 1
fi
if stage 1 "train (~27 min here with small, bf16)"; then
  train "$EXP" -c "$MODEL_CONFIG" -c recipes/an4/an4.yaml \
    data.train="$DATA/train.jsonl" data.valid="$DATA/dev.jsonl" "${OVERRIDES[@]+"${OVERRIDES[@]}"}"
fi
if stage 2 "a word $LM_ORDER-gram of the training transcripts"; then
  run "$EXP/lm$LM_ORDER.arpa" $ASR lm build "$DATA/train.jsonl" --order "$LM_ORDER" \
    --out "$EXP/lm$LM_ORDER.arpa"
fi
if stage 3 "LM weight and word score chosen on dev"; then
  run "$EXP/decoder.yaml" $ASR lm tune --model "$EXP/best.pt" --manifest "$DATA/dev.jsonl" \
    --lm "$EXP/lm$LM_ORDER.arpa" --lm-weights=0.25,0.5,0.75,1.0,1.5 --word-scores=-1,0,1,2 \
    --out "$EXP/decoder.yaml"
fi
if stage 4 "the test set, greedy and with the LM"; then
  run_to "$EXP/test-greedy.txt" $ASR evaluate --model "$EXP/best.pt" \
    --manifest "$DATA/test.jsonl" --decoder greedy
  run_to "$EXP/test-lm.txt" $ASR evaluate --model "$EXP/best.pt" \
    --manifest "$DATA/test.jsonl" --decoder-config "$EXP/decoder.yaml"
fi
