"""Training speed: the batched-over-timesteps trainer against the thesis' sequential loop.

Baseline (the thesis' way): one ``nn.Sequential(Linear(d, H), ReLU, Linear(H, d))`` and one
``torch.optim.Adam`` per timestep, trained one timestep after another, each on its own shuffled
minibatches with fresh noise. Contender: :func:`physdiff.ddpm.train`, which trains a chunk of
timesteps at once with batched matmuls and one stacked Adam. Both do the same work (T nets, the
same number of minibatches of the same size) in the same run; the script prints epochs per
second of each and the ratio.

    python benchmarks/bench_train.py                 # d=784, H=128, T=50, n=1000, batch 50, 1 epoch
    python benchmarks/bench_train.py --hidden 1700 --T 20 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff import ddpm  # noqa: E402
from physdiff.ddpm.train import resolve_device  # noqa: E402


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


def batched_epochs(x0: np.ndarray, cfg) -> float:
    t0 = time.perf_counter()
    ddpm.train(x0, cfg, progress=False, log=None)
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


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
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (best is reported)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    x0 = np.tanh(np.random.default_rng(0).standard_normal((args.n, args.d))).astype(np.float32)
    cfg = ddpm.TrainConfig(schedule={"name": "linear", "beta_start": 1e-4, "beta_end": 0.02, "reference_T": 1000},
                           T=args.T, hidden=args.hidden, lr=1e-3, epochs=args.epochs, batch=args.batch,
                           chunk=args.chunk, seed=0, device=str(device))
    print(f"d={args.d} hidden={args.hidden} T={args.T} n={args.n} batch={args.batch} epochs={args.epochs} "
          f"device={device} threads={torch.get_num_threads()}")
    # warm-up (allocator, kernels)
    small = cfg.replace(T=min(cfg.T, 2), epochs=1, schedule={"name": "linear", "beta_start": 1e-3, "beta_end": 0.2})
    batched_epochs(x0, small)
    sequential_epochs(x0, small, device)
    t_seq = min(sequential_epochs(x0, cfg, device) for _ in range(args.repeats))
    t_bat = min(batched_epochs(x0, cfg) for _ in range(args.repeats))
    rate_seq, rate_bat = args.epochs / t_seq, args.epochs / t_bat
    print(f"sequential (nn.Sequential + torch.optim.Adam per timestep): {t_seq:8.3f} s  {rate_seq:8.3f} epochs/s")
    print(f"batched over timesteps (physdiff.ddpm.train):               {t_bat:8.3f} s  {rate_bat:8.3f} epochs/s")
    print(f"speed-up batched / sequential: {rate_bat / rate_seq:.2f}x")


if __name__ == "__main__":
    main()
