#!/bin/sh
# stdlib_programs.sh: every ```grad block of docs/stdlib.md and docs/tutorial.md, every
# graph in graphs/ and every stdlib test program must pass `gradc check`.
# Why: the docs promise complete, compilable examples and the graphs are what users
# build; a stdlib change that breaks one of them must fail here, not in a user's hands.
# Run by tests/run_all.sh with $GRADC set (default build/gradc), from the repository root.
GRADC=${GRADC:-build/gradc}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for doc in docs/stdlib.md docs/tutorial.md; do
  # split the ```grad blocks into numbered files
  awk -v dir="$tmp" -v base="$(basename "$doc" .md)" '
    /^```grad[ \t]*$/ { inb = 1; k++; f = sprintf("%s/%s_%02d.grad", dir, base, k); next }
    /^```/ { inb = 0; next }
    inb { print > f }' "$doc"
done
for f in "$tmp"/*.grad graphs/*.grad tests/stdlib/*.grad tests/golden/imm/*.grad; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  if ! out=$("$GRADC" check -I stdlib "$f" 2>&1); then
    echo "FAILED: $f"
    case "$f" in "$tmp"/*) cat -n "$f" | head -60 ;; esac
    echo "$out" | head -20
    fail=1
  fi
done
[ "$n" -ge 10 ] || { echo "only $n programs found"; fail=1; }
exit $fail
