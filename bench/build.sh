#!/bin/sh
# bench/build.sh: builds bench/kernels.c (generated-kernel GFLOP/s next to an FMA peak)
# into $BUILD/bench/kernels. Run `make` first (needs build/libgradc.a, libgradrt.a).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LLVM_CONFIG=${LLVM_CONFIG:-llvm-config-19}
mkdir -p "$BUILD/bench"
LLVMC=$($LLVM_CONFIG --cflags | sed -e 's/-O[0-9s]//g' -e 's/-DNDEBUG//g' -e 's/-std=[^ ]*//g')
${CC:-cc} -std=gnu11 -O2 -march=native -Wall -Wextra -Icompiler -Iruntime -D_GNU_SOURCE $LLVMC \
  bench/kernels.c -o "$BUILD/bench/kernels" "$BUILD/libgradc.a" "$BUILD/libgradrt.a" \
  $($LLVM_CONFIG --ldflags --libs) -lffi -ldl -lopenblas -lmvec -lm -lpthread -lz
echo "built $BUILD/bench/kernels"
