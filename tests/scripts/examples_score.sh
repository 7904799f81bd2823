#!/bin/sh
# examples_score.sh: the examples' scoring tool (examples/tools/score.c) on real files.
# The scripts in examples/ trust its numbers, so check the properties that pin the
# formulas down: a set against itself scores exactly 0 (energy, sliced W2, Frechet); two
# independent draws of the same distribution score far below two different
# distributions; `panels` writes a PNG; `acc` counts argmax hits; bad input is an error.
GRADC=${GRADC:-build/gradc}
cd "$(dirname "$0")/../.." || exit 1
case "${BUILD:-build}" in *asan*) echo "skipped under $BUILD (gradc build cannot link a sanitized runtime)"; exit 0 ;; esac
RT=$(dirname "$GRADC")/libgradrt.a
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
cc -std=c11 -O2 -Iruntime examples/tools/score.c "$RT" -lz -lm -lpthread -o "$tmp/score" ||
  fail "score.c does not compile"
"$GRADC" build graphs/fm_2d.grad -D B=64 -D NS=64 -D hidden=8 -D depth=1 -o "$tmp/p" \
  >"$tmp/log" 2>&1 || fail "gradc build"
for a in "checkerboard 1" "checkerboard 2" "8gaussians 3"; do
  set -- $a
  "$tmp/p" data --data "$1" --seed "$2" -n 2000 --out "$tmp/$1_$2.npy" >/dev/null || fail "data $a"
done
"$tmp/score" dist "$tmp/checkerboard_1.npy" "$tmp/checkerboard_1.npy" "$tmp/checkerboard_2.npy" \
  "$tmp/8gaussians_3.npy" >"$tmp/d.tsv" || fail "score dist"
awk -F '\t' 'NR == 1 { if ($2 != 0 || $3 != 0 || $4 + 0 > 1e-9) bad = "self not 0: " $0 }
             NR == 2 { same = $2 }
             NR == 3 { other = $2 }
             END { if (!bad && !(same > 0 && other > 10 * same)) bad = "same " same " other " other
                   if (bad) { print bad; exit 1 } }' "$tmp/d.tsv" || fail "dist values"
"$tmp/score" fd "$tmp/checkerboard_1.npy" "$tmp/checkerboard_1.npy" >"$tmp/f.tsv" || fail "score fd"
awk -F '\t' '{ if ($2 + 0 > 1e-9) exit 1 }' "$tmp/f.tsv" || fail "fd of a set with itself: $(cat "$tmp/f.tsv")"
"$tmp/score" panels --labels 0,1 "$tmp/p.png" "$tmp/checkerboard_1.npy" / "$tmp/8gaussians_3.npy" ||
  fail "panels"
[ "$(head -c 4 "$tmp/p.png" | tail -c 3)" = PNG ] || fail "panels wrote no PNG"
# accuracy: the data rows as "logits" of 2 classes, labels = the data's own argmax
"$tmp/p" data --data checkerboard --seed 1 -n 2000 --out "$tmp/z.npy" --labels "$tmp/lab.npy" >/dev/null
"$tmp/score" acc "$tmp/z.npy" "$tmp/lab.npy" >"$tmp/a.txt" || fail "acc"
grep -q '^accuracy' "$tmp/a.txt" || fail "acc output: $(cat "$tmp/a.txt")"
# errors: a missing file, mismatched rows
"$tmp/score" dist "$tmp/nope.npy" "$tmp/z.npy" 2>/dev/null && fail "missing file accepted"
"$tmp/score" acc "$tmp/z.npy" "$tmp/z.npy" 2>/dev/null && fail "f32 labels accepted"
exit 0
