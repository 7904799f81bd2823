#!/bin/sh
# crash_safety.sh: training survives SIGKILL and failed checkpoint writes.
#
# Builds tests/crash/big_module.c (the fake denoiser plus a 256K-value parameter, so a
# checkpoint is 4 MiB and takes milliseconds to write) against $BUILD/libgradrt.a.
# 1. Reference: `train --steps 60` uninterrupted (a checkpoint every 2 steps).
# 2. TRIALS (default 12) trials: start the same training, SIGKILL it at a random moment
#    (odd trials: as soon as a checkpoint temp file appears, i.e. during a write; even
#    trials: after a random 10-400 ms), check that the checkpoint on disk is either absent
#    or a complete, valid safetensors file, kill the resumed run once more, then
#    `--resume` to the end; the final checkpoint must equal the reference byte for byte,
#    and the temp file of a killed write must be gone (training removes it at start).
# 3. A failed write (disk full, simulated with `ulimit -f`: the write fails with EFBIG
#    once the file passes the limit, SIGXFSZ ignored; works as root, unlike chmod) leaves
#    the previous checkpoint intact, removes its temp file and reports the error (exit 1).
# 4. A checkpoint in a folder that does not exist fails before training, exit 1.
set -u
BUILD=${BUILD:-build}
CC=${CC:-cc}
TRIALS=${TRIALS:-12}
SAN=""
case "$BUILD" in *asan*) SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

$CC -std=gnu11 $SAN -O1 -Iruntime -Itests/unit/helpers -o "$tmp/prog" tests/crash/big_module.c \
  tests/unit/helpers/fake_module.c "$BUILD/libgradrt.a" -lopenblas -lm -lpthread -lz ||
  fail "cannot link tests/crash/big_module.c against $BUILD/libgradrt.a"
P="$tmp/prog"
ARGS="--steps 60 --ckpt-every 2 --threads 1 --quiet"

# A complete checkpoint: header length + JSON + data, every tensor inside the data.
valid() {
  python3 - "$1" <<'EOP'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
assert 8 + n + end == len(b), "size mismatch"
assert h["__metadata__"]["format"] == "gradc-ckpt"
EOP
}
rnd() { od -An -N2 -tu2 /dev/urandom | tr -d ' '; }

mkdir "$tmp/ref"
# shellcheck disable=SC2086
"$P" train $ARGS --ckpt "$tmp/ref/c.safetensors" >/dev/null || fail "reference run failed"

# Starts a run in the background (fresh, or --resume when a checkpoint exists) and kills
# it with SIGKILL: mode "write" waits for a temp file (a write in progress), else sleeps.
kill_run() { # dir mode
  ck="$1/c.safetensors"
  res=""; [ -f "$ck" ] && res="--resume"
  # shellcheck disable=SC2086
  "$P" train $ARGS $res --ckpt "$ck" >/dev/null 2>"$1/err" &
  pid=$!
  if [ "$2" = write ]; then
    i=0
    while [ $i -lt 20000 ] && kill -0 $pid 2>/dev/null && ! ls "$1" | grep -q '\.tmp\.'; do
      i=$((i + 1))
    done
  else
    sleep "0.$(printf '%03d' $((10 + $(rnd) % 390)))"
  fi
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  if ls "$1" | grep -q '\.tmp\.'; then mid=$((mid + 1)); fi
  if [ -f "$ck" ]; then valid "$ck" || fail "trial $t: checkpoint left invalid after SIGKILL"; fi
  kills=$((kills + 1))
}

mid=0; kills=0; t=1
while [ $t -le "$TRIALS" ]; do
  d="$tmp/t$t"; mkdir "$d"
  if [ $((t % 2)) -eq 1 ]; then kill_run "$d" write; else kill_run "$d" sleep; fi
  kill_run "$d" sleep
  res=""; [ -f "$d/c.safetensors" ] && res="--resume"
  # shellcheck disable=SC2086
  "$P" train $ARGS $res --ckpt "$d/c.safetensors" >/dev/null 2>"$d/err" ||
    fail "trial $t: resumed run failed: $(cat "$d/err")"
  cmp -s "$tmp/ref/c.safetensors" "$d/c.safetensors" ||
    fail "trial $t: final checkpoint differs from the uninterrupted run"
  ! ls "$d" | grep -q '\.tmp\.' || fail "trial $t: a temp file of a killed write is left after --resume"
  t=$((t + 1))
done
[ $mid -ge 1 ] || fail "no SIGKILL landed during a checkpoint write ($kills kills)"
echo "crash safety: $TRIALS trials, $kills SIGKILLs ($mid during a checkpoint write), all final checkpoints equal"

# 3. disk full during a checkpoint write
w="$tmp/full"; mkdir "$w"
# shellcheck disable=SC2086
"$P" train --steps 10 --ckpt-every 10 --threads 1 --quiet --ckpt "$w/c.safetensors" >/dev/null ||
  fail "cannot make the first checkpoint"
cp "$w/c.safetensors" "$tmp/before"
( trap '' XFSZ; ulimit -f 64; exec "$P" train --steps 20 --ckpt-every 10 --threads 1 --quiet --resume \
    --ckpt "$w/c.safetensors" ) >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] || fail "a failed checkpoint write should exit 1, got $rc: $(cat "$tmp/err")"
grep -q "^error: cannot write checkpoint $w/c.safetensors: File too large" "$tmp/err" ||
  fail "wrong message for a failed write: $(cat "$tmp/err")"
cmp -s "$tmp/before" "$w/c.safetensors" || fail "a failed write changed the previous checkpoint"
! ls "$w" | grep -q '\.tmp\.' || fail "a failed write left its temp file"

# 4. a folder that does not exist: refused before training starts
"$P" train --steps 10 --quiet --ckpt "$tmp/nope/c.safetensors" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] || fail "an unwritable checkpoint path should exit 1, got $rc"
grep -q "^error: cannot write $tmp/nope/c.safetensors: No such file or directory" "$tmp/err" ||
  fail "wrong message for an unwritable path: $(cat "$tmp/err")"
exit 0
