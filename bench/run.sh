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
CC=${CC:-cc}
$CC -O2 -march=native -pthread bench/peak.c -o "$BUILD/bench/peak"
if grep -qw avx512f /proc/cpuinfo; then
  $CC -O2 -march=native -mno-avx512f -pthread bench/peak.c -o "$BUILD/bench/peak-avx2"
else
  rm -f "$BUILD/bench/peak-avx2"
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "bench: $PYTHON cannot import torch; install python3-torch (apt-get install -y python3-torch)" >&2
fi
exec "$PYTHON" bench/run.py
