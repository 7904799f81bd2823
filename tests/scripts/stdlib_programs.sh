#!/bin/sh
# stdlib_programs.sh: every graph in graphs/, every stdlib test program and the golden
# programs must pass `gradc check` (the docs' ```grad blocks are doc_examples.sh's job).
# Why: the graphs are what users build; a stdlib change that breaks one of them must fail
# here, not in a user's hands. Run by tests/run_all.sh with $GRADC set.
GRADC=${GRADC:-build/gradc}
cd "$(dirname "$0")/../.." || exit 1
fail=0
n=0
for f in graphs/*.grad tests/stdlib/*.grad tests/golden/imm/*.grad; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  if ! out=$("$GRADC" check -I stdlib "$f" 2>&1); then
    echo "FAILED: $f"
    echo "$out" | head -20
    fail=1
  fi
done
[ "$n" -ge 11 ] || { echo "only $n programs found"; fail=1; }
exit $fail
