#!/bin/sh
# fuzz_seeds.sh: replays the committed fuzz seeds without clang, so `make test` and
# `make test-asan` cover them too (docs/reliability.md). Every front-end seed
# (tests/fuzz/corpus/fuzz_frontend and fuzz_compile; multi-file seeds are read as one
# file) through `gradc check`; every .npy seed through `gradc run --in`; every
# safetensors seed through `gradc run --params`. Each run must exit 0, or 1 with a
# message on stderr: never a crash, a sanitizer report or another status.
set -u
BUILD=${BUILD:-build}
GRADC=${GRADC:-$BUILD/gradc}
cd "$(dirname "$0")/../.." || exit 1
case "$GRADC" in /*) ;; *) GRADC="$PWD/$GRADC" ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
C=tests/fuzz/corpus
n=0; bad=0
one() { # what command...
  what=$1; shift
  "$@" >/dev/null 2>"$tmp/err"
  rc=$?
  n=$((n + 1))
  if [ $rc -eq 0 ]; then return; fi
  if [ $rc -ne 1 ] || [ ! -s "$tmp/err" ]; then
    echo "FAIL $what: exit status $rc"; head -n 20 "$tmp/err"; bad=1
  fi
}
for f in $C/fuzz_frontend/* $C/fuzz_compile/*; do one "$f" "$GRADC" check "$f"; done
m=tests/bad/files/model.grad
for f in $C/fuzz_npy/*; do one "$f" "$GRADC" run "$m" --in "x=$f" --out "$tmp/o"; done
for f in $C/fuzz_safetensors/*; do
  one "$f" "$GRADC" run "$m" --in x=tests/bad/files/ok_x4.npy --params "$f" --out "$tmp/o"
done
[ $bad -eq 0 ] && echo "fuzz seeds: $n runs ok"
exit $bad
