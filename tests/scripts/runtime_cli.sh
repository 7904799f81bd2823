#!/bin/sh
# runtime_cli.sh: gr_main as a real process. Links the hand-written fake module
# (tests/unit/helpers/fake_module.c) with $BUILD/libgradrt.a into a tiny executable and
# checks exit codes, stdout/stderr, the files it writes (safetensors parsed by Python's
# own json/struct, eval --json by Python's json), and a real SIGINT during training.
set -u
BUILD=${BUILD:-build}
CC=${CC:-cc}
SAN=""
case "$BUILD" in *asan*) SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat > "$tmp/main.c" <<'EOC'
#include "fake_module.h"
int main(int argc, char **argv) {
  GrModuleInfo m;
  GrEntryInfo en[8];
  fake_module_make(&m, en, FAKE_PLAIN);
  return gr_main(&m, argc, argv);
}
EOC
$CC -std=gnu11 $SAN -Iruntime -Itests/unit/helpers -o "$tmp/prog" "$tmp/main.c" \
  tests/unit/helpers/fake_module.c "$BUILD/libgradrt.a" -lopenblas -lm -lpthread -lz ||
  fail "cannot link the test executable against $BUILD/libgradrt.a"
P="$tmp/prog"

"$P" >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] || fail "no command should exit 2"
grep -q "usage:" "$tmp/err" || fail "no usage on stderr"
"$P" --help | grep -q "gradcheck" || fail "--help lists no gradcheck"

"$P" train --steps 30 --every 10 --ckpt "$tmp/a.safetensors" --log "$tmp/l.csv" >"$tmp/out" 2>"$tmp/err" ||
  fail "train failed: $(cat "$tmp/err")"
grep -q "step 30/30" "$tmp/out" || fail "no plain progress lines: $(cat "$tmp/out")"
[ "$(wc -l <"$tmp/l.csv")" -eq 4 ] || fail "log should have a header and 3 rows"

"$P" train --batch 8 2>"$tmp/err"; [ $? -eq 1 ] || fail "--batch should exit 1"
grep -q "batch size is fixed at compile time (B=64): rebuild with gradc build -D B=..." "$tmp/err" ||
  fail "wrong --batch message: $(cat "$tmp/err")"

"$P" sample --ckpt "$tmp/a.safetensors" --steps 2 -n 50 --out "$tmp/s.npy" --png "$tmp/s.png" >/dev/null ||
  fail "sample failed"
[ -s "$tmp/s.npy" ] && [ -s "$tmp/s.png" ] || fail "sample wrote no files"

"$P" eval --ckpt "$tmp/a.safetensors" --steps 1,2 -n 64 --json >"$tmp/eval.json" || fail "eval failed"
python3 - "$tmp/eval.json" "$tmp/a.safetensors" <<'EOP' || fail "Python could not read eval json or the checkpoint"
import json, struct, sys, math
ev = json.load(open(sys.argv[1]))
assert [r["steps"] for r in ev["rows"]] == ["data", "1", "2"], ev
assert all(r["energy"] >= 0 and len(r["mmd"]) == 4 and r["fd"] >= 0 for r in ev["rows"])
b = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
hdr = json.loads(b[8:8 + n])
data = b[8 + n:]
meta = hdr.pop("__metadata__")
assert meta["format"] == "gradc-ckpt" and meta["step"] == "30", meta
spans = sorted(v["data_offsets"] for v in hdr.values())
assert spans[0][0] == 0 and spans[-1][1] == len(data)
assert all(a[1] == c[0] for a, c in zip(spans, spans[1:]))  # contiguous, as safetensors requires
w = hdr["net.w"]
assert w["dtype"] == "F32" and w["shape"] == [2, 2]
vals = struct.unpack("<4f", data[w["data_offsets"][0]:w["data_offsets"][1]])
assert all(math.isfinite(v) for v in vals)
assert set(hdr) == {"net.w", "net.b", "ema/net.w", "ema/net.b", "adam_m/net.w", "adam_m/net.b",
                    "adam_v/net.w", "adam_v/net.b"}, sorted(hdr)
EOP

# NumPy (when some python3 on the machine has it): the documented 10-line reader loads the
# checkpoint, and np.load reads the samples
for py in python3 /usr/bin/python3; do
  "$py" -c "import numpy" 2>/dev/null || continue
  "$py" - "$tmp/a.safetensors" "$tmp/s.npy" <<'EOP' || fail "NumPy could not read the checkpoint or samples"
import json, struct, sys
import numpy as np
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
hdr = json.loads(b[8:8 + n])
hdr.pop("__metadata__")
dt = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}
t = {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                      dtype=dt[v["dtype"]]).reshape(v["shape"]) for k, v in hdr.items()}
assert t["net.w"].shape == (2, 2) and np.isfinite(t["net.w"]).all()
assert not np.array_equal(t["net.w"], t["ema/net.w"])  # EMA lags the weights
s = np.load(sys.argv[2])
assert s.shape == (50, 2) and s.dtype == np.float32 and np.isfinite(s).all()
EOP
  break
done

"$P" gradcheck >/dev/null || fail "gradcheck failed"
"$P" info | grep -q "total 6 values" || fail "info shows no parameter count"

# a real Ctrl-C: the run stops after the current step with a checkpoint, exit 130
"$P" train --steps 100000000 --ckpt-every 100000000 --ckpt "$tmp/int.safetensors" --quiet 2>"$tmp/err" &
pid=$!
sleep 1
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] || fail "SIGINT should exit 130, got $rc"
grep -q "interrupted at step" "$tmp/err" || fail "no interrupt message"
[ -s "$tmp/int.safetensors" ] || fail "no checkpoint after SIGINT"
exit 0
