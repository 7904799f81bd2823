#!/bin/sh
# Runs every unit suite and every script-driven test; exits non-zero if any failed.
# Each Check suite prints its summary line ("100%: Checks: N, Failures: 0, Errors: 0").
BUILD=${BUILD:-build}
export GRADC="$BUILD/gradc" BUILD
fail=0
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  printf '%s: ' "$(basename "$t")"
  out=$(CK_FORK=yes "$t" 2>&1); rc=$?
  echo "$out" | grep -E '^[0-9]+%: Checks' || echo "(no summary)"
  if [ $rc -ne 0 ]; then echo "$out" | grep -vE '^(Running suite|[0-9]+%: Checks)' | head -40; fail=1; fi
done
for s in tests/scripts/*.sh; do
  [ -f "$s" ] || continue
  printf '%s: ' "$(basename "$s")"
  if out=$(sh "$s" 2>&1); then echo "ok"; else echo "FAILED"; echo "$out" | tail -30; fail=1; fi
done
[ $fail -eq 0 ] && echo "all tests passed" || echo "SOME TESTS FAILED"
exit $fail
