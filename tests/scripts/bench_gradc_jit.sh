#!/bin/sh
# bench_gradc_jit.sh: the benchmark graphs compile and train through gradc's JIT.
# Builds bench/gradc_jit_bench.c against $BUILD/libgradc.a and runs a few IMM and FM
# training steps and one sampler call at a tiny size (B=8, H=16); fails unless each run
# prints a finite loss and a positive rate. Speed is never asserted (shared machines).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
[ -f "$BUILD/libgradc.a" ] && [ -f "$BUILD/libgradrt.a" ] || { echo "no $BUILD/libgradc.a"; exit 1; }
SANF=
case "$BUILD" in *asan*) SANF="-fsanitize=address,undefined" ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
LLVMC=$(llvm-config-19 --cflags | sed -e 's/-O[0-9s]//g' -e 's/-DNDEBUG//g' -e 's/-std=[^ ]*//g')
cc -std=gnu11 -O1 -Wall -Wextra -Werror $SANF -Icompiler -Iruntime -D_GNU_SOURCE $LLVMC \
  bench/gradc_jit_bench.c -o "$tmp/jb" "$BUILD/libgradc.a" "$BUILD/libgradrt.a" \
  $(llvm-config-19 --ldflags --libs) -lffi -ldl -lopenblas -lmvec -lm -lpthread -lz || exit 1
"$PY" -c "
import numpy as np
np.save('$tmp/d2.npy', np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32))" || exit 1
fail=0
check() { # $1: what, rest: args
  what=$1; shift
  out=$(OPENBLAS_NUM_THREADS=1 "$tmp/jb" "$@" -I stdlib -D B=8 -D D=2 -D H=16 --data "$tmp/d2.npy" \
        --steps 2 --blocks 1 --warmup 1 2>&1)
  echo "$out" | "$PY" -c "
import json, math, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert r['steps_per_s'] > 0 and math.isfinite(r['loss']), r
assert r['compile_cpu_s']['total'] > 0, r
" 2>/dev/null || { echo "$what: $out"; fail=1; }
}
check "imm train" bench/imm_bench.grad
check "fm train" bench/fm_bench.grad
check "imm sample" bench/imm_bench.grad --mode sample --sample-steps 2
# the AOT executable the suite measures memory with (not under sanitizers: the runtime
# library there needs the sanitizer runtime at link time)
if [ -z "$SANF" ]; then
  if "$tmp/jb" bench/imm_bench.grad -I stdlib -D B=8 -D D=2 -D H=16 --emit-exe "$tmp/exe" \
       --rt-dir "$BUILD" >"$tmp/o" 2>&1; then
    OPENBLAS_NUM_THREADS=1 "$tmp/exe" train --steps 2 --data "$tmp/d2.npy" --ckpt "$tmp/ck.safetensors" \
      --ema 0 --threads 1 --quiet >"$tmp/o" 2>&1 && [ -s "$tmp/ck.safetensors" ] \
      || { echo "aot train:"; cat "$tmp/o"; fail=1; }
  else
    echo "aot build:"; cat "$tmp/o"; fail=1
  fi
fi
# a bad file must fail with a diagnostic, not a crash
printf 'entry loss(x: f32[8, 2]) -> f32 {\n  return mean(x @ x)\n}\n' > "$tmp/bad.grad"
OPENBLAS_NUM_THREADS=1 "$tmp/jb" "$tmp/bad.grad" --data "$tmp/d2.npy" >"$tmp/o" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "error" "$tmp/o" || { echo "bad.grad: rc=$rc"; cat "$tmp/o"; fail=1; }
exit $fail
