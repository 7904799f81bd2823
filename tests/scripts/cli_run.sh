#!/bin/sh
# `gradc run` end to end: a small MLP evaluated on .npy inputs with parameters from a
# safetensors checkpoint, by the JIT and by the interpreter, in f64, compared with the
# same MLP computed independently by NumPy (1e-12), plus the derived gradient entry and
# the errors for a missing or mis-shaped input.
set -eu
G=${GRADC:-build/gradc}
PY=/usr/bin/python3
d=$(mktemp -d /tmp/gradc-cli.XXXXXX)
trap 'rm -rf "$d"' EXIT
$PY - "$d" <<'PYEOF'
import json, struct, sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
x = rng.normal(size=(5, 3)); y = rng.normal(size=(5, 2))
P = {"net.linear.w": rng.normal(size=(3, 4)), "net.linear.b": rng.normal(size=(4,)),
     "net.linear_1.w": rng.normal(size=(4, 2)), "net.linear_1.b": rng.normal(size=(2,))}
np.save(f"{d}/x.npy", x); np.save(f"{d}/y.npy", y)
# a safetensors file by hand: u64 header length, JSON header, raw little-endian data
hdr, blobs, off = {}, [], 0
for k, v in P.items():
    b = np.ascontiguousarray(v, dtype="<f8").tobytes()
    hdr[k] = {"dtype": "F64", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
open(f"{d}/p.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
h1 = np.tanh(x @ P["net.linear.w"] + P["net.linear.b"])
pred = h1 @ P["net.linear_1.w"] + P["net.linear_1.b"]
np.save(f"{d}/want_pred.npy", pred)
np.save(f"{d}/want_loss.npy", np.array(np.mean((pred - y) ** 2)))
# gradient of the loss with respect to the last bias, by hand
np.save(f"{d}/want_gb.npy", (2 * (pred - y) / pred.size).sum(0))
PYEOF
$G run --f64 tests/cli/mlp.grad --entry predict --in x="$d/x.npy" --params "$d/p.safetensors" --out "$d/jit"
$G run --f64 tests/cli/mlp.grad --entry predict --in x="$d/x.npy" --params "$d/p.safetensors" --out "$d/int" --interp
$G run --f64 tests/cli/mlp.grad --entry loss_grad --in x="$d/x.npy" --in y="$d/y.npy" --params "$d/p.safetensors" --out "$d/grad"
$PY - "$d" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
def close(a, b, what):
    a, b = np.load(a), np.load(b)
    err = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
    assert a.shape == b.shape and err < 1e-12, f"{what}: rel err {err}"
close(f"{d}/jit/out.npy", f"{d}/want_pred.npy", "jit predict")
close(f"{d}/int/out.npy", f"{d}/want_pred.npy", "interp predict")
close(f"{d}/grad/out.npy", f"{d}/want_loss.npy", "loss")
close(f"{d}/grad/grad_net.linear_1.b.npy", f"{d}/want_gb.npy", "grad of the last bias")
PYEOF
# errors: a missing input and an input of the wrong shape, exit status 1 and a message
if $G run tests/cli/mlp.grad --entry predict --out "$d/e" 2>"$d/err"; then exit 1; fi
grep -q "needs input 'x'" "$d/err"
if $G run --f64 tests/cli/mlp.grad --entry loss --in x="$d/y.npy" --in y="$d/y.npy" --out "$d/e" 2>"$d/err"; then exit 1; fi
grep -q "input 'x' must be f64\[5, 3\], the file holds f64\[5, 2\]" "$d/err"
