#!/bin/sh
# bench_torch_golden.sh: the benchmark's PyTorch step must be the specified computation.
# Runs bench/imm_torch.py --check-golden on the golden tensors (37 tensors, 1e-9 in f64)
# and checks that the FMA peak probe builds and reports a positive rate. Skips (exit 0,
# saying so) only the part whose tool is missing: PyTorch or the golden files.
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
fail=0
if [ -d tests/golden/imm ] && "$PY" -c 'import torch' 2>/dev/null; then
  out=$("$PY" bench/imm_torch.py --check-golden tests/golden/imm 2>&1)
  echo "$out" | tail -1
  echo "$out" | grep -q '^golden check: ok (37 tensors' || { echo "$out"; fail=1; }
else
  echo "skipped: torch or tests/golden/imm missing"
fi
tmp=$(mktemp -d)
if cc -O2 -march=native -pthread bench/peak.c -o "$tmp/peak" 2>"$tmp/err"; then
  "$tmp/peak" 0.05 1 | grep -Eq '^threads 1 gflops [1-9][0-9.]* isa ' || { echo "peak: bad output"; fail=1; }
else
  cat "$tmp/err"; fail=1
fi
rm -rf "$tmp"
exit $fail
