#!/bin/sh
# Every ```grad block in docs/*.md is a complete program: `gradc check` must accept it.
# Blocks are numbered per file in the failure messages (docs/language.md block 3 ...).
# The folder of the doc's examples is on the import path (-I stdlib is added by gradc).
GRADC=${GRADC:-build/gradc}
cd "$(dirname "$0")/../.." || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
for doc in docs/*.md; do
  [ -f "$doc" ] || continue
  awk -v dir="$tmp" -v base="$(basename "$doc" .md)" '
    /^```grad[ \t]*$/ { k++; f = sprintf("%s/%s_%03d.grad", dir, base, k); inb = 1; next }
    /^```/ { inb = 0; next }
    inb { print > f }
  ' "$doc"
done
for f in "$tmp"/*.grad; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  if ! out=$("$GRADC" check "$f" 2>&1); then
    echo "FAIL $(basename "$f" .grad | sed 's/_\([0-9]*\)$/.md block \1/'):"; echo "$out" | head -20
    fail=1
  fi
done
[ $fail -eq 0 ] && echo "doc examples: $n blocks ok"
exit $fail
