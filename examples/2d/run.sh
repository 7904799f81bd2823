#!/bin/sh
# examples/2d/run.sh: IMM versus flow matching on 2-D toy sets, plus the s-input ablation.
#
# For each data set (checkerboard, 8gaussians) three programs are built with the SAME
# network size and trained with the SAME budget (steps, batch, Adam, lr 1e-3 cosine to
# 1e-4, EMA 0.999, seed 0):
#   imm      graphs/imm_2d.grad        IMM, network sees (x, t, s)
#   imm_no_s graphs/imm_2d_no_s.grad   IMM loss, network sees (x, t) only (the ablation)
#   fm       graphs/fm_2d.grad         flow matching, Euler sampler
# Each is sampled with 20,000 points at IMM_STEPS / FM_STEPS and scored against 20,000
# fresh data points (`prog data --seed 777`: a Philox key the training stream (seed 0)
# never uses) with examples/tools/score.c: energy distance and sliced W2^2 (the runtime's
# formulas). A second fresh draw (seed 778) gives the noise floor row "data".
# Outputs under $OUT (default out/2d): per set a folder with checkpoints, logs, samples,
# scores.tsv and panels.png; and $OUT/table.md with every row.
#
#   sh examples/2d/run.sh                      # everything (about 25 min on 2 busy cores)
#   SETS=checkerboard MODELS="imm fm" sh examples/2d/run.sh
#   STEPS=6000 HIDDEN=128 DEPTH=3 B=1024 ...   # the budget (defaults below)
# A model whose checkpoint exists is not retrained (FORCE=1 retrains): rerunning only
# re-samples and re-scores.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/out/2d}
GRADC=${GRADC:-$ROOT/build/gradc}
SETS=${SETS:-"checkerboard 8gaussians"}
MODELS=${MODELS:-"imm fm imm_no_s"}
STEPS=${STEPS:-6000}
HIDDEN=${HIDDEN:-128}
DEPTH=${DEPTH:-3}
B=${B:-1024}
N=${N:-20000}
IMM_STEPS=${IMM_STEPS:-"1 2 4 8"}
FM_STEPS=${FM_STEPS:-"1 2 4 8 16 32 64"}
FORCE=${FORCE:-0}
EXTRA=${EXTRA:-}   # more -D overrides for the IMM programs, e.g. "-D k=10"

[ -x "$GRADC" ] || { echo "error: $GRADC not built (run make)" >&2; exit 1; }
mkdir -p "$OUT"
SCORE=$OUT/score
cc -std=c11 -O2 -I"$ROOT/runtime" "$ROOT/examples/tools/score.c" "$ROOT/build/libgradrt.a" \
  -lz -lm -lpthread -o "$SCORE"

graph_of() {
  case $1 in
    imm) echo "$ROOT/graphs/imm_2d.grad" ;;
    imm_no_s) echo "$ROOT/graphs/imm_2d_no_s.grad" ;;
    fm) echo "$ROOT/graphs/fm_2d.grad" ;;
  esac
}

for set in $SETS; do
  dir=$OUT/$set
  mkdir -p "$dir"
  size="-D B=$B -D hidden=$HIDDEN -D depth=$DEPTH -D steps=$STEPS"
  # the reference and the noise floor: fresh draws, seeds the training never uses
  "$GRADC" build "$ROOT/graphs/fm_2d.grad" -o "$dir/datagen" $size
  "$dir/datagen" data --data "$set" --seed 777 -n "$N" --out "$dir/ref.npy"
  "$dir/datagen" data --data "$set" --seed 778 -n "$N" --out "$dir/data.npy"
  files="$dir/data.npy"
  for model in $MODELS; do
    prog=$dir/$model
    extra=""
    [ "$model" = fm ] || extra=$EXTRA
    # shellcheck disable=SC2086
    "$GRADC" build "$(graph_of "$model")" -o "$prog" $size $extra
    if [ "$FORCE" = 1 ] || [ ! -f "$prog.safetensors" ]; then
      echo "== $set / $model: training $STEPS steps (log $prog.csv)"
      rm -f "$prog.csv"
      "$prog" train --data "$set" --ckpt "$prog.safetensors" --log "$prog.csv" --every 500
    fi
    ks=$IMM_STEPS
    [ "$model" = fm ] && ks=$FM_STEPS
    for k in $ks; do
      "$prog" sample --ckpt "$prog.safetensors" --steps "$k" -n "$N" --out "$dir/${model}_$k.npy"
      files="$files $dir/${model}_$k.npy"
    done
  done
  echo "== $set: scoring against $N fresh points"
  # shellcheck disable=SC2086
  "$SCORE" dist "$dir/ref.npy" $files | tee "$dir/scores.tsv"
  # one PNG per set: row 1 the fresh data (label 0) and each model in MODELS on its own
  # row, panels labelled with the step count
  panels="$dir/data.npy"
  labels=0
  for m in $MODELS; do
    ks=$IMM_STEPS
    [ "$m" = fm ] && ks=$FM_STEPS
    [ "$m" = "${MODELS%% *}" ] || panels="$panels /"
    for k in $ks; do
      panels="$panels $dir/${m}_$k.npy"
      labels="$labels,$k"
    done
  done
  # shellcheck disable=SC2086
  "$SCORE" panels --range 1.3 --labels "$labels" "$dir/panels.png" $panels
done

# the table of every set scored so far under $OUT
TABLE=$OUT/table.md
printf '| data | model | steps | energy | sw2 |\n|---|---|---|---:|---:|\n' > "$TABLE"
for f in "$OUT"/*/scores.tsv; do
  [ -f "$f" ] || continue
  set=$(basename "$(dirname "$f")")
  while IFS="$(printf '\t')" read -r path e w _fd; do
    name=$(basename "$path" .npy)
    model=${name%_*}
    k=${name##*_}
    [ "$name" = data ] && model="data (floor)" && k=-
    printf '| %s | %s | %s | %.5f | %.5f |\n' "$set" "$model" "$k" "$e" "$w" >> "$TABLE"
  done < "$f"
done
cat "$TABLE"
