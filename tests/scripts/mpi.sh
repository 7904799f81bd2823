#!/bin/sh
# mpi.sh: data-parallel training under Open MPI (docs/distributed.md), a 2-rank job on
# localhost against one process at the same global batch.
#  - graphs/imm_2d.grad, small: built with --mpi at B=16 per rank (global 32) and
#    without MPI at B=32; 100 steps, a log row every step.
#  - agreement: the loss curves agree to 1e-4 relative at every step (measured: ~2e-6;
#    the allreduce adds the two half-batch means, the single process sums all 32 rows in
#    one reduction, so the float rounding differs; nothing else does: same rows, same
#    noise, same initialization).
#  - determinism: the 2-rank job run twice gives byte-identical checkpoints and logs.
#  - only rank 0 writes: the job runs in a clean folder with relative paths and the
#    folder then holds exactly the log and the checkpoint.
#  - --resume with the same N: 50 steps + resume to 100 == 100 in one run (bytes);
#    resuming with another number of ranks is refused.
#  - SIGINT to rank 1 alone stops all ranks after the same step, checkpointed, resumable;
#  - a rank failing alone at setup stops every rank (its message once, no files); a
#    rank that cannot start (missing executable) stops the job before any step; a
#    killed rank stops the whole job with a non-zero status and mpirun's message;
#    the single-process build under mpirun -np 2 refuses with a clear message.
set -u
GRADC=${GRADC:-build/gradc}
BUILD=${BUILD:-build}
case "$BUILD" in *asan*) echo "skipped under $BUILD (gradc build cannot link a sanitized runtime)"; exit 0 ;; esac
if ! command -v mpirun >/dev/null 2>&1; then echo "skipped: MPI not installed (make deps installs openmpi-bin)"; exit 0; fi
[ -f "$BUILD/libgradrt_mpi.a" ] || { echo "FAIL: $BUILD/libgradrt_mpi.a missing (libopenmpi-dev installed? run make)"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
MPIRUN="mpirun -np 2 --oversubscribe"
small="-D hidden=32 -D depth=2 -D NS=64"
"$GRADC" build graphs/imm_2d.grad $small -D B=16 --mpi -o "$tmp/imm_mpi" >"$tmp/b.log" 2>&1 ||
  fail "gradc build --mpi: $(cat "$tmp/b.log")"
"$GRADC" build graphs/imm_2d.grad $small -D B=32 -o "$tmp/imm_one" >"$tmp/b.log" 2>&1 ||
  fail "gradc build: $(cat "$tmp/b.log")"
T="train --steps 100 --every 1 --threads 1 --quiet"
"$tmp/imm_mpi" info | grep -q "^distributed Open MPI" || fail "info of the --mpi build does not name MPI"
"$tmp/imm_one" info | grep -q "^distributed none (single process)" || fail "info of the default build: $("$tmp/imm_one" info | head -5)"

run2() { # folder, extra args
  mkdir -p "$tmp/$1"
  (cd "$tmp/$1" && shift && $MPIRUN "$tmp/imm_mpi" $T --log l.csv --ckpt c.safetensors "$@") >"$tmp/out" 2>&1
}
# job a: rank 0 runs in $tmp/a, rank 1 in $tmp/a1 (MPMD form), relative paths: a file
# written by rank 1 would land in a1
mkdir -p "$tmp/a" "$tmp/a1"
A="$T --log l.csv --ckpt c.safetensors"
mpirun --oversubscribe -np 1 -wdir "$tmp/a" "$tmp/imm_mpi" $A : -np 1 -wdir "$tmp/a1" "$tmp/imm_mpi" $A \
  >"$tmp/out" 2>&1 || fail "2-rank job failed: $(tail -20 "$tmp/out")"
run2 b || fail "second 2-rank job failed: $(tail -20 "$tmp/out")"
[ "$(ls "$tmp/a" | tr '\n' ' ')" = "c.safetensors l.csv " ] || fail "rank 0 wrote other files: $(ls "$tmp/a")"
[ -z "$(ls -A "$tmp/a1")" ] || fail "rank 1 wrote files: $(ls -A "$tmp/a1")"
cmp -s "$tmp/a/c.safetensors" "$tmp/b/c.safetensors" || fail "two 2-rank runs give different checkpoints"
cols() { cut -d, -f1-4 "$1"; } # step, loss, lr, grad_norm (not the timing column)
[ "$(cols "$tmp/a/l.csv")" = "$(cols "$tmp/b/l.csv")" ] || fail "two 2-rank runs give different loss curves"
grep -q '"ranks":"2"' "$tmp/a/c.safetensors" && grep -q '"global_batch":"32"' "$tmp/a/c.safetensors" ||
  fail "checkpoint metadata lacks ranks/global_batch"

mkdir -p "$tmp/one"
(cd "$tmp/one" && "$tmp/imm_one" $T --log l.csv --ckpt c.safetensors) >"$tmp/out" 2>&1 ||
  fail "1-process run failed: $(cat "$tmp/out")"
awk -F, 'NR == FNR { if (FNR > 1) ref[$1] = $2; next }
         FNR > 1 { n++; d = $2 - ref[$1]; if (d < 0) d = -d; r = d / (ref[$1] < 0 ? -ref[$1] : ref[$1]);
                   if (r > worst) worst = r; if (!($1 in ref)) bad = 1 }
         END { printf "loss curves over %d steps: worst relative difference %.3g (tolerance 1e-4)\n", n, worst;
               exit (n == 100 && !bad && worst <= 1e-4) ? 0 : 1 }' "$tmp/one/l.csv" "$tmp/a/l.csv" ||
  fail "2 ranks and 1 process disagree"

# resume with the same number of ranks continues bit-identically
mkdir -p "$tmp/r"
(cd "$tmp/r" && $MPIRUN "$tmp/imm_mpi" $T --until 50 --log l.csv --ckpt c.safetensors &&
  $MPIRUN "$tmp/imm_mpi" $T --resume --log l.csv --ckpt c.safetensors) >"$tmp/out" 2>&1 ||
  fail "until/resume failed: $(tail -20 "$tmp/out")"
cmp -s "$tmp/a/c.safetensors" "$tmp/r/c.safetensors" || fail "50 + resume 50 differs from 100 steps"
[ "$(cols "$tmp/a/l.csv")" = "$(cols "$tmp/r/l.csv")" ] || fail "the resumed log differs"
(cd "$tmp/r" && mpirun -np 1 "$tmp/imm_mpi" $T --steps 120 --resume --ckpt c.safetensors) >"$tmp/out" 2>&1 &&
  fail "resume with 1 rank of a 2-rank checkpoint was accepted"
grep -q "global batch of 32 rows, this job has 16 (1 rank x 16); resume with the same number of ranks" "$tmp/out" ||
  fail "wrong message for a resume with another rank count: $(cat "$tmp/out")"

# the single-process build refuses to run as one of several ranks
$MPIRUN "$tmp/imm_one" $T --ckpt "$tmp/x.safetensors" >"$tmp/out" 2>&1 && fail "non-MPI build under mpirun -np 2 ran"
grep -q "built without MPI but is started as one of 2 ranks; rebuild it with gradc build --mpi" "$tmp/out" ||
  fail "no clear message for a non-MPI build under mpirun: $(cat "$tmp/out")"
[ -e "$tmp/x.safetensors" ] && fail "the refused job wrote a checkpoint"

# a rank that fails alone before step 0 (its data file is missing) stops every rank: its
# message is shown once, nothing is written, the status is non-zero
mkdir -p "$tmp/d0" "$tmp/d1"
"$tmp/imm_one" data -n 64 --out "$tmp/d0/x.npy" --quiet || fail "data failed"
D="train --steps 5 --threads 1 --quiet --data x.npy --ckpt c.safetensors"
mpirun --oversubscribe -np 1 -wdir "$tmp/d0" "$tmp/imm_mpi" $D : -np 1 -wdir "$tmp/d1" "$tmp/imm_mpi" $D \
  >"$tmp/out" 2>&1 && fail "a job with a rank lacking its data ran"
[ "$(grep -c "error: cannot open data file x.npy" "$tmp/out")" -eq 1 ] || fail "rank 1's setup error not shown once: $(cat "$tmp/out")"
[ "$(ls "$tmp/d0")" = "x.npy" ] && [ -z "$(ls -A "$tmp/d1")" ] || fail "a failed setup wrote files"

# SIGINT to ONE rank (as a scheduler's SIGTERM or a Ctrl-C on one host would arrive):
# the stop flag travels in the step's allreduce, so every rank stops after the same
# step, rank 0 checkpoints it, and the run resumes from there. (A Ctrl-C to mpirun
# itself makes mpirun end the job, SIGKILL after a grace period: docs/distributed.md.)
rank_pid() { # prints the pid of rank $1 of a job started from $tmp/imm_mpi
  for p in $(pgrep -f "$tmp/imm_mpi" 2>/dev/null); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && echo "$p"
  done
}
mkdir -p "$tmp/i"
(cd "$tmp/i" && exec $MPIRUN "$tmp/imm_mpi" train --steps 100000000 --every 100000000 --threads 1 --quiet \
  --ckpt-every 200 --ckpt c.safetensors) >"$tmp/iout" 2>&1 &
job=$!
i=0 # training runs (signal handlers installed) once the first checkpoint exists
while [ ! -e "$tmp/i/c.safetensors" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
r1=$(rank_pid 1)
[ -n "$r1" ] || { kill "$job"; fail "could not find rank 1"; }
kill -INT "$r1"
wait "$job"
grep -q "interrupted at step [0-9]*; checkpoint written to c.safetensors" "$tmp/iout" ||
  fail "SIGINT to rank 1: no clean stop of the job: $(cat "$tmp/iout")"
istep=$(sed -n 's/.*interrupted at step \([0-9]*\);.*/\1/p' "$tmp/iout")
python3 -c "import json,struct,sys; b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]
sys.exit(json.loads(b[8:8+n])['__metadata__']['step'] != sys.argv[2])" "$tmp/i/c.safetensors" "$istep" ||
  fail "the checkpoint is not at the interrupted step $istep"
(cd "$tmp/i" && $MPIRUN "$tmp/imm_mpi" train --steps $((istep + 3)) --resume --threads 1 --quiet --ckpt c.safetensors) \
  >"$tmp/out" 2>&1 || fail "resume after the interruption failed: $(cat "$tmp/out")"

# a rank that cannot start (its executable is missing) stops the job before any step
mkdir -p "$tmp/f"
(cd "$tmp/f" && mpirun --oversubscribe -np 1 "$tmp/imm_mpi" train --steps 50 --quiet --ckpt c.safetensors : \
  -np 1 "$tmp/missing_prog" train) >"$tmp/out" 2>&1 && fail "a job with a missing executable ran"
grep -q "unable to launch the specified application" "$tmp/out" && grep -q "rank 1" "$tmp/out" ||
  fail "no clear message for a rank that cannot start: $(cat "$tmp/out")"
[ -z "$(ls -A "$tmp/f")" ] || fail "files written by a job that could not start: $(ls -A "$tmp/f")"

# a rank killed mid-run stops the whole job
mkdir -p "$tmp/k"
(cd "$tmp/k" && exec $MPIRUN "$tmp/imm_mpi" train --steps 100000000 --every 100000000 --threads 1 --quiet \
  --ckpt c.safetensors) >"$tmp/kout" 2>&1 &
job=$!
victim=""
for i in $(seq 1 100); do
  victim=$(rank_pid 1)
  [ -n "$victim" ] && break
  sleep 0.1
done
[ -n "$victim" ] || { kill "$job" 2>/dev/null; fail "could not find rank 1"; }
sleep 0.5
kill -9 "$victim"
i=0
while kill -0 "$job" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$job" 2>/dev/null; then kill "$job"; fail "the job kept running after rank 1 was killed"; fi
wait "$job"; rc=$?
[ $rc -ne 0 ] || fail "the job exited 0 after rank 1 was killed"
grep -qi "rank 1.*signal 9\|signal 9.*rank 1\|exited on signal 9" "$tmp/kout" || fail "no message naming the killed rank: $(cat "$tmp/kout")"
echo "killed rank 1: job exit status $rc, mpirun said: $(grep -i 'signal 9' "$tmp/kout" | head -1)"
exit 0
