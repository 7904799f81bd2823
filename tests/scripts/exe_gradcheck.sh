#!/bin/sh
# `prog gradcheck` in a built executable: gradc build adds f64 entries (loss_grad_f64,
# loss_held_f64, loss_frozen_f64), so the check runs in f64 with the
# stop_grad target of the IMM loss held fixed, and passes on a correct gradient at the
# initial and at trained parameters; a build with --no-f64-check falls back to f32.
set -eu
G=${GRADC:-build/gradc}
d=$(mktemp -d /tmp/gradc-gc.XXXXXX)
trap 'rm -rf "$d"' EXIT
case "${BUILD:-build}" in *asan*) echo "skipped under ASan: executables link the plain runtime"; exit 0 ;; esac
$G build graphs/imm_2d.grad -o "$d/imm" -D hidden=16 -D depth=1 -D B=32 -O0
"$d/imm" info | grep -q "loss_frozen_f64"
"$d/imm" gradcheck > "$d/out"
grep -q "^gradient check (f64" "$d/out"
grep -q "worst relative error .*: ok" "$d/out"
"$d/imm" train --steps 50 --quiet --ckpt "$d/c.safetensors" > /dev/null
"$d/imm" gradcheck --ckpt "$d/c.safetensors" | grep -q "worst relative error .*: ok"
$G build graphs/imm_2d.grad -o "$d/imm32" -D hidden=16 -D depth=1 -D B=32 -O0 --no-f64-check
if "$d/imm32" info | grep -q loss_grad_f64; then exit 1; fi
"$d/imm32" gradcheck | grep -q "^gradient check (f32"
