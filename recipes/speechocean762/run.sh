#!/usr/bin/env bash
# speechocean762 from OpenSLR's archive to a tuned decoder config, in numbered stages. Usage:
#
#   bash recipes/speechocean762/run.sh [--stage N] [--stop-stage M] [--dry-run] [--source DIR]
#                                      [--test-speakers N] [--data DIR] [--exp DIR]
#                                      [--model-config YAML] [--lm-order N] [KEY=VALUE ...]
#
# Stages: 0 prepare (10 training speakers held out as dev), 1 train, 2 a word 3-gram of the
# training transcripts, 3 its weights chosen on dev, 4 the test set greedy and with the LM. A stage
# whose output exists is skipped (and says so); training resumes from its last.pt. --source takes a
# local copy (the folder holding train/ and test/); --test-speakers N holds N training speakers
# out as a test set, for a copy without the test split (../shared/data/speechocean762).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/stages.sh
corpus_recipe speechocean762 10 "$@"
