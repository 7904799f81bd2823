#!/bin/sh
# bench/run.sh: `make bench`. Builds the FMA peak probe, then runs bench/run.py, which
# runs the PyTorch and gradc sides of every configuration interleaved and prints the
# table (see docs/performance.md). Environment: BENCH_QUICK=1 for a short development
# run; BUILD (default build); PYTHON (default /usr/bin/python3, Debian's python3-torch).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
export BUILD PYTHON
mkdir -p "$BUILD/bench"
# The PyTorch side is Debian's python3-torch (the issue's baseline); installed if missing.
sh tools/deps.sh python3-torch python3-numpy || echo "bench: could not install python3-torch" >&2
CC=${CC:-cc}
$CC -O2 -march=native -pthread bench/peak.c -o "$BUILD/bench/peak"
if grep -qw avx512f /proc/cpuinfo; then
  $CC -O2 -march=native -mno-avx512f -pthread bench/peak.c -o "$BUILD/bench/peak-avx2"
else
  rm -f "$BUILD/bench/peak-avx2"
fi
# The in-process JIT harness (the gradc side until `gradc build` exists; also the
# per-stage compile times). Linked like the unit tests: libgradc, libgradrt, LLVM 19.
rm -f "$BUILD/bench/gradc_jit_bench"
if [ -f "$BUILD/libgradc.a" ] && [ -f "$BUILD/libgradrt.a" ] && [ -f compiler/codegen.h ]; then
  LLVM_CONFIG=${LLVM_CONFIG:-llvm-config-19}
  LLVMC=$($LLVM_CONFIG --cflags | sed -e 's/-O[0-9s]//g' -e 's/-DNDEBUG//g' -e 's/-std=[^ ]*//g')
  if ! $CC -std=gnu11 -O2 -Wall -Wextra -Icompiler -Iruntime -D_GNU_SOURCE $LLVMC \
      bench/gradc_jit_bench.c -o "$BUILD/bench/gradc_jit_bench" "$BUILD/libgradc.a" "$BUILD/libgradrt.a" \
      $($LLVM_CONFIG --ldflags --libs) -lffi -ldl -lopenblas -lmvec -lm -lpthread -lz \
      2>"$BUILD/bench/gradc_jit_bench.err"; then
    echo "bench: the JIT harness did not build (see $BUILD/bench/gradc_jit_bench.err)" >&2
    rm -f "$BUILD/bench/gradc_jit_bench"
  fi
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "bench: $PYTHON cannot import torch; install python3-torch (apt-get install -y python3-torch)" >&2
fi
exec "$PYTHON" bench/run.py
