#!/bin/sh
# examples/demo.sh: `make demo`, the README's first command.
#
# Compiles graphs/imm_2d.grad into a standalone training executable, trains Inductive
# Moment Matching on the checkerboard (a progress bar on a terminal), samples with 1, 2,
# 4 and 8 steps, writes one PNG (the data, then the samples at each step count) and
# prints the quality table of `prog eval` (energy distance, MMD, sliced W2, Frechet
# distance of Gaussian fits, against held-out points; the "data" row is the noise floor).
# Everything goes to out/demo/. The network and budget are the ones of examples/2d
# (3 x 128 MLP, batch 1024, Adam 1e-3 cosine to 1e-4, EMA 0.999); STEPS=... changes the
# number of training steps (default 6000: the whole demo takes 13 s on the 2-core machine
# docs/performance.md describes, 59 s before gradc's own matrix kernel; the same run as
# the checkerboard IMM model of examples/2d, so its checkpoint is bit-identical).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/out/demo}
GRADC=$ROOT/build/gradc
STEPS=${STEPS:-6000}
mkdir -p "$OUT"
[ -x "$GRADC" ] || { echo "error: $GRADC is missing: run make first" >&2; exit 1; }

echo "== compiling graphs/imm_2d.grad (3 x 128 MLP, batch 1024, $STEPS steps)"
"$GRADC" build "$ROOT/graphs/imm_2d.grad" -o "$OUT/imm_2d" \
  -D hidden=128 -D depth=3 -D B=1024 -D steps="$STEPS"
cc -std=c11 -O2 -I"$ROOT/runtime" "$ROOT/examples/tools/score.c" "$ROOT/build/libgradrt.a" \
  -lz -lm -lpthread -o "$OUT/score"

echo "== training IMM on the checkerboard"
rm -f "$OUT/imm_2d.safetensors" "$OUT/train.csv"
"$OUT/imm_2d" train --data checkerboard --ckpt "$OUT/imm_2d.safetensors" \
  --log "$OUT/train.csv" --every 500

echo "== sampling 5000 points with 1, 2, 4 and 8 steps"
"$OUT/imm_2d" data --data checkerboard --seed 777 -n 5000 --out "$OUT/data.npy"
for k in 1 2 4 8; do
  "$OUT/imm_2d" sample --ckpt "$OUT/imm_2d.safetensors" --steps $k -n 5000 \
    --out "$OUT/samples_$k.npy"
done
"$OUT/score" panels --range 1.3 --labels 0,1,2,4,8 "$OUT/demo.png" "$OUT/data.npy" \
  "$OUT/samples_1.npy" "$OUT/samples_2.npy" "$OUT/samples_4.npy" "$OUT/samples_8.npy"
echo "wrote $OUT/demo.png (panels: data, then IMM samples at 1, 2, 4 and 8 steps)"

echo "== quality against 1000 held-out points (lower is better; 'data' = noise floor)"
"$OUT/imm_2d" eval --ckpt "$OUT/imm_2d.safetensors" --steps 1,2,4,8 -n 1000
