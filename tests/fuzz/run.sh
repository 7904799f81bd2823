#!/bin/sh
# tests/fuzz/run.sh SECONDS TARGET...: runs each libFuzzer target (build-fuzz/TARGET) for
# SECONDS from its seeds (tests/fuzz/corpus/TARGET, never written) and its own growing
# corpus (build-fuzz/corpus/TARGET). One target at a time (the CI machine has 2 cores).
# Prints executions and coverage per target; exits 1 if any target found a crash, a hang
# (-timeout), a leak or a sanitizer report; the reproducer is in build-fuzz/artifacts/.
# Reproduce one: build-fuzz/TARGET build-fuzz/artifacts/TARGET-crash-...
# FUZZ_SEED=N fixes libFuzzer's random seed (make fuzz sets 1, so a CI run from a clean
# checkout explores the same inputs every time); FUZZ_SEED=0 draws a fresh seed per run.
secs=${1:-20}; shift
cd "$(dirname "$0")/../.." || exit 1
mkdir -p build-fuzz/artifacts build-fuzz/logs
fail=0
for t in "$@"; do
  bin=build-fuzz/$t
  [ -x "$bin" ] || { echo "fuzz: $bin is not built (make fuzz-build)"; fail=1; continue; }
  mkdir -p "build-fuzz/corpus/$t"
  dict=""
  [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
  log=build-fuzz/logs/$t.log
  # shellcheck disable=SC2086
  "$bin" -seed="${FUZZ_SEED:-0}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-" $dict \
    "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    echo "fuzz $t: ${execs:-?} executions in ${secs}s, $cov, no crashes"
  else
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; log: $log"
    grep -E 'ERROR|SUMMARY|Test unit written|fuzz:' "$log" | head -n 10
    fail=1
  fi
done
exit $fail
