#!/bin/sh
# examples/fashion/run.sh: IMM on Fashion-MNIST (an MLP on flattened 28 x 28 pixels),
# sample grids at 1, 2 and 4 steps, and a classifier-feature Frechet score (FID-like).
#
# 1. graphs/fashion_classifier.grad: a 784-256-128-10 MLP trained with cross-entropy
#    (the runtime feeds the labels of the IDX set to the entry's second input); its
#    accuracy on the 10,000 test images is printed (`gradc run --entry logits`).
# 2. graphs/imm_fashion.grad: IMM with the s-conditioned velocity MLP; budget below.
# 3. N samples at each step count (`prog sample`, the first 100 drawn as a PNG grid).
# 4. Features: `gradc run graphs/fashion_classifier.grad --entry features` (the 128-wide
#    penultimate layer) on the test images, on N training images (the floor) and on each
#    sample set; `score fd` prints the Frechet distance between Gaussian fits of the
#    features of each set and of the test images (the FID formula, with this small
#    classifier instead of Inception: numbers are comparable within this table only).
#
#   sh examples/fashion/run.sh
#   STEPS=10000 HIDDEN=512 DEPTH=3 B=256 LR=3e-4 sh examples/fashion/run.sh   (the defaults)
# Outputs under $OUT (default out/fashion): checkpoints, logs, samples, grid_K.png, fd.tsv.
# Existing checkpoints are reused (FORCE=1 retrains).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/out/fashion}
GRADC=${GRADC:-$ROOT/build/gradc}
STEPS=${STEPS:-10000}
HIDDEN=${HIDDEN:-512}
DEPTH=${DEPTH:-3}
B=${B:-256}
LR=${LR:-3e-4}
CLF_STEPS=${CLF_STEPS:-3000}
N=${N:-10000}
KS=${KS:-"1 2 4"}
FORCE=${FORCE:-0}

[ -x "$GRADC" ] || { echo "error: $GRADC not built (run make)" >&2; exit 1; }
mkdir -p "$OUT"
cc -std=c11 -O2 -I"$ROOT/runtime" "$ROOT/examples/tools/score.c" "$ROOT/build/libgradrt.a" \
  -lz -lm -lpthread -o "$OUT/score"

# ---- 1. the feature classifier ---------------------------------------------------------
CLF=$OUT/classifier
"$GRADC" build "$ROOT/graphs/fashion_classifier.grad" -o "$CLF" -D steps="$CLF_STEPS"
if [ "$FORCE" = 1 ] || [ ! -f "$CLF.safetensors" ]; then
  echo "== training the classifier ($CLF_STEPS steps, log $CLF.csv)"
  rm -f "$CLF.csv"
  "$CLF" train --ckpt "$CLF.safetensors" --log "$CLF.csv" --every 500
fi
"$CLF" data --data fashion-mnist-test -n 10000 --out "$OUT/test.npy" --labels "$OUT/test_labels.npy"
"$CLF" data --data fashion-mnist --seed 1 -n "$N" --out "$OUT/train_$N.npy"
features() { # features IN.npy ROWS OUTNAME
  rm -rf "$OUT/feat_tmp"
  "$GRADC" run "$ROOT/graphs/fashion_classifier.grad" -D NS="$2" --entry "${4:-features}" \
    --params "$CLF.safetensors" --in x="$1" --out "$OUT/feat_tmp"
  mv "$OUT/feat_tmp/out.npy" "$OUT/$3.npy"
  rm -rf "$OUT/feat_tmp"
}
features "$OUT/test.npy" 10000 test_logits logits
"$OUT/score" acc "$OUT/test_logits.npy" "$OUT/test_labels.npy" | tee "$OUT/classifier_acc.txt"
features "$OUT/test.npy" 10000 feat_test
features "$OUT/train_$N.npy" "$N" feat_train

# ---- 2. IMM ----------------------------------------------------------------------------
IMM=$OUT/imm_fashion
"$GRADC" build "$ROOT/graphs/imm_fashion.grad" -o "$IMM" -D hidden="$HIDDEN" -D depth="$DEPTH" \
  -D B="$B" -D steps="$STEPS" -D lr="$LR"
if [ "$FORCE" = 1 ] || [ ! -f "$IMM.safetensors" ]; then
  echo "== training IMM on Fashion-MNIST ($HIDDEN x $DEPTH MLP, batch $B, $STEPS steps, log $IMM.csv)"
  rm -f "$IMM.csv"
  "$IMM" train --ckpt "$IMM.safetensors" --log "$IMM.csv" --every 250
fi

# ---- 3. samples and grids ----------------------------------------------------------------
feats="$OUT/feat_train.npy"
for k in $KS; do
  "$IMM" sample --ckpt "$IMM.safetensors" --steps "$k" -n "$N" --out "$OUT/samples_$k.npy" \
    --png "$OUT/grid_$k.png"
  features "$OUT/samples_$k.npy" "$N" "feat_samples_$k"
  feats="$feats $OUT/feat_samples_$k.npy"
done

# ---- 4. the Frechet score ------------------------------------------------------------------
echo "== Frechet distance of classifier features vs the 10,000 test images (feat_train = floor)"
# shellcheck disable=SC2086
"$OUT/score" fd "$OUT/feat_test.npy" $feats | tee "$OUT/fd.tsv"
