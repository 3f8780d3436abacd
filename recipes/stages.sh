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
