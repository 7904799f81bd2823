#!/bin/sh
# tests/bad/run.sh [--update] GRADC: the bad-program corpus.
#
# Every tests/bad/NAME.grad must make `gradc check` fail (exit status 1) with exactly the
# stderr stored in tests/bad/NAME.expected. A first line "# args: ..." gives extra
# options for that case (e.g. -D B=x, -I tests/bad/imports). Helper modules that are not
# cases themselves live in tests/bad/imports/. Run from anywhere: paths in messages are
# relative to the repository root, where the script runs gradc.
# --update rewrites the .expected files (review the diff before committing).
update=0
if [ "$1" = "--update" ]; then update=1; shift; fi
GRADC=${1:-${GRADC:-build/gradc}}
cd "$(dirname "$0")/../.." || exit 1
case "$GRADC" in /*) ;; *) GRADC="$PWD/$GRADC" ;; esac
[ -x "$GRADC" ] || { echo "run.sh: no gradc at $GRADC" >&2; exit 1; }
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
fail=0; n=0
for f in tests/bad/*.grad; do
  name=${f%.grad}
  args=$(head -n 1 "$f" | sed -n 's/^# args: //p')
  # shellcheck disable=SC2086
  "$GRADC" check $args "$f" 2>"$tmp" >/dev/null
  rc=$?
  n=$((n + 1))
  if [ $rc -ne 1 ]; then
    echo "FAIL $f: exit status $rc, expected 1"; cat "$tmp"; fail=1; continue
  fi
  if [ $update -eq 1 ]; then cp "$tmp" "$name.expected"; continue; fi
  if [ ! -f "$name.expected" ]; then echo "FAIL $f: no $name.expected (run with --update)"; fail=1; continue; fi
  if ! cmp -s "$tmp" "$name.expected"; then
    echo "FAIL $f: stderr differs from $name.expected"; diff "$name.expected" "$tmp" | head -20; fail=1
  fi
done
[ $fail -eq 0 ] && echo "bad corpus: $n cases ok"
exit $fail
