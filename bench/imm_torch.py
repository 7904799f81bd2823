#!/usr/bin/python3
"""imm_torch.py: the PyTorch side of gradc's benchmark suite.

Why this file exists: the performance targets of gradc are ratios against PyTorch on
the SAME computation, so this script must compute exactly what the .grad benchmark
graphs compute (bench/imm_bench.grad, bench/fm_bench.grad), which in turn is what the
golden tests check (/work/shared/testdata/imm-golden/README.md):

  network G(x, t, s): input row h0 = [c_in(t) x | PE(1000 t) | PE(1000 s)]
    (D + 64 values; PE(u) = [cos(u f_k) | sin(u f_k)], f_k = 10000^(-k/16), k < 16),
    4 hidden layers (default 256) with SiLU, a linear output of D; v = sigma_d G.
  Euler-FM one-step map f(x_t, t, s) = x_t + (s - t) v(x_t, t, s).
  IMM step (B rows, M = 4 particles per group, G = B / M groups of contiguous rows):
    per group t ~ U(t_min, T), s ~ U(t_min, t), r = max(s, eta^-1(eta(t) - eta(T)/2^k))
    in f64; x_t = (1-t) x + t sigma_d n, x_r = (1-r) x + r sigma_d n (same x, n);
    y_t = f(x_t, t, s) with gradient, y_r = f(x_r, r, s) under no_grad (current weights);
    Laplace kernel k(a, b) = exp(-max(||a-b||, 1e-8) / (|c_out| D)), c_out = (t-s) sigma_d;
    V-statistic MMD per group over all M x M pairs; weight
    w = t (1-t)^(a-1) / ((t^2 + e^-b (1-t)^2) ((1-t)^2 + t^2)); loss = mean_g w mmd;
    Adam lr 1e-3.
  Flow-matching step: the same network without PE(1000 s), t ~ U(0, 1) per row,
    loss = mean (v(x_t, t) - (sigma_d n - x))^2, Adam.
  Sampling: IMM pushforward from z ~ N(0, sigma_d^2) at T over linspace(T, 0, N + 1),
    or flow-matching Euler from t = 1 to 0 in N steps; samples/s.

`--check-golden DIR` runs the golden inputs through the same functions and compares
every expected tensor, so the benchmarked computation is tested, not assumed.

The data are random Gaussian tensors generated once: the benchmark measures the step,
not data loading. Output: one JSON line (steps/s median over timed blocks, peak RSS,
analytic FLOPs per step; see flops_* below and docs/performance.md).
"""
import argparse
import json
import math
import os
import resource
import sys
import time

SIGMA_D = 0.5
T_MAX = 0.994
N_FREQ = 16
TIME_SCALE = 1000.0
MAX_PERIOD = 10000.0
KERNEL_EPS = 1e-8


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["imm", "fm", "sample"], default="imm")
    p.add_argument("--net", choices=["imm", "fm"], default="imm",
                   help="network used by --mode sample (pushforward or Euler)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dim", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--group", type=int, default=4, help="M, particles per group")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (median taken)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--sample-steps", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--a", type=float, default=1.0)
    p.add_argument("--b", type=float, default=5.0)
    p.add_argument("--k", type=int, default=12)
    p.add_argument("--t-min", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-golden", metavar="DIR", default=None)
    return p.parse_args(argv)


# Thread count must reach OpenBLAS before torch loads it: Debian's torch sends matmuls
# to OpenBLAS, which reads OPENBLAS_NUM_THREADS at load and ignores set_num_threads.
# With 2 threads, torch's OpenMP workers spin-wait (GOMP's default active policy) on the
# cores OpenBLAS's own threads need: measured here, a layer step ran 3.7x slower than with
# OMP_WAIT_POLICY=PASSIVE. We give PyTorch its best setting (passive), unless overridden.
ARGS = parse_args(sys.argv[1:])
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after the environment is set)

torch.set_num_threads(ARGS.threads)


# ---- network --------------------------------------------------------------------------

def freqs(dtype):
    # f_k = 10000^(-k/16), computed in f64 then rounded
    k = torch.arange(N_FREQ, dtype=torch.float64)
    return torch.exp(-math.log(MAX_PERIOD) * k / N_FREQ).to(dtype)


def pe(u, f):
    # u: (N,) -> (N, 32) = [cos(1000 u f) | sin(1000 u f)]
    a = (TIME_SCALE * u)[:, None] * f[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


def c_in(t):
    return 1.0 / (SIGMA_D * torch.sqrt((1 - t) ** 2 + t ** 2))


def make_params(d, hidden, depth, with_s, dtype, gen):
    """Ws[i]: (out, in), bs[i]: (out,), nn.Linear's default init (kaiming-uniform)."""
    sizes = [d + 2 * N_FREQ * (2 if with_s else 1)] + [hidden] * depth + [d]
    Ws, bs = [], []
    for i in range(depth + 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        bound = 1.0 / math.sqrt(fan_in)
        W = (torch.rand(fan_out, fan_in, generator=gen, dtype=dtype) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
        Ws.append(W.requires_grad_())
        bs.append(b.requires_grad_())
    return Ws, bs


def mlp(h, Ws, bs):
    # h: (N, in) -> (N, D)
    n = len(Ws)
    for i in range(n - 1):
        h = torch.nn.functional.silu(torch.nn.functional.linear(h, Ws[i], bs[i]))
    return torch.nn.functional.linear(h, Ws[n - 1], bs[n - 1])


def velocity(x, t, s, Ws, bs, f):
    """v = sigma_d G([c_in(t) x | PE(1000 t) | PE(1000 s)]); s=None: the FM network."""
    parts = [c_in(t)[:, None] * x, pe(t, f)]
    if s is not None:
        parts.append(pe(s, f))
    return SIGMA_D * mlp(torch.cat(parts, dim=1), Ws, bs)


def one_step(x, t, s, Ws, bs, f):
    # Euler-FM: f_{s,t}(x_t) = x_t + (s - t) v(x_t, t, s); x: (N, D), t, s: (N,)
    return x + (s - t)[:, None] * velocity(x, t, s, Ws, bs, f)


# ---- IMM loss ---------------------------------------------------------------------------

def eta(t):
    return t / (1 - t)


def eta_inv(e):
    return e / (1 + e)


def sample_times(g, k, t_min, gen):
    """Per group (t, s, r) in f64 (near T, t - r is ~1e-6: f32 would lose it)."""
    t = t_min + (T_MAX - t_min) * torch.rand(g, generator=gen, dtype=torch.float64)
    s = t_min + (t - t_min) * torch.rand(g, generator=gen, dtype=torch.float64)
    return t, s, r_of(t, s, k)


def r_of(t, s, k):
    gap = eta(torch.tensor(T_MAX, dtype=torch.float64)) / 2 ** k
    e = eta(t) - gap
    r = torch.where(e < 0, s, torch.maximum(s, eta_inv(e.clamp(min=0))))
    return r


def imm_weight(t, a, b):
    # w(s,t) for OT-FM in closed form (f64), (G,)
    return t * (1 - t) ** (a - 1) / ((t ** 2 + math.exp(-b) * (1 - t) ** 2) * ((1 - t) ** 2 + t ** 2))


def laplace(a, b, wk, d):
    # a: (G, M, D), b: (G, M, D), wk: (G,) -> (G, M, M)
    dist = torch.linalg.vector_norm(a[:, :, None, :] - b[:, None, :, :], dim=-1)
    return torch.exp(-wk[:, None, None] * dist.clamp(min=KERNEL_EPS) / d)


def imm_loss(x, noise, t, s, r, Ws, bs, f, m, a, b):
    """x, noise: (B, D) (noise already scaled by sigma_d); t, s, r: (G,) f64."""
    bsz, d = x.shape
    g = bsz // m
    dt = x.dtype
    tr, sr, rr = (u.to(dt).repeat_interleave(m) for u in (t, s, r))  # (B,)
    x_t = (1 - tr)[:, None] * x + tr[:, None] * noise
    x_r = (1 - rr)[:, None] * x + rr[:, None] * noise
    y_t = one_step(x_t, tr, sr, Ws, bs, f)
    with torch.no_grad():
        y_r = one_step(x_r, rr, sr, Ws, bs, f)
    wk = (1.0 / ((t - s) * SIGMA_D)).to(dt)  # 1 / |c_out|
    yt, yr = y_t.view(g, m, d), y_r.view(g, m, d)
    mmd = (laplace(yt, yt, wk, d).mean(dim=(1, 2)) + laplace(yr, yr, wk, d).mean(dim=(1, 2))
           - 2 * laplace(yt, yr, wk, d).mean(dim=(1, 2)))
    w = imm_weight(t, a, b).to(dt)
    loss = (w * mmd).mean()
    return loss, dict(x_t=x_t, x_r=x_r, y_t=y_t, y_r=y_r, wk=wk, mmd=mmd, w=w)


def fm_loss(x, noise, t, Ws, bs, f):
    # t: (B,); noise already scaled by sigma_d
    x_t = (1 - t)[:, None] * x + t[:, None] * noise
    v = velocity(x_t, t, None, Ws, bs, f)
    return ((v - (noise - x)) ** 2).mean()


# ---- samplers ---------------------------------------------------------------------------

@torch.no_grad()
def imm_sample(z, n, Ws, bs, f):
    ts = torch.linspace(T_MAX, 0.0, n + 1, dtype=torch.float64)
    x = z
    for i in range(n):
        t = torch.full((x.shape[0],), float(ts[i]), dtype=x.dtype)
        s = torch.full((x.shape[0],), float(ts[i + 1]), dtype=x.dtype)
        x = one_step(x, t, s, Ws, bs, f)
    return x


@torch.no_grad()
def fm_sample(z, n, Ws, bs, f):
    ts = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    x = z
    for i in range(n):
        t = torch.full((x.shape[0],), float(ts[i]), dtype=x.dtype)
        x = x + float(ts[i + 1] - ts[i]) * velocity(x, t, None, Ws, bs, f)
    return x


# ---- FLOP counts (analytic; see docs/performance.md) -------------------------------------
# Matmuls: 2*m*n*k per product. Elementwise work is counted as 1 flop per arithmetic
# op or transcendental (exp, sin, cos, sqrt each = 1), a small share of the total.

def mlp_shapes(d, hidden, depth, with_s):
    sizes = [d + 2 * N_FREQ * (2 if with_s else 1)] + [hidden] * depth + [d]
    return list(zip(sizes[:-1], sizes[1:]))


def flops_forward(n, shapes):
    mm = sum(2 * n * i * o for i, o in shapes)
    ew = sum(n * o for _, o in shapes)          # bias add
    ew += sum(4 * n * o for _, o in shapes[:-1])  # silu: exp, add, div, mul
    return mm, ew


def flops_backward(n, shapes):
    """Necessary backward work: weight gradients of every layer, input gradients of all
    layers but the first (the network input needs no gradient)."""
    mm = sum(2 * n * i * o for i, o in shapes)          # dW = dY^T X
    mm += sum(2 * n * i * o for i, o in shapes[1:])     # dX = dY W
    ew = sum(n * o for _, o in shapes)                   # db
    ew += sum(6 * n * o for _, o in shapes[:-1])         # silu': sig, 1 + x(1 - sig), mul
    return mm, ew


def flops_features(n, d, npe):
    return n * (npe * 32 * 2 + 3 * d + 6)  # angles + sin/cos, c_in x, c_in


def flops_imm_step(bsz, d, hidden, depth, m, nparams):
    shapes = mlp_shapes(d, hidden, depth, True)
    f_mm, f_ew = flops_forward(bsz, shapes)
    b_mm, b_ew = flops_backward(bsz, shapes)
    mm = 2 * f_mm + b_mm  # y_t forward, y_r forward (no activations kept), y_t backward
    g = bsz // m
    ew = 2 * f_ew + b_ew + 2 * flops_features(bsz, d, 2)
    ew += 2 * 4 * bsz * d + 2 * 3 * bsz * d          # x_t, x_r; f = x + (s-t) v
    ew += 3 * g * m * m * (3 * d + 4) * 2             # 3 kernel matrices, fwd + bwd
    ew += 12 * nparams                                # Adam
    return mm, ew


def flops_fm_step(bsz, d, hidden, depth, nparams):
    shapes = mlp_shapes(d, hidden, depth, False)
    f_mm, f_ew = flops_forward(bsz, shapes)
    b_mm, b_ew = flops_backward(bsz, shapes)
    ew = f_ew + b_ew + flops_features(bsz, d, 1) + 4 * bsz * d + 4 * bsz * d * 2
    ew += 12 * nparams
    return f_mm + b_mm, ew


def flops_sample(bsz, d, hidden, depth, n, with_s):
    shapes = mlp_shapes(d, hidden, depth, with_s)
    f_mm, f_ew = flops_forward(bsz, shapes)
    return n * f_mm, n * (f_ew + flops_features(bsz, d, 2 if with_s else 1) + 3 * bsz * d)


# ---- golden check -----------------------------------------------------------------------

def check_golden(gdir):
    import numpy as np
    cfg = json.load(open(os.path.join(gdir, "config.json")))
    dt = torch.float64
    ld = lambda p: torch.from_numpy(np.load(os.path.join(gdir, p))).to(dt)  # noqa: E731
    f = freqs(dt)
    x, eps = ld("x.npy"), ld("eps.npy")
    t, s, r = ld("t.npy"), ld("s.npy"), ld("r.npy")
    r_mine = r_of(t, s, cfg["k"])
    worst = [("r (recomputed)", rel_err(r_mine, r))]
    Ws = [ld("params/W%d.npy" % i).requires_grad_() for i in range(cfg["depth"] + 1)]
    bs = [ld("params/b%d.npy" % i).requires_grad_() for i in range(cfg["depth"] + 1)]
    loss, parts = imm_loss(x, eps, t, s, r, Ws, bs, f, cfg["M"], cfg["a"], cfg["b"])
    parts["y_t"].retain_grad()
    loss.backward()
    exp = lambda n: ld("expected/" + n + ".npy")  # noqa: E731
    for k in ("x_t", "x_r", "y_t", "y_r", "wk", "mmd", "w"):
        worst.append((k, rel_err(parts[k], exp(k))))
    worst.append(("loss", rel_err(loss, exp("loss"))))
    worst.append(("grad_y_t", rel_err(parts["y_t"].grad, exp("grad_y_t"))))
    for i in range(cfg["depth"] + 1):
        worst.append(("grad_W%d" % i, rel_err(Ws[i].grad, exp("grad_W%d" % i))))
        worst.append(("grad_b%d" % i, rel_err(bs[i].grad, exp("grad_b%d" % i))))
    Wf = [ld("params_fm/W%d.npy" % i).requires_grad_() for i in range(cfg["depth"] + 1)]
    bf = [ld("params_fm/b%d.npy" % i).requires_grad_() for i in range(cfg["depth"] + 1)]
    fl = fm_loss(x, eps, ld("t_fm.npy"), Wf, bf, f)
    fl.backward()
    worst.append(("fm_loss", rel_err(fl, exp("fm_loss"))))
    for i in range(cfg["depth"] + 1):
        worst.append(("fm_grad_W%d" % i, rel_err(Wf[i].grad, exp("fm_grad_W%d" % i))))
        worst.append(("fm_grad_b%d" % i, rel_err(bf[i].grad, exp("fm_grad_b%d" % i))))
    z = ld("z.npy")
    for n in (1, 2, 4):
        worst.append(("imm_sample_%d" % n, rel_err(imm_sample(z, n, Ws, bs, f), exp("imm_sample_%d" % n))))
        worst.append(("fm_sample_%d" % n, rel_err(fm_sample(z, n, Wf, bf, f), exp("fm_sample_%d" % n))))
    bad = [(k, e) for k, e in worst if not e <= 1e-9]
    for k, e in worst:
        print("%-16s rel err %.2e%s" % (k, e, "  FAIL" if (k, e) in bad else ""))
    print("golden check: %s (%d tensors, tolerance 1e-9 in f64)" % ("FAIL" if bad else "ok", len(worst)))
    return 1 if bad else 0


def rel_err(a, b):
    a, b = a.detach().reshape(-1).to(torch.float64), b.reshape(-1).to(torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))


# ---- benchmark ----------------------------------------------------------------------------

def timed_blocks(step, args):
    for _ in range(args.warmup):
        step()
    rates, cpu_rates = [], []
    for _ in range(args.blocks):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        rates.append(args.steps / (time.perf_counter() - t0))
        cpu_rates.append(args.steps / max(time.process_time() - c0, 1e-9))
    rates.sort()
    cpu_rates.sort()
    return rates, cpu_rates


def bench(args):
    dt = torch.float32
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    f = freqs(dt)
    rss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bsz, d, m = args.batch, args.dim, args.group
    if bsz % m:
        sys.exit("batch must be a multiple of the group size")
    with_s = not (args.mode == "fm" or (args.mode == "sample" and args.net == "fm"))
    Ws, bs = make_params(d, args.hidden, args.depth, with_s, dt, gen)
    params = Ws + bs
    nparams = sum(p.numel() for p in params)
    opt = torch.optim.Adam(params, lr=args.lr)
    x = torch.randn(bsz, d, generator=gen, dtype=dt)  # the "data", generated once

    if args.mode == "imm":
        def step():
            t, s, r = sample_times(bsz // m, args.k, args.t_min, gen)
            noise = SIGMA_D * torch.randn(bsz, d, generator=gen, dtype=dt)
            opt.zero_grad(set_to_none=True)
            loss, _ = imm_loss(x, noise, t, s, r, Ws, bs, f, m, args.a, args.b)
            loss.backward()
            opt.step()
        mm, ew = flops_imm_step(bsz, d, args.hidden, args.depth, m, nparams)
    elif args.mode == "fm":
        def step():
            t = torch.rand(bsz, generator=gen, dtype=dt)
            noise = SIGMA_D * torch.randn(bsz, d, generator=gen, dtype=dt)
            opt.zero_grad(set_to_none=True)
            fm_loss(x, noise, t, Ws, bs, f).backward()
            opt.step()
        mm, ew = flops_fm_step(bsz, d, args.hidden, args.depth, nparams)
    else:
        sampler = imm_sample if with_s else fm_sample

        def step():
            z = SIGMA_D * torch.randn(bsz, d, generator=gen, dtype=dt)
            return sampler(z, args.sample_steps, Ws, bs, f)
        mm, ew = flops_sample(bsz, d, args.hidden, args.depth, args.sample_steps, with_s)

    rates, cpu_rates = timed_blocks(step, args)
    med = rates[len(rates) // 2]
    out = dict(side="torch", mode=args.mode, net=args.net if args.mode == "sample" else args.mode,
               batch=bsz, dim=d, hidden=args.hidden, group=m, threads=args.threads,
               sample_steps=args.sample_steps if args.mode == "sample" else None,
               steps_per_s=med, steps_per_s_all=rates,
               steps_per_cpu_s=cpu_rates[len(cpu_rates) // 2],
               samples_per_s=med * bsz if args.mode == "sample" else None,
               flops_matmul=mm, flops_elementwise=ew, flops=mm + ew,
               gflops_per_s=med * (mm + ew) / 1e9,
               peak_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               rss_after_import_kb=rss_base, nparams=nparams,
               timed_steps=args.steps * args.blocks, torch=torch.__version__,
               omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    print(json.dumps(out))
    return 0


def main():
    if ARGS.check_golden:
        torch.set_default_dtype(torch.float64)
        return check_golden(ARGS.check_golden)
    return bench(ARGS)


if __name__ == "__main__":
    sys.exit(main())
