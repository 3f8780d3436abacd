#!/usr/bin/env bash
# Rebuild the bundled model (asr/pretrained/default.pt, decoder.yaml, lm3.arpa) from the corpora
# in ../shared/data, in numbered stages as icefall's prepare.sh does. Usage:
#
#   bash recipes/default/run.sh [--stage N] [--stop-stage M] [--dry-run] [--from-git GEN]
#                               [--data DIR]
#
#   --stage N, --stop-stage M  run stages N..M only (default: all; `--dry-run` lists them)
#   --dry-run                  print every command, run none
#   --from-git GEN             skip the training up to generation GEN: write the file the next
#                              stage starts from out of git history (gen1, gen3, gen8, gen13,
#                              gen14, gen15, cv1 or cv2) and start there
#   --data DIR                 the corpora (default ../shared/data)
#
# Resumable: a stage whose output exists is skipped (and says so); a training stage that was
# stopped starts again where it stopped (asr train resumes from its last.pt) and is done when
# exp/<stage>/.done exists. Times are this project's 2-core CPU. Paths are taken from the
# repository root, where the script runs whatever the directory it is started from.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/stages.sh

from_git=""
skip_to=1  # with --from-git, the lineage's stages before this one are not run
DATA=../shared/data
PY="${PYTHON:-python3}"
parse_stage_options "$@"
set -- "${REST[@]+"${REST[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    --from-git) from_git=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    *) echo "run.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done

# The shipped model's lineage: stage i trains LINEAGE[i-1] (generation() below). The stages after
# it (LM, tuning, export, scoring) take its last entry: a stage that ships later is one more entry.
LINEAGE=(gen1 gen2 gen3 gen4 gen5 gen6 gen7 gen8 gen9 gen10 gen11 gen12 gen13 gen14 gen15 cv1 cv2)
FINAL=${LINEAGE[-1]}

DEV=data/default/commonvoice/dev.jsonl,data/default/speechocean762/dev.jsonl,data/default/kathleen/dev.jsonl,data/default/librispeech/dev.jsonl,data/default/an4/dev.jsonl,data/default/speechcommands/dev.jsonl
# the LM's transcripts, as the shipped LM had them: it was built before fsdd_ywe and Common Voice
TRAIN_TEXT=(data/default/an4/train.jsonl data/default/fsdd/train.jsonl data/default/kathleen/train.jsonl
  data/default/librispeech/train.jsonl data/default/speechcommands/train.jsonl
  data/default/speechocean762/train.jsonl)

log() { echo "# $*"; }

# a stage of the lineage over base.yaml: recipes/default/NAME.yaml -> exp/NAME/best.pt
train_stage() {
  train "exp/$1" -c conf/model/small.yaml -c recipes/default/base.yaml -c "recipes/default/$1.yaml"
}

# weights GEN: a generation's float32 weights (what the next stage, the LM tuning and scoring read)
weights() {
  case $1 in
    gen13) echo exp/avg1213.pt ;;
    gen14) echo exp/avg1314.pt ;;
    gen15) echo exp/avg1415.pt ;;
    cv1) echo exp/avg15cv1.pt ;;
    cv2) echo exp/avgcv1cv2.pt ;;
    *) echo "exp/$1/best.pt" ;;
  esac
}

# generation GEN: train one generation of the lineage, and write what the next one starts from
generation() {
  case $1 in
    gen1)  # from scratch, three runs (~2 h 30 min, 19 min, 17 min); the first generation is the last
      train exp/default -c conf/model/small.yaml -c recipes/default/default.yaml
      train exp/default-join -c conf/model/small.yaml -c recipes/default/default.yaml \
        -c recipes/default/join.yaml
      train exp/default-join5 -c conf/model/small.yaml -c recipes/default/default.yaml \
        -c recipes/default/join_many.yaml
      run exp/gen1.pt $ASR export --model exp/default-join5/best.pt --out exp/gen1.pt --half ;;
    gen2) train_stage gen2 ;;   # ~1 h 50 min: all six corpora, from the first generation
    gen3)  # ~1 h 50 min; the fourth started from its float16 export
      train_stage gen3
      run exp/gen3.pt $ASR export --model exp/gen3/best.pt --out exp/gen3.pt --half ;;
    gen4) train_stage gen4 ;;   # ~1 h 20 min
    gen5) train_stage gen5 ;;   # 2 h 0 min: widened to 384 units
    gen6) train_stage gen6 ;;   # 1 h 46 min
    gen7) train_stage gen7 ;;   # 1 h 45 min
    gen8)  # 1 h 48 min; the ninth started from its float16 export
      train_stage gen8
      run exp/gen8.pt $ASR export --model exp/gen8/best.pt --out exp/gen8.pt --half ;;
    gen9) train_stage gen9 ;;   # 1 h 38 min
    gen10) train_stage gen10 ;; # ~1 h 36 min
    gen11) train_stage gen11 ;; # ~1 h 30 min
    gen12) train_stage gen12 ;; # 1 h 44 min
    gen13)  # ~1 h 35 min; the generation is the mean of this stage and the twelfth
      train_stage gen13
      run exp/avg1213.pt $ASR export --model exp/gen13/best.pt --average exp/gen12/best.pt \
        --out exp/avg1213.pt ;;
    gen14)  # ~1 h 36 min; the mean of this stage and its start
      train_stage gen14
      run exp/avg1314.pt $ASR export --model exp/gen14/best.pt --average exp/avg1213.pt \
        --out exp/avg1314.pt ;;
    gen15)  # ~1 h 36 min; the mean of this stage and its start, and the shipped file
      train_stage gen15
      run exp/avg1415.pt $ASR export --model exp/gen15/best.pt --average exp/avg1314.pt \
        --out exp/avg1415.pt
      run exp/gen15.pt $ASR export --model exp/avg1415.pt --out exp/gen15.pt --half ;;
    cv1)  # 1 h 13 min beside other work (3 epochs); the mean of this stage and its start
      train_stage cv1
      run exp/avg15cv1.pt $ASR export --model exp/cv1/best.pt --average exp/gen15.pt \
        --out exp/avg15cv1.pt ;;
    cv2)  # 1 h 22 min (5 epochs, bf16); the mean of this stage and its start
      train_stage cv2
      run exp/avgcv1cv2.pt $ASR export --model exp/cv2/best.pt --average exp/avg15cv1.pt \
        --out exp/avgcv1cv2.pt ;;
    *) train_stage "$1" ;;
  esac
}

# --from-git: the shipped file of a generation, as the file the next stage reads
if [ -n "$from_git" ]; then
  case $from_git in
    gen1) sha=afb9f3b; files=(exp/gen1.pt) ;;
    gen3) sha=a466ba1; files=(exp/gen3.pt) ;;
    gen8) sha=971fb9d; files=(exp/gen8.pt) ;;
    gen13) sha=a1b8b4c; files=(exp/avg1213.pt) ;;
    gen14) sha=e75a912; files=(exp/avg1314.pt) ;;
    gen15) sha=4eb39f7; files=(exp/avg1415.pt exp/gen15.pt) ;;
    cv1) sha=80470b7; files=(exp/avg15cv1.pt exp/cv1.pt) ;;
    cv2) sha=67ab25d; files=(exp/avgcv1cv2.pt exp/cv2.pt) ;;
    *) echo "run.sh: --from-git takes gen1, gen3, gen8, gen13, gen14, gen15, cv1 or cv2" >&2; exit 2 ;;
  esac
  log "--from-git $from_git: its shipped float16 file, not a rebuild"
  for f in "${files[@]}"; do
    if made "$f"; then log "skipped, $f exists: git show $sha:asr/pretrained/default.pt > $f"; continue; fi
    echo "git show $sha:asr/pretrained/default.pt > $f"
    if $DRY_RUN; then PLANNED[$f]=1; continue; fi
    mkdir -p "$(dirname "$f")"
    git show "$sha:asr/pretrained/default.pt" > "$f.tmp"
    mv "$f.tmp" "$f"
  done
  for i in "${!LINEAGE[@]}"; do
    if [ "${LINEAGE[$i]}" = "$from_git" ]; then skip_to=$((i + 2)); fi
  done
fi

n=${#LINEAGE[@]}
LM=$((n + 1)) TUNE=$((n + 2)) EXPORT=$((n + 3)) SCORE=$((n + 4))
# step N DESCRIPTION: stage N is to run (stages.sh's stage), unless --from-git skipped it
step() { { [ "$1" -eq 0 ] || [ "$1" -ge "$skip_to" ]; } && stage "$@"; }

if step 0 "data preparation (recipes/default/prepare.sh; not timed here)"; then
  # prepare.sh writes Common Voice's manifests last
  run data/default/commonvoice/test.jsonl bash recipes/default/prepare.sh "$DATA" data/default
fi

for i in "${!LINEAGE[@]}"; do
  if step $((i + 1)) "${LINEAGE[$i]}"; then
    generation "${LINEAGE[$i]}"
  fi
done

if step $LM "the LM, 0.3 x the training transcripts + 0.7 x general English, 3-grams (~4 min)"; then
  run exp/lm/train3.arpa $ASR lm build "${TRAIN_TEXT[@]}" --order 3 --out exp/lm/train3.arpa
  run exp/lm/general3q.arpa $ASR lm build "$DATA/text" "${TRAIN_TEXT[@]}" --order 3 \
    --prune 0,2,3 --min-count 3 --out exp/lm/general3q.arpa
  run exp/lm/lm3.arpa $ASR lm mix exp/lm/train3.arpa exp/lm/general3q.arpa --weight 0.3 \
    --out exp/lm/lm3.arpa
fi

if step $TUNE "LM weight and word score for $FINAL, each dev set counting the same (~1 min)"; then
  run exp/lm/decoder.yaml $ASR lm tune --model "$(weights "$FINAL")" --lm exp/lm/lm3.arpa \
    --manifest "$DEV" --lm-weights 1.0,1.25,1.5,1.75 --word-scores=-1.5,-1,-0.5,0 \
    --average sets --jobs 2 --out exp/lm/decoder.yaml
fi

if step $EXPORT "the shipped file, float16: exp/$FINAL.pt with exp/lm/decoder.yaml (lm: lm3.arpa)"; then
  run "exp/$FINAL.pt" $ASR export --model "$(weights "$FINAL")" --out "exp/$FINAL.pt" --half
  log "to bundle it: cp exp/$FINAL.pt asr/pretrained/default.pt; cp exp/lm/decoder.yaml exp/lm/lm3.arpa asr/pretrained/"
fi

if step $SCORE "every held-out split, greedy and beam + LM (~9 min)"; then
  run_to "exp/score_$FINAL.md" $PY recipes/default/score.py --model "$(weights "$FINAL")" \
    --decoder-config exp/lm/decoder.yaml --sets all
fi
