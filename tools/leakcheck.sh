#!/bin/sh
# tools/leakcheck.sh [BUILD]: the compiler library under valgrind (docs/reliability.md).
# Runs the Check suites that drive libgradc (front end, interpreter, autodiff, gradcheck,
# stdlib, npy) in one process each (CK_FORK=no, so valgrind sees every test), then
# `gradc check` on every tests/bad/*.grad and every graphs/*.grad and stdlib/*.grad.
# Fails on any invalid read/write, use of uninitialized memory, or a definite/indirect
# leak. Slow (a few minutes): not part of `make test`; run it with `make leakcheck`.
BUILD=${1:-${BUILD:-build}}
cd "$(dirname "$0")/.." || exit 1
command -v valgrind >/dev/null 2>&1 || { echo "leakcheck: valgrind is not installed"; exit 1; }
VG="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=9"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail=0; n=0
for t in test_frontend test_interp test_autodiff test_gradcheck test_stdlib test_npy; do
  [ -x "$BUILD/tests/$t" ] || { echo "leakcheck: no $BUILD/tests/$t (make unit-tests)"; fail=1; continue; }
  CK_FORK=no $VG "$BUILD/tests/$t" >"$log" 2>&1
  rc=$?; n=$((n + 1))
  if [ $rc -ne 0 ]; then echo "leakcheck FAIL $t (exit $rc)"; grep -E '==[0-9]+==' "$log" | head -30; fail=1; fi
done
for f in tests/bad/*.grad graphs/*.grad stdlib/*.grad; do
  args=$(head -n 1 "$f" | sed -n 's/^# args: //p')
  # shellcheck disable=SC2086
  $VG "$BUILD/gradc" check $args "$f" >"$log" 2>&1
  rc=$?; n=$((n + 1))
  if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then echo "leakcheck FAIL gradc check $f (exit $rc)"; grep -E '==[0-9]+==' "$log" | head -30; fail=1; fi
done
[ $fail -eq 0 ] && echo "leakcheck: $n runs under valgrind, no errors, no leaks"
exit $fail
