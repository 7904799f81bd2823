#!/usr/bin/python3
"""run.py: gradc's benchmark driver (called by bench/run.sh, i.e. `make bench`).

Why one driver: the claims of docs/performance.md are ratios (gradc / PyTorch) on a
shared, noisy machine, so both sides of every configuration run back to back in one
invocation, in alternating order over rounds, and the table reports medians. Absolute
numbers are only meaningful next to the measured FMA peak of the same machine
(bench/peak.c), which is printed in the header.

PyTorch side: bench/imm_torch.py, one process per configuration (its own thread
count, set in OPENBLAS_NUM_THREADS before torch loads). gradc side: an executable per
configuration built from bench/imm_bench.grad / bench/fm_bench.grad with `gradc build`
(batch and dimension set with -D), timed from outside by differencing two run lengths
(the difference cancels process start, parameter init and allocation), peak RSS from
wait4(). If the gradc side cannot be built or run, the table says so with the reason;
numbers are never invented.

Environment: BENCH_GRADC_SIDE=jit (use the in-process JIT harness even when `gradc build`
exists: steadier on a busy machine), BENCH_GRADC_BLAS_THREADS (OpenBLAS threads of the gradc side), BENCH_QUICK=1 (a few configurations, short blocks: for development),
BENCH_ROUNDS (default 1), BENCH_ONLY=imm,fm,sample (subset), GRADC (compiler path),
PYTHON (interpreter with torch; default /usr/bin/python3), BENCH_JSON (write all rows).
"""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
BDIR = os.path.join(BUILD, "bench")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
GRADC = os.environ.get("GRADC", os.path.join(BUILD, "gradc"))
QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
TMP = "/dev/shm" if os.path.isdir("/dev/shm") else BDIR
ONLY = set(os.environ.get("BENCH_ONLY", "imm,fm,sample").split(","))


# ---- configurations ----------------------------------------------------------------------

def configs():
    """(kind, dim, batch, threads, sample_steps, net), short fixed step counts."""
    dims = [2, 784]
    batches = [64, 1024] if QUICK else [64, 256, 1024]
    threads = [1, 2]
    out = []
    for kind in ("imm", "fm"):
        if kind in ONLY:
            out += [(kind, d, b, t, None, kind) for d in dims for b in batches for t in threads]
    if "sample" in ONLY:
        for net in ("imm", "fm"):
            out += [("sample", d, 1024, t, n, net) for d in dims for t in threads for n in (1, 8)]
    return out


def steps_per_block(kind, dim, batch, sample_steps):
    """Steps per timed block: ~0.1-0.3 s per block at PyTorch speed on this machine."""
    work = batch * (dim + 66) * (3 if kind == "imm" else 2)
    if kind == "sample":
        work = batch * (dim + 66) * sample_steps / 3
    n = int(round(4.0e6 / max(work, 1)))
    if QUICK:
        n //= 4
    return max(2 if QUICK else 3, min(n, 60))


def blocks():
    return 3 if QUICK else 5


# ---- machine -------------------------------------------------------------------------------

def machine():
    info = {"model": "?", "cpus": os.cpu_count()}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model name":
                info["model"] = v.strip()
            if k.strip() == "Flags":
                info["avx512"] = " avx512f " in " " + v + " "
    except OSError:
        pass
    return info


def peak():
    res = {}
    for name in ("peak", "peak-avx2"):
        exe = os.path.join(BDIR, name)
        if not os.path.exists(exe):
            continue
        out = subprocess.run([exe, "0.2", "2"], capture_output=True, text=True).stdout
        for m in re.finditer(r"threads (\d+) gflops ([\d.]+) isa (\S+)", out):
            res[(m.group(3), int(m.group(1)))] = float(m.group(2))
    return res


# ---- running a child and measuring it -------------------------------------------------------

def run_measured(argv, env):
    """Runs argv, reaping it with os.wait4 for its own peak RSS and CPU time.
    Returns (stdout, stderr, exit code, wall seconds, peak RSS in KiB, CPU seconds)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         text=True, cwd=ROOT)
    out, err = p.stdout.read(), p.stderr.read()  # small outputs: no deadlock in practice
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return out, err, p.returncode, wall, ru.ru_maxrss, ru.ru_utime + ru.ru_stime


def thread_env(n, side="torch"):
    """The thread count for both sides, OpenBLAS included (the issue's rule).
    BENCH_GRADC_BLAS_THREADS overrides OpenBLAS's count for the gradc side only (an
    experiment knob: gradc's pool and OpenBLAS's threads share the cores)."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GRADC_THREADS"):
        env[var] = str(n)
    if side == "gradc" and os.environ.get("BENCH_GRADC_BLAS_THREADS"):
        env["OPENBLAS_NUM_THREADS"] = os.environ["BENCH_GRADC_BLAS_THREADS"]
    return env


# ---- PyTorch side --------------------------------------------------------------------------

def torch_available():
    r = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def run_torch(cfg):
    kind, dim, batch, threads, sstep, net = cfg
    argv = [PYTHON, os.path.join(ROOT, "bench", "imm_torch.py"), "--mode", kind,
            "--net", net, "--dim", str(dim), "--batch", str(batch), "--threads", str(threads),
            "--steps", str(steps_per_block(kind, dim, batch, sstep or 1)),
            "--blocks", str(blocks()), "--warmup", "3"]
    if sstep:
        argv += ["--sample-steps", str(sstep)]
    out, err, rc, _, rss, _ = run_measured(argv, thread_env(threads))
    if rc != 0:
        return {"error": (err.strip().splitlines() or ["exit %d" % rc])[-1]}
    row = json.loads(out.strip().splitlines()[-1])
    row["peak_rss_kb"] = rss  # the whole process, as the kernel saw it
    return row


# ---- gradc side ----------------------------------------------------------------------------

class GradcSide:
    """Runs gradc's step: AOT executables (`gradc build`) when the compiler has that
    command, else the in-process JIT harness build/bench/gradc_jit_bench (the same
    generated code, timed inside the process). .reason says why neither works."""

    def __init__(self):
        self.reason = None
        self.exes = {}
        self.compile_s = {}
        self.mm_flops = {}  # (graph, D, B) -> matmul flops in gradc's optimized loss_grad
        self.aot_note = None
        self.how = None
        jit = os.path.join(BDIR, "gradc_jit_bench")
        if not os.access(GRADC, os.X_OK):
            self.reason = "%s not built (run make)" % os.path.relpath(GRADC, ROOT)
            return
        r = subprocess.run([GRADC, "help", "build"], capture_output=True, text=True)
        want = os.environ.get("BENCH_GRADC_SIDE", "")  # "jit": the harness even with build
        if want != "jit" and r.returncode == 0 and "build" in (r.stdout + r.stderr):
            self.how = "aot"
        elif os.access(jit, os.X_OK):
            self.how = "jit"
            self.jit = jit
        else:
            self.reason = ("gradc has no 'build' command yet and the JIT harness "
                           "build/bench/gradc_jit_bench did not build")

    def label(self):
        return {"aot": "gradc executables (gradc build)",
                "jit": "gradc JIT harness (bench/gradc_jit_bench.c; `gradc build` not available)"
                }.get(self.how, "none")

    def graph(self, kind):
        return os.path.join(ROOT, "bench", "fm_bench.grad" if kind == "fm" else "imm_bench.grad")

    def data_file(self, dim):
        """A fixed .npy of 4096 Gaussian rows (the data, generated once per D)."""
        path = os.path.join(BDIR, "gauss_d%d.npy" % dim)
        if not os.path.exists(path):
            write_gauss_npy(path, 4096, dim)
        return path

    def key(self, cfg):
        kind, dim, batch, _, _, net = cfg
        return (net if kind == "sample" else kind, dim, batch)

    def build(self, cfg):
        """Builds (once per graph, D, B) an executable; returns it or None."""
        key = self.key(cfg)
        if key in self.exes:
            return self.exes[key]
        graph, dim, batch = key
        exe = os.path.join(BDIR, "%s_d%d_b%d" % key)
        if os.path.exists(self.ckpt(exe)):
            os.remove(self.ckpt(exe))  # a checkpoint of an older build may not match
        argv = [GRADC, "build", self.graph(graph), "-o", exe, "-D", "B=%d" % batch,
                "-D", "D=%d" % dim, "--time"]
        out, err, rc, wall, _, cpu = run_measured(argv, dict(os.environ))
        self.compile_s[key] = parse_stage_times(err, wall)
        self.compile_s[key]["cpu incl. link"] = cpu
        if rc != 0 or not os.access(exe, os.X_OK):
            msg = (err.strip().splitlines() or ["exit %d" % rc])[0]
            self.reason = "gradc build %s failed: %s" % (os.path.relpath(argv[2], ROOT), msg)
            self.exes[key] = None
            return None
        self.exes[key] = exe
        return exe

    def ckpt(self, exe):
        return exe + ".safetensors"

    def command(self, exe, cfg, n):
        """train: n steps (Adam, no EMA, no intermediate checkpoints); sample: n calls of
        the sampler (n x batch samples, written to tmpfs when there is one)."""
        kind, dim, batch, threads, sstep, net = cfg
        common = ["--threads", str(threads), "--quiet"]
        if kind == "sample":
            out = os.path.join(TMP, "gradc_bench_samples.npy")
            return [exe, "sample", "--ckpt", self.ckpt(exe), "--steps", str(sstep),
                    "-n", str(batch * n), "--out", out,
                    "--sampler", "imm" if net == "imm" else "uniform"] + common
        return [exe, "train", "--steps", str(n), "--ckpt", self.ckpt(exe),
                "--ckpt-every", "1000000000", "--ema", "0",
                "--data", self.data_file(dim)] + common

    def prepare(self, exe, cfg):
        """Sampling needs a checkpoint: one training step writes it."""
        if cfg[0] != "sample" or os.path.exists(self.ckpt(exe)):
            return None
        train = (cfg[5], cfg[1], cfg[2], cfg[3], None, cfg[5])
        r = run_measured(self.command(exe, train, 1), thread_env(cfg[3], "gradc"))
        return None if r[2] == 0 else "train (for a checkpoint) exited %d: %s" % (
            r[2], (r[1].strip().splitlines() or [""])[-1])

    def run(self, cfg):
        if self.reason:
            return {"error": self.reason}
        return self.run_jit(cfg) if self.how == "jit" else self.run_aot(cfg)

    def run_jit(self, cfg):
        """One harness process: compiles (stages timed), warms up, times blocks."""
        kind, dim, batch, threads, sstep, net = cfg
        graph = net if kind == "sample" else kind
        argv = [self.jit, self.graph(graph), "-I", os.path.join(ROOT, "stdlib"),
                "-D", "B=%d" % batch, "-D", "D=%d" % dim, "--data", self.data_file(dim),
                "--mode", "sample" if kind == "sample" else "train",
                "--threads", str(threads), "--blocks", str(blocks()), "--warmup", "3",
                "--steps", str(steps_per_block(kind, dim, batch, sstep or 1))]
        if kind == "sample":
            argv += ["--sample-steps", str(sstep), "--T", "0.994" if net == "imm" else "1.0"]
        out, err, rc, _, rss, _ = run_measured(argv, thread_env(threads, "gradc"))
        if rc != 0:
            return {"error": "gradc_jit_bench exited %d: %s" % (
                rc, (err.strip().splitlines() or [""])[0])}
        row = json.loads(out.strip().splitlines()[-1])
        row["peak_rss_kb"] = row["jit_rss_kb"] = rss
        aot = self.aot_rss(cfg)
        if aot:
            row["peak_rss_kb"], row["rss_from"] = aot, "aot"
        self.compile_s.setdefault(self.key(cfg), row["compile_cpu_s"])
        if kind != "sample":
            self.mm_flops.setdefault(self.key(cfg), row.get("matmul_flops_opt"))
        return row

    def aot_rss(self, cfg):
        """Peak RSS of the real training executable (AOT, built through the library by
        the harness's --emit-exe, as `gradc build` will): 3 training steps, or one
        sampler call. The JIT harness's own RSS includes LLVM and the compiler."""
        key = self.key(cfg)
        if key not in self.exes:
            graph, dim, batch = key
            exe = os.path.join(BDIR, "aot_%s_d%d_b%d" % key)
            argv = [self.jit, self.graph(graph), "-I", os.path.join(ROOT, "stdlib"),
                    "-D", "B=%d" % batch, "-D", "D=%d" % dim, "--emit-exe", exe,
                    "--rt-dir", BUILD]
            r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
            self.exes[key] = exe if r.returncode == 0 and os.access(exe, os.X_OK) else None
            if self.exes[key] is None:
                self.aot_note = "AOT build failed: %s" % (r.stderr.strip().splitlines() or [""])[0]
        exe = self.exes[key]
        if not exe or self.prepare(exe, cfg):
            return None
        r = run_measured(self.command(exe, cfg, 1 if cfg[0] == "sample" else 3),
                         thread_env(cfg[3], "gradc"))
        return r[4] if r[2] == 0 else None

    def run_aot(self, cfg):
        """Steps/s by differencing: time(n0 + k steps) - time(n0 steps), median of blocks."""
        exe = self.build(cfg)
        if exe is None:
            return {"error": self.reason}
        kind, dim, batch, threads, sstep, _ = cfg
        why = self.prepare(exe, cfg)
        if why:
            return {"error": why}
        k = steps_per_block(kind, dim, batch, sstep or 1)
        env = thread_env(threads, "gradc")
        base = run_measured(self.command(exe, cfg, 3), env)
        if base[2] != 0:
            return {"error": "%s exited %d: %s" % (os.path.basename(exe), base[2],
                                                    (base[1].strip().splitlines() or [""])[-1])}
        # sampling keeps all n x batch samples for the output file: its RSS is taken
        # from the short runs (3 batches), training's from the long ones
        rates, cpu_rates, rss = [], [], base[4]
        for _ in range(blocks()):
            short = run_measured(self.command(exe, cfg, 3), env)
            long_ = run_measured(self.command(exe, cfg, 3 + k), env)
            if long_[2] != 0 or short[2] != 0:
                return {"error": "%s exited %d" % (os.path.basename(exe), long_[2] or short[2])}
            rss = max(rss, short[4] if kind == "sample" else long_[4])
            dt, dc = long_[3] - short[3], long_[5] - short[5]
            rates.append(k / dt if dt > 0 else float("inf"))
            cpu_rates.append(k / dc if dc > 0 else float("inf"))
        rates.sort()
        cpu_rates.sort()
        med = rates[len(rates) // 2]
        self.harness_info(cfg)
        return {"steps_per_s": med, "steps_per_s_all": rates,
                "steps_per_cpu_s": cpu_rates[len(cpu_rates) // 2], "peak_rss_kb": rss,
                "samples_per_s": med * batch if kind == "sample" else None,
                "compile_s": self.compile_s.get(self.key(cfg))}

    def harness_info(self, cfg):
        """AOT mode: one short JIT-harness run per training graph, for the matmul count of
        the optimized loss_grad (the AOT executable has the same graph)."""
        kind, dim, batch, threads, _, _ = cfg
        key = self.key(cfg)
        jit = os.path.join(BDIR, "gradc_jit_bench")
        if kind == "sample" or key in self.mm_flops or not os.access(jit, os.X_OK):
            return
        argv = [jit, self.graph(kind), "-I", os.path.join(ROOT, "stdlib"), "-D", "B=%d" % batch,
                "-D", "D=%d" % dim, "--data", self.data_file(dim), "--steps", "1",
                "--blocks", "1", "--warmup", "0"]
        out, _, rc, _, _, _ = run_measured(argv, thread_env(1, "gradc"))
        if rc == 0:
            self.mm_flops[key] = json.loads(out.strip().splitlines()[-1]).get("matmul_flops_opt")


# ---- the table --------------------------------------------------------------------------------

def fmt_rate(row, batch=None):
    """steps/s, or samples/s (rate x batch) for sampler rows."""
    if "error" in row:
        return "n/a"
    r = row["steps_per_s"] * (batch or 1)
    return "%.0f" % r if r >= 1000 else "%.1f" % r


def label(cfg):
    kind, dim, batch, threads, sstep, net = cfg
    if kind == "sample":
        return "sample-%s %dst D=%d B=%d T=%d" % (net, sstep, dim, batch, threads)
    return "%s D=%d B=%d T=%d" % (kind, dim, batch, threads)


def print_table(rows, pk, gradc):
    p512 = pk.get(("avx512", 1)) or pk.get(("avx2-fma", 1))
    p256 = pk.get(("avx2-fma", 1))
    hdr = ("| config | unit | torch | gradc | ratio | CPU-time ratio | GFLOP/step | torch GFLOP/s | torch %peak "
           "| gradc %peak | torch RSS MiB | gradc RSS MiB |")
    print(hdr)
    print("|" + "---|" * 12)
    for cfg, tr, gr in rows:
        threads = cfg[3]
        flops = tr.get("flops") if "error" not in tr else None
        ratio = "n/a"
        if "error" not in tr and "error" not in gr:
            ratio = "%.2fx" % (gr["steps_per_s"] / tr["steps_per_s"])
        cratio = "-"
        if threads == 1 and tr.get("steps_per_cpu_s") and gr.get("steps_per_cpu_s"):
            cratio = "%.2fx" % (gr["steps_per_cpu_s"] / tr["steps_per_cpu_s"])

        def pct(r):
            if flops is None or "error" in r or not p512:
                return "n/a"
            rate = r["steps_per_s"] * flops / 1e9
            s = "%.0f%%" % (100 * rate / (p512 * threads))
            if p256 and p256 != p512:
                s += " (%.0f%%)" % (100 * rate / (p256 * threads))
            return s
        per = cfg[2] if cfg[0] == "sample" else None
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label(cfg), "samples/s" if per else "steps/s", fmt_rate(tr, per), fmt_rate(gr, per),
            ratio, cratio,
            "%.3f" % (flops / 1e9) if flops else "n/a",
            "%.1f" % (tr["steps_per_s"] * flops / 1e9) if flops else "n/a",
            pct(tr), pct(gr),
            "%.0f" % (tr["peak_rss_kb"] / 1024) if "error" not in tr else "n/a",
            "%.0f" % (gr["peak_rss_kb"] / 1024) if "error" not in gr else "n/a"))
    print()
    if gradc.how == "aot":
        print("gradc: AOT executables from `gradc build`, timed from outside (difference of two run"
              " lengths, wall and CPU); RSS of the executable (sampling: 3 batches held).")
    if gradc.how == "jit":
        print("gradc RSS: peak RSS of the AOT training executable (built through the library,"
              " 3 steps or one sampler call); rates from the in-process JIT harness.%s" % (
                  " " + gradc.aot_note if gradc.aot_note else ""))
    print("CPU-time ratio (1 thread only): the same ratio from steps per CPU second of each"
          " process, robust to other jobs on the machine.")
    print("GFLOP/step: per training step, or per sampler call (all its steps, batch 1024).")
    print("%peak: of the measured 1-core fp32 FMA peak x threads, with the AVX-512 peak;"
          " in parentheses of the AVX2 (256-bit) peak, the ISA Debian's OpenBLAS uses here.")
    if gradc.reason:
        print("gradc side: not available: %s" % gradc.reason)
    if gradc.compile_s:
        print("gradc compile times (JIT harness: CPU seconds per stage, all entries of the"
              " program; AOT: gradc build, wall and CPU incl. the link, stages as it reports them):")
        for key, s in sorted(gradc.compile_s.items()):
            if "jit" in s:
                s = "total %.3f = frontend %.3f + autodiff %.4f + jit (passes, schedule, LLVM) %.3f" % (
                    s["total"], s["frontend"], s["autodiff"], s["jit"])
            else:
                s = "%.3f s wall, %.3f CPU s (gradc build --time: %s)" % (
                    s["wall"], s.get("cpu incl. link", -1), ", ".join(
                        "%s %.1f ms" % (k, 1e3 * v) for k, v in s.items()
                        if k not in ("wall", "cpu incl. link")))
            print("  %s D=%d B=%d: %s" % (key + (s,)))
    mins = {(c[0], c[1], c[2]): t.get("flops_matmul") for c, t, _ in rows
            if c[0] != "sample" and "error" not in t}
    if gradc.mm_flops:
        print("matmul work in gradc's optimized loss_grad vs the necessary minimum (docs/performance.md):")
        for key, f in sorted(gradc.mm_flops.items()):
            m = mins.get(key)
            if f and m:
                print("  %s D=%d B=%d: %.4f GFLOP = %.1f%% of the minimum %.4f" % (
                    key + (f / 1e9, 100.0 * f / m, m / 1e9)))


def write_gauss_npy(path, rows, cols):
    """N(0, 1) f32 rows as .npy (format 1.0), without needing numpy."""
    import random
    import struct
    rng = random.Random(0)
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    with open(path + ".tmp", "wb") as fh:
        fh.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode("latin1"))
        for _ in range(rows):
            fh.write(struct.pack("<%df" % cols, *[rng.gauss(0.0, 1.0) for _ in range(cols)]))
    os.replace(path + ".tmp", path)


def parse_stage_times(stderr, wall):
    """`gradc build --time` lines "time: STAGE  X ms" -> {stage: seconds, "wall": wall}."""
    out = {}
    for m in re.finditer(r"^time:\s+(\S+)\s+([\d.]+)\s*ms", stderr, re.M):
        out[m.group(1)] = float(m.group(2)) / 1e3
    out["wall"] = wall
    return out


def compile_imm2d(gradc):
    """Compile time of graphs/imm_2d.grad (the issue's target: < 0.3 s)."""
    graph = os.path.join(ROOT, "graphs", "imm_2d.grad")
    if not os.path.exists(graph) or gradc.reason:
        return "n/a (%s)" % ("no graphs/imm_2d.grad" if not os.path.exists(graph) else gradc.reason)
    if gradc.how == "aot":
        out, err, rc, wall, _, cpu = run_measured(
            [GRADC, "build", graph, "-o", os.path.join(BDIR, "imm_2d"), "--time"], dict(os.environ))
        st = parse_stage_times(err, wall)
        return "%.3f s wall, %.3f CPU s (with the link) for gradc build (%s)%s" % (
            wall, cpu, ", ".join("%s %.1f ms" % (k, 1e3 * v) for k, v in st.items() if k != "wall"),
            "" if rc == 0 else " FAILED: exit %d" % rc)
    argv = [gradc.jit, graph, "-I", os.path.join(ROOT, "stdlib"), "--data", gradc.data_file(2),
            "--steps", "1", "--blocks", "1", "--warmup", "0"]
    out, err, rc, _, _, _ = run_measured(argv, thread_env(1))
    if rc != 0:
        return "failed: %s" % (err.strip().splitlines() or ["exit %d" % rc])[0]
    row = json.loads(out.strip().splitlines()[-1])
    c = row["compile_cpu_s"]
    return ("%.3f CPU s = frontend %.3f + autodiff %.4f + JIT %.3f (all entries, JIT harness;"
            " wall %.3f s)" % (c["total"], c["frontend"], c["autodiff"], c["jit"],
                               row["compile_s"]["total"]))


def main():
    os.makedirs(BDIR, exist_ok=True)
    t_start = time.perf_counter()
    mach = machine()
    pk = peak()
    tv = torch_available()
    print("machine: %s, %s CPUs; fp32 FMA peak: %s" % (
        mach["model"], mach["cpus"],
        ", ".join("%s %d thr %.1f GFLOP/s" % (isa, n, g) for (isa, n), g in sorted(pk.items()))))
    print("torch: %s (%s)" % (tv or "not importable", PYTHON))
    gradc = GradcSide()
    print("gradc side: %s" % gradc.label())
    if gradc.reason:
        print("gradc side: not available: %s" % gradc.reason)
    rows = []
    cfgs = configs()
    for i, cfg in enumerate(cfgs):
        trs, grs = [], []
        for rnd in range(ROUNDS):
            order = ("torch", "gradc") if (i + rnd) % 2 == 0 else ("gradc", "torch")
            for side in order:
                if side == "torch":
                    trs.append(run_torch(cfg) if tv else {"error": "torch not importable"})
                else:
                    grs.append(gradc.run(cfg))
        rows.append((cfg, median_row(trs), median_row(grs)))
        print("  [%3.0fs] %-36s torch %-8s gradc %s" % (
            time.perf_counter() - t_start, label(cfg), fmt_rate(rows[-1][1]), fmt_rate(rows[-1][2])),
            flush=True)
    print()
    print_table(rows, pk, gradc)
    if "imm" in ONLY:
        print("compile time of graphs/imm_2d.grad: %s" % compile_imm2d(gradc))
    print("\ntotal %.0f s, %d configurations, %d round(s)%s" % (
        time.perf_counter() - t_start, len(cfgs), ROUNDS, " (BENCH_QUICK)" if QUICK else ""))
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as fh:
            json.dump({"machine": mach, "peak": {"%s/%d" % k: v for k, v in pk.items()},
                       "rows": [{"config": c, "torch": t, "gradc": g} for c, t, g in rows]},
                      fh, indent=1)
    return 0


def median_row(rs):
    ok = [r for r in rs if "error" not in r]
    if not ok:
        return rs[0] if rs else {"error": "not run"}
    ok.sort(key=lambda r: r["steps_per_s"])
    return ok[len(ok) // 2]


if __name__ == "__main__":
    sys.exit(main())
