# What a recipe's run.sh shares: numbered stages with --stage/--stop-stage, --dry-run, and
# commands skipped when their output exists. Sourced (bash), not run:
#
#   source recipes/stages.sh
#   parse_stage_options "$@"; set -- "${REST[@]+"${REST[@]}"}"   # the recipe's own options left
#   if stage 1 "what it does"; then run OUT $ASR ...; fi
#
# shellcheck shell=bash

ASR="${PYTHON:-python3} -m asr"
STAGE=0
STOP_STAGE=100
DRY_RUN=false
REST=()
OVERRIDES=()

# parse_stage_options ARGS...: take --stage, --stop-stage and --dry-run; the rest go to REST
parse_stage_options() {
  while [ $# -gt 0 ]; do
    case $1 in
      --stage) STAGE=$2; shift 2 ;;
      --stop-stage) STOP_STAGE=$2; shift 2 ;;
      --dry-run) DRY_RUN=true; shift ;;
      *) REST+=("$1"); shift ;;
    esac
  done
}

# stage N DESCRIPTION: true when stage N is to run (and announce it)
stage() {
  [ "$1" -ge "$STAGE" ] && [ "$1" -le "$STOP_STAGE" ] || return 1
  echo "# stage $1: $2"
}

# show CMD...: the command as one line to copy (words quoted only where the shell needs it)
show() {
  local out=() a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./,:=+@%-]+$ ]]; then out+=("$a"); else out+=("$(printf '%q' "$a")"); fi
  done
  echo "${out[*]}"
}

# made OUT: OUT exists, or an earlier command of this --dry-run would have written it
declare -A PLANNED=()
made() { [ -e "$1" ] || [ -n "${PLANNED[$1]:-}" ]; }

# run OUT CMD...: print CMD and run it, unless OUT exists (then say so) or --dry-run
run() {
  local out=$1
  shift
  if made "$out"; then echo "# skipped, $out exists: $(show "$@")"; return; fi
  show "$@"
  if $DRY_RUN; then PLANNED[$out]=1; else "$@"; fi
}

# run_to OUT CMD...: the same, with CMD's standard output written to OUT (and shown)
run_to() {
  local out=$1
  shift
  if made "$out"; then echo "# skipped, $out exists: $(show "$@") > $out"; return; fi
  echo "$(show "$@") > $out"
  if $DRY_RUN; then PLANNED[$out]=1; return; fi
  mkdir -p "$(dirname "$out")"
  "$@" | tee "$out.tmp"
  mv "$out.tmp" "$out"
}

# train OUT ARGS...: asr train --out OUT ARGS, done once OUT/.done exists (an interrupted run
# resumes from its last.pt)
train() {
  local out=$1
  shift
  if made "$out/.done"; then echo "# skipped, $out/.done exists: $(show $ASR train --out "$out" "$@")"; return; fi
  show $ASR train --out "$out" "$@"
  if $DRY_RUN; then PLANNED[$out/.done]=1; return; fi
  $ASR train --out "$out" "$@"
  touch "$out/.done"
}

# corpus_recipe CORPUS DEV_SPEAKERS ARGS...: the five stages of a one-corpus recipe, from the
# corpus to a tuned decoder config: 0 prepare (DEV_SPEAKERS held out as dev), 1 train
# (recipes/CORPUS/CORPUS.yaml), 2 a word n-gram of the training transcripts, 3 its weights chosen
# on dev, 4 the test set scored greedy and with the LM. ARGS: --stage/--stop-stage/--dry-run,
# --source DIR (a local copy; default --download), --test-speakers N (hold N training speakers
# out as test, for a copy without the corpus's own test set), --data DIR, --exp DIR,
# --model-config YAML, --lm-order N, --spell WORDS (the LM also learns WORDS spelled out letter
# by letter, `asr lm spell`: 'cmudict', or a word list; 'none': off), and KEY=VALUE overrides
# for asr train.
corpus_recipe() {
  local corpus=$1 dev=$2
  shift 2
  local source="" test=0 data="data/$corpus" exp="exp/$corpus" model=conf/model/small.yaml order=3
  local spell=none
  parse_stage_options "$@"
  set -- "${REST[@]+"${REST[@]}"}"
  while [ $# -gt 0 ]; do
    case $1 in
      --source) source=$2; shift 2 ;;
      --test-speakers) test=$2; shift 2 ;;
      --data) data=$2; shift 2 ;;
      --exp) exp=$2; shift 2 ;;
      --model-config) model=$2; shift 2 ;;
      --lm-order) order=$2; shift 2 ;;
      --spell) spell=$2; shift 2 ;;
      *=*) OVERRIDES+=("$1"); shift ;;
      *) echo "run.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
  done
  local from=(--download)
  [ -n "$source" ] && from=("$source")
  if stage 0 "prepare: $dev training speakers held out as dev ($test as test)"; then
    run "$data/dev.jsonl" $ASR prepare "$corpus" "${from[@]}" --out "$data" --dev "$dev" \
      --test "$test" --seed 1
  fi
  if stage 1 "train"; then
    train "$exp" -c "$model" -c "recipes/$corpus/$corpus.yaml" data.train="$data/train.jsonl" \
      data.valid="$data/dev.jsonl" "${OVERRIDES[@]+"${OVERRIDES[@]}"}"
  fi
  local texts=("$data/train.jsonl") lm_of="the training transcripts"
  if [ "$spell" != none ]; then
    texts+=("$exp/spelled.txt")
    lm_of+=" and of $spell's words spelled out"
  fi
  if stage 2 "a word $order-gram of $lm_of"; then
    if [ "$spell" != none ]; then
      run "$exp/spelled.txt" $ASR lm spell "$spell" --out "$exp/spelled.txt"
    fi
    run "$exp/lm$order.arpa" $ASR lm build "${texts[@]}" --order "$order" \
      --out "$exp/lm$order.arpa"
  fi
  if stage 3 "the LM's weight and word score, chosen on dev"; then
    run "$exp/decoder.yaml" $ASR lm tune --model "$exp/best.pt" --manifest "$data/dev.jsonl" \
      --lm "$exp/lm$order.arpa" --lm-weights=0.25,0.5,0.75,1.0,1.5 --word-scores=-1,0,1,2 \
      --out "$exp/decoder.yaml"
  fi
  if stage 4 "the test set, greedy and with the LM"; then
    run_to "$exp/test-greedy.txt" $ASR evaluate --model "$exp/best.pt" \
      --manifest "$data/test.jsonl" --decoder greedy
    run_to "$exp/test-lm.txt" $ASR evaluate --model "$exp/best.pt" \
      --manifest "$data/test.jsonl" --decoder-config "$exp/decoder.yaml"
  fi
}
