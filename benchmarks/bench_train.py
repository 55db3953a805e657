"""Training speed: the thesis' sequential loop, the batched trainer and the fused small-net epoch.

Baseline (the thesis' way): one ``nn.Sequential(Linear(d, H), ReLU, Linear(H, d))`` and one
``torch.optim.Adam`` per timestep, trained one timestep after another. Contenders, both
:func:`physdiff.ddpm.train`: the batched path (a chunk of nets per step as batched matmuls and one
stacked Adam; ``fused.MODE = "never"``) and the fused path (one numba kernel per epoch, parallel
over nets; ``fused.MODE = "always"``). All do the same work: ``T`` nets, ``epochs`` passes of
``ceil(n / batch)`` minibatches.

The floating-point bound: one training step of one net is ``10 B d H`` flops (forward ``x W1`` and
``a W2``: 4 B d H; backward ``g W2^T``, ``a^T g`` and ``x^T dz``: 6 B d H). The script prints each
path's GFLOP/s and its ratio to (i) a bare ``torch.bmm`` of exactly those five matrix shapes over
the same chunk, timed in the same run (the rate the batched path could reach if the matmuls were
all it did) and (ii) a large square ``torch.mm`` (the cores' practical peak).

The memory term (MNIST-sized nets, measured on 2 cores with ~40 GB/s of copy bandwidth): a
training step of one 784-1700-784 net also moves ~100 MB (reading the weights twice, writing both
gradients, and Adam reading weights, gradients and two moments and writing three of them), ~2.5 ms
against ~4.1 ms of matmuls at batch 50; without overlap the bound would be ~0.62 of bare bmm
(whose operands stay in cache). The batched path hands each layer's gradient to Adam while it is
still in cache and reaches 0.74-0.78 (2 quiet cores; 0.69-0.72 in noisier runs): T = 8 or 10,
n = 6000 (chunks of 4), and T = 6, n = 12665 (the thesis' 12 665 images, chunks of 2).

On a shared machine the wall times depend on the load: every figure is the minimum over
``--repeats`` runs, printed with ``/proc/loadavg``.

    python benchmarks/bench_train.py                 # d=784, H=128, T=50, n=1000, batch 50, 1 epoch
    python benchmarks/bench_train.py --d 2 --hidden 1000 --T 100 --n 2000 --batch 100 --epochs 3
    python benchmarks/bench_train.py --d 64 --hidden 160 --T 100 --n 4000 --batch 64 --epochs 1
    python benchmarks/bench_train.py --hidden 1700 --T 20 --device cuda
    # MNIST's thesis nets (d = 784, H = 1700, batch 50) on the CPU: the batched path against bare bmm
    python benchmarks/bench_train.py --hidden 1700 --T 10 --n 6000 --epochs 1 --no-sequential --no-fused
    # the thesis' Swiss roll (3 pi) in full on the fused path; the sequential loop on 10 of its nets
    python benchmarks/bench_train.py --d 2 --hidden 1000 --T 1000 --n 20000 --batch 50 --epochs 30 \
        --no-sequential --no-batched --no-bmm --repeats 1
    python benchmarks/bench_train.py --d 2 --hidden 1000 --T 10 --n 20000 --batch 50 --epochs 1 --repeats 1
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff import ddpm  # noqa: E402
from physdiff._util import resolve_device  # noqa: E402
from physdiff.ddpm import fused  # noqa: E402
from physdiff.ddpm.train import _auto_chunk  # noqa: E402


def loadavg() -> str:
    try:
        return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load n/a"


def sequential_epochs(x0: np.ndarray, cfg, device) -> float:
    """Seconds for ``cfg.epochs`` epochs of T separate nets trained one after another."""
    sched = cfg.make_schedule()
    n, d = x0.shape
    x = torch.from_numpy(x0).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    t0 = time.perf_counter()
    for t in range(1, cfg.T + 1):
        net = torch.nn.Sequential(torch.nn.Linear(d, cfg.hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(cfg.hidden, d)).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        sa, s1 = float(np.sqrt(sched.alpha_bar[t])), float(np.sqrt(1 - sched.alpha_bar[t]))
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=gen, device=device)
            for lo in range(0, n, cfg.batch):
                x0b = x[perm[lo:lo + cfg.batch]]
                eps = torch.randn(x0b.shape, generator=gen, device=device)
                loss = torch.nn.functional.mse_loss(net(sa * x0b + s1 * eps), eps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def trainer_seconds(x0: np.ndarray, cfg, mode: str) -> float:
    fused.MODE = mode
    try:
        t0 = time.perf_counter()
        ddpm.train(x0, cfg, progress=False, log=None)
        if cfg.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0
    finally:
        fused.MODE = "auto"


def bare_bmm_seconds(C: int, B: int, d: int, H: int, steps: int, device) -> float:
    """Seconds for ``steps`` training steps' worth of the five matmuls of a chunk of ``C`` nets."""
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device=device)  # noqa: E731
    x, g_out, W1, W2, a, dz = r(C, B, d), r(C, B, d), r(C, d, H), r(C, H, d), r(C, B, H), r(C, B, H)
    z, p, da, gW2, gW1 = r(C, B, H), r(C, B, d), r(C, B, H), r(C, H, d), r(C, d, H)
    xT, aT, W2T = x.transpose(1, 2), a.transpose(1, 2), W2.transpose(1, 2)

    def step():
        torch.bmm(x, W1, out=z)
        torch.bmm(a, W2, out=p)
        torch.bmm(g_out, W2T, out=da)
        torch.bmm(aT, g_out, out=gW2)
        torch.bmm(xT, dz, out=gW1)

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def peak_gflops(device, size: int = 1024, reps: int = 5) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    c = torch.empty(size, size, device=device)
    torch.mm(a, b, out=c)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--chunk", type=int, default=None, help="nets per chunk (default: automatic)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (the minimum is reported)")
    p.add_argument("--no-sequential", action="store_true", help="skip the (slow) sequential baseline")
    p.add_argument("--no-batched", action="store_true", help="skip the batched path (the fused one stays on CPU)")
    p.add_argument("--no-fused", action="store_true",
                   help="skip the fused path (for MNIST-sized nets, d H > 2^17, the trainer uses the batched one)")
    p.add_argument("--no-bmm", action="store_true",
                   help="skip the bare-bmm reference (for d = 2 it moves B x H activations through memory per "
                        "net-step: at the thesis' Swiss-roll size it would take longer than the training)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    x0 = np.tanh(np.random.default_rng(0).standard_normal((args.n, args.d))).astype(np.float32)
    sched = {"name": "linear", "beta_start": 1e-4, "beta_end": 0.02, "reference_T": min(1000, 20 * args.T)}
    cfg = ddpm.TrainConfig(schedule=sched,
                           T=args.T, hidden=args.hidden, lr=1e-3, epochs=args.epochs, batch=args.batch,
                           chunk=args.chunk, seed=0, device=str(device))
    B = min(args.batch, args.n)
    nb = math.ceil(args.n / B)
    steps = args.T * args.epochs * nb  # net-steps
    flops = 10.0 * B * args.d * args.hidden * steps
    print(f"d={args.d} hidden={args.hidden} T={args.T} n={args.n} batch={B} epochs={args.epochs} "
          f"device={device} threads={torch.get_num_threads()}; {steps} net-steps, {flops / 1e9:.1f} GFLOP")
    small = cfg.replace(T=2, epochs=1, schedule={"name": "linear", "beta_start": 1e-3, "beta_end": 0.2})
    rows = []
    if not args.no_sequential:
        sequential_epochs(x0, small, device)  # warm-up
        rows.append(("sequential (nn.Sequential + torch.optim.Adam per net)",
                     min(sequential_epochs(x0, cfg, device) for _ in range(args.repeats)), loadavg()))
    if not (args.no_batched and device.type == "cpu"):
        trainer_seconds(x0, small, "never")  # warm-up (allocator, kernels)
        rows.append(("batched matmuls (physdiff.ddpm.train, fused.MODE='never')",
                     min(trainer_seconds(x0, cfg, "never") for _ in range(args.repeats)), loadavg()))
    bmm_rate = math.nan
    if not args.no_bmm:
        # the chunk the trainer uses (its automatic memory rule unless --chunk is given)
        C = min(cfg.chunk or _auto_chunk(args.T, args.n, args.d, args.hidden, B, device), args.T)
        bare_steps = max(1, steps // C)
        t_bmm = min(bare_bmm_seconds(C, B, args.d, args.hidden, bare_steps, device) for _ in range(args.repeats))
        bmm_rate = 10.0 * B * args.d * args.hidden * C * bare_steps / t_bmm / 1e9
        print(f"bare torch.bmm of the same shapes (chunk {C}): {bmm_rate:8.2f} GFLOP/s   ({loadavg()})")
    peak = peak_gflops(device)
    print(f"square 1024^3 torch.mm (practical peak):      {peak:8.2f} GFLOP/s   ({loadavg()})")
    if device.type == "cpu" and not args.no_fused:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))  # the fused path's threads
        trainer_seconds(x0, small, "always")  # warm-up (numba compilation)
        rows.append(("fused numba epoch (physdiff.ddpm.train, fused.MODE='always')",
                     min(trainer_seconds(x0, cfg, "always") for _ in range(args.repeats)), loadavg()))
    t_seq = rows[0][1] if not args.no_sequential else None
    for name, t, load in rows:
        rate = flops / t / 1e9
        vs = f"  {t_seq / t:6.2f}x sequential" if t_seq else ""
        print(f"{name:62s} {t:9.3f} s {rate:8.2f} GFLOP/s  {rate / bmm_rate:6.2f} of bmm  "
              f"{rate / peak:6.3f} of peak{vs}   ({load})")


if __name__ == "__main__":
    main()
