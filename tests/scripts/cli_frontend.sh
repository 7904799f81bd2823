#!/bin/sh
# The front-end commands of the gradc CLI: help, version, check, dump, dot, options and
# exit statuses (0 ok, 1 diagnostics, 2 usage errors).
GRADC=${GRADC:-build/gradc}
cd "$(dirname "$0")/../.." || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
t() { # t DESCRIPTION EXPECTED_STATUS COMMAND... : runs, checks the status
  desc=$1; want=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ $rc -ne "$want" ]; then echo "FAIL $desc: status $rc, expected $want"; cat "$tmp/err"; fail=1; fi
}
has() { # has FILE TEXT
  grep -qF -- "$2" "$tmp/$1" || { echo "FAIL: '$2' not in $1:"; head -5 "$tmp/$1"; fail=1; }
}
cat > "$tmp/ok.grad" <<'G'
const B = 4
model net(x: f32[N, 2]) -> f32[N, 2] {
  param w: f32[2, 2] = glorot()
  return x @ w
}
entry loss(x: f32[B, 2]) -> f32 { return mean(net(x) ** 2) }
entry sample(x: f32[B, 2]) -> f32[B, 2] { return net(x) }
G
printf 'entry e(x: f32[4]) -> f32[4] { return x + y }\n' > "$tmp/bad.grad"

t "--version" 0 "$GRADC" --version; has out "gradc 0.1.0"
t "--help" 0 "$GRADC" --help; has out "check"; has out "dump"; has out "dot"
t "help check" 0 "$GRADC" help check; has out "usage: gradc check"
t "dump --help" 0 "$GRADC" dump --help; has out "--stage"
t "no command" 2 "$GRADC"
t "unknown command" 2 "$GRADC" chekc x.grad; has err "did you mean 'check'"
t "unknown option" 2 "$GRADC" check --frobnicate "$tmp/ok.grad"
t "check ok" 0 "$GRADC" check "$tmp/ok.grad"
t "check two files, one bad" 1 "$GRADC" check "$tmp/ok.grad" "$tmp/bad.grad"
has err "bad.grad:1:43: error: unknown name 'y'"
t "check -D" 0 "$GRADC" check -D B=8 "$tmp/ok.grad"
t "check -D unknown" 1 "$GRADC" check -DBATCH=8 "$tmp/ok.grad"; has err "unknown constant 'BATCH'"
t "check missing file" 1 "$GRADC" check "$tmp/none.grad"; has err "cannot open"
t "dump ir" 0 "$GRADC" dump -D B=8 "$tmp/ok.grad"
has out "param net.w: f32[2, 2]"; has out "entry loss(x: f32[8, 2])"; has out "entry sample"
t "dump --entry" 0 "$GRADC" dump --entry sample "$tmp/ok.grad"
grep -q "entry loss" "$tmp/out" && { echo "FAIL: --entry sample printed loss"; fail=1; }
t "dump --entry missing" 1 "$GRADC" dump --entry nope "$tmp/ok.grad"
t "dump ast" 0 "$GRADC" dump --stage=ast "$tmp/ok.grad"; has out "model net(x: f32[N, 2])"
t "dump bad stage" 2 "$GRADC" dump --stage=bogus "$tmp/ok.grad"
t "dot" 0 "$GRADC" dot --entry loss "$tmp/ok.grad"; has out 'digraph "loss"'
t "dot bad" 1 "$GRADC" dot "$tmp/bad.grad"
t "--f64" 0 "$GRADC" dump --f64 "$tmp/ok.grad"; has out "f64[4, 2]"
mkdir -p "$tmp/inc" && printf 'const K = 2\n' > "$tmp/inc/lib.grad"
printf 'import lib\nentry e(x: f32[lib.K]) -> f32[2] { return x }\n' > "$tmp/imp.grad"
t "-I" 0 "$GRADC" check -I "$tmp/inc" "$tmp/imp.grad"
t "missing import" 1 "$GRADC" check "$tmp/imp.grad"; has err "cannot find module 'lib'"
[ $fail -eq 0 ] && echo "cli front end: ok"
exit $fail
