#!/bin/sh
# bad_files.sh [--update]: the malformed-file corpus (tests/bad/files/).
#
# Each file is fed to a real training executable (the fake denoiser of
# tests/unit/helpers/fake_module.c linked with $BUILD/libgradrt.a, input f32[64, 2]):
#   npy_* idx_* *-images-*  `prog train --steps 2 --data FILE`   (data readers)
#   ckpt_*                  `prog train --resume --ckpt FILE`     (checkpoint loader)
#   eval_ckpt_* (the same ckpt_ files through `prog eval --ckpt FILE`, listed in EVAL)
# and through gradc itself (the npy reader of runtime/npy.c and the --params loader):
#   run_npy_*      `gradc run model.grad --in x=FILE`
#   params_ckpt_*  `gradc run model.grad --in x=ok_x4.npy --params FILE` (listed in PARAMS:
#                  gradc run needs only the parameters, so a checkpoint with another
#                  graph hash but the same parameters loads, correctly)
# and must make it exit with status 1 and exactly the stderr in tests/bad/files/NAME.expected
# (one `error:` line naming the file and what is wrong). Files are copied into a scratch
# folder and run there, so messages show bare file names and nothing in the repository is
# ever written. make_files.py documents how each file was made; ckpt_foreign and ckpt_sgd
# are real checkpoints from another graph / another optimizer (made with --update).
set -u
update=0
if [ "${1:-}" = "--update" ]; then update=1; fi
BUILD=${BUILD:-build}
GRADC=${GRADC:-$BUILD/gradc}
CC=${CC:-cc}
SAN=""
case "$BUILD" in *asan*) SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" ;; esac
cd "$(dirname "$0")/../.." || exit 1
case "$GRADC" in /*) ;; *) GRADC="$PWD/$GRADC" ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cat > "$tmp/main.c" <<'EOC'
#include <stdlib.h>
#include <string.h>
#include "fake_module.h"
int main(int argc, char **argv) {
  GrModuleInfo m;
  GrEntryInfo en[8];
  const char *v = getenv("FAKE_VARIANT");
  fake_module_make(&m, en, v && !strcmp(v, "foreign") ? FAKE_FOREIGN : FAKE_PLAIN);
  return gr_main(&m, argc, argv);
}
EOC
$CC -std=gnu11 $SAN -Iruntime -Itests/unit/helpers -o "$tmp/prog" "$tmp/main.c" \
  tests/unit/helpers/fake_module.c "$BUILD/libgradrt.a" -lopenblas -lm -lpthread -lz ||
  fail "cannot link the test executable against $BUILD/libgradrt.a"
P="$tmp/prog"
F=tests/bad/files
if [ $update -eq 1 ]; then
  (cd "$tmp" && FAKE_VARIANT=foreign "$P" train --steps 4 --quiet --ckpt ckpt_foreign.safetensors &&
   "$P" train --steps 4 --quiet --optimizer sgd --ckpt ckpt_sgd.safetensors) >/dev/null ||
    fail "cannot make the foreign / sgd checkpoints"
  cp "$tmp/ckpt_foreign.safetensors" "$tmp/ckpt_sgd.safetensors" "$F/"
fi
EVAL="ckpt_foreign.safetensors ckpt_truncated.safetensors ckpt_wrong_shape.safetensors ckpt_other_graph.safetensors"
PARAMS="ckpt_bad_json ckpt_binary_junk ckpt_byte_count ckpt_empty ckpt_header_len_past_end
  ckpt_header_past_end ckpt_missing_tensor ckpt_offsets_outside ckpt_truncated ckpt_wrong_dtype
  ckpt_wrong_shape ckpt_other_graph"
mkdir "$tmp/run"
n=0; bad=0
check() { # name expected-file command...
  name=$1; exp=$2; shift 2
  (cd "$tmp/run" && "$@") >/dev/null 2>"$tmp/err"
  rc=$?
  n=$((n + 1))
  if [ $rc -ne 1 ]; then echo "FAIL $name: exit status $rc, expected 1"; cat "$tmp/err"; bad=1; return; fi
  if [ $update -eq 1 ]; then cp "$tmp/err" "$exp"; return; fi
  [ -f "$exp" ] || { echo "FAIL $name: no $exp (run with --update)"; bad=1; return; }
  cmp -s "$tmp/err" "$exp" || { echo "FAIL $name: stderr differs from $exp"; diff "$exp" "$tmp/err" | head; bad=1; }
}
for f in "$F"/*; do
  b=$(basename "$f")
  case "$b" in *.expected|*.py|*.grad|ok_*) continue ;; esac
  rm -rf "$tmp/run"/*; cp "$F"/* "$tmp/run/"
  case "$b" in
    ckpt_*) check "$b" "$F/$b.expected" "$P" train --resume --steps 20 --quiet --ckpt "$b" ;;
    *-labels-*) continue ;;
    *) check "$b" "$F/$b.expected" "$P" train --steps 2 --quiet --ckpt out.safetensors --data "$b"
       [ ! -e "$tmp/run/out.safetensors" ] || { echo "FAIL $b: a checkpoint was written"; bad=1; } ;;
  esac
done
for b in $EVAL; do
  check "eval $b" "$F/eval_$b.expected" "$P" eval --ckpt "$b" -n 64
done
if [ -x "$GRADC" ]; then
  for f in "$F"/npy_*.npy; do
    b=$(basename "$f")
    check "run $b" "$F/run_$b.expected" "$GRADC" run model.grad --in "x=$b" --out o
  done
  for b in $PARAMS; do
    check "params $b" "$F/params_$b.expected" "$GRADC" run model.grad --in x=ok_x4.npy \
      --params "$b.safetensors" --out o
  done
  # the good input and the model do run (so the cases above fail for the file alone)
  (cd "$tmp/run" && "$GRADC" run model.grad --in x=ok_x4.npy --out o) >/dev/null 2>&1 ||
    { echo "FAIL: gradc run on the good input failed"; bad=1; }
else
  echo "FAIL: no gradc at $GRADC"; bad=1
fi
# every corpus file must have been unchanged by the runs above
for f in "$tmp/run"/*; do
  b=$(basename "$f")
  [ -f "$F/$b" ] && { cmp -s "$f" "$F/$b" || fail "$b was modified by a run"; }
done
[ $bad -eq 0 ] && echo "bad files: $n cases ok"
exit $bad
