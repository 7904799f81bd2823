#!/bin/sh
# imm_graphs_e2e.sh: the IMM and flow-matching graphs through the real user path:
# `gradc build` (AOT, runtime linked in), `./prog train`, `./prog eval --steps 1,2`.
# Small sizes (-D) keep it to a few seconds; it checks that every stage succeeds and that
# the reported distances are finite numbers, not the sample quality (test_graphs_imm's
# learning test and the golden tests cover correctness).
GRADC=${GRADC:-build/gradc}
cd "$(dirname "$0")/../.." || exit 1
# `gradc build` links libgradrt.a from its own build folder with plain `cc`; a sanitized
# runtime (make asan) then lacks the sanitizer libraries at link time, so skip there.
case "${BUILD:-build}" in *asan*) echo "skipped under $BUILD (gradc build cannot link a sanitized runtime)"; exit 0 ;; esac
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
for g in imm_2d fm_2d; do
  small="-D B=64 -D NS=64 -D hidden=32 -D depth=2"
  if ! "$GRADC" build "graphs/$g.grad" $small -o "$tmp/$g" >"$tmp/build.log" 2>&1; then
    echo "FAILED: gradc build graphs/$g.grad"; cat "$tmp/build.log"; fail=1; continue
  fi
  if ! (cd "$tmp" && "./$g" train --steps 30 --threads 1 --quiet) >"$tmp/train.log" 2>&1; then
    echo "FAILED: $g train"; tail -5 "$tmp/train.log"; fail=1; continue
  fi
  if ! (cd "$tmp" && "./$g" eval --steps 1,2 -n 256 --threads 1) >"$tmp/eval.log" 2>&1; then
    echo "FAILED: $g eval"; tail -5 "$tmp/eval.log"; fail=1; continue
  fi
  # rows "1 ..." and "2 ...": every value a finite number
  rows=$(awk '$1 == "1" || $1 == "2" { n++; for (i = 2; i <= NF; i++) if ($i !~ /^[0-9.e+-]+$/) bad = 1 }
              END { print (bad ? -1 : n + 0) }' "$tmp/eval.log")
  if [ "$rows" != 2 ]; then echo "FAILED: $g eval output"; cat "$tmp/eval.log"; fail=1; fi
done
exit $fail
