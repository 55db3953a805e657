"""Throughput of the exact Curie-Weiss score (physdiff.theory.curie_weiss.score).

Prints samples x spins per second of the Hubbard-Stratonovich score at several N (at the
speciation time alpha_bar = 1/Lambda, where both ferromagnetic saddles matter, and at
alpha_bar = 0.5) beside the rate of one ``np.tanh`` pass over the same array (the memory- and
transcendental-bound floor: the score needs at least one tanh per spin and saddle), and, at
N = 12, the ratio against brute-force enumeration of the 2^N configurations measured in the same
run. Rates are per CPU second (``time.process_time``, numpy is single-threaded; set
OPENBLAS_NUM_THREADS=1), the best of several calls, so that they mean something on a shared
machine; the load average is printed with them.

    python benchmarks/bench_score.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff.theory import curie_weiss as cw  # noqa: E402


def sample_diffused(n, N, beta, alpha_bar, rng):
    M, P = cw.magnetization_distribution(N, beta)
    Ms = rng.choice(M, size=n, p=P)
    order = np.argsort(rng.random((n, N)), axis=1)
    up = np.arange(N)[None, :] < ((N + Ms) // 2)[:, None]
    a = np.empty((n, N))
    np.put_along_axis(a, order, np.where(up, 1.0, -1.0), axis=1)
    return math.sqrt(alpha_bar) * a + math.sqrt(1 - alpha_bar) * rng.standard_normal((n, N))


def brute_force_score(x, alpha_bar, beta, h=0.0):
    """Exact score by enumerating all 2^N configurations (the baseline)."""
    N = x.shape[1]
    a = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
    M = a.sum(1)
    s, delta = math.sqrt(alpha_bar), 1 - alpha_bar
    logw = beta * M ** 2 / (2 * N) + h * M + (s / delta) * (x @ a.T)  # (n, 2^N)
    logw -= logw.max(axis=1, keepdims=True)
    w = np.exp(logw)
    mean = (w @ a) / w.sum(axis=1, keepdims=True)
    return -(x - s * mean) / delta


def rate(fn, x, min_time):
    """Samples x spins per CPU second of fn(x): the best call, repeated for >= min_time CPU seconds."""
    fn(x)  # warm-up
    best, spent = math.inf, 0.0
    while spent < min_time or best == math.inf:
        t0 = time.process_time()
        fn(x)
        dt = time.process_time() - t0
        spent += dt
        best = min(best, dt) if dt > 0 else best
    return x.size / best, best


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter runs, no N = 1e5")
    args = p.parse_args(argv)
    min_time = 0.3 if args.quick else 1.0
    rng = np.random.default_rng(0)
    beta = 1.5

    print(f"exact Curie-Weiss score, beta = {beta}, h = 0 (default path: saddle-point expansion where "
          "certified, else quadrature)")
    print(f"{'N':>7} {'alpha_bar':>10} {'n':>6} {'s/call':>9} {'spins/s':>11} {'np.tanh/s':>11} "
          f"{'ratio':>7}  load")
    sizes = [(12, 2000), (100, 1000), (1000, 400), (10_000, 40)]
    if not args.quick:
        sizes.append((100_000, 2))
    for N, n in sizes:
        for label, ab in (("1/Lambda", 1 / cw.top_eigenvalue(N, beta)), ("0.5", 0.5)):
            x = sample_diffused(n, N, beta, ab, rng)
            r, per = rate(lambda z: cw.score(z, ab, beta), x, min_time)
            r_tanh, _ = rate(np.tanh, x, min_time / 4)
            print(f"{N:>7} {label:>10} {n:>6} {per:>9.4f} {r:>11.3e} {r_tanh:>11.3e} {r / r_tanh:>7.4f}  "
                  f"{loadavg()}")

    N, n = 12, 2000
    ab = 1 / cw.top_eigenvalue(N, beta)
    x = sample_diffused(n, N, beta, ab, rng)
    err = np.abs(cw.score(x, ab, beta) - brute_force_score(x, ab, beta)).max()
    r_hs, _ = rate(lambda z: cw.score(z, ab, beta), x, min_time)
    r_bf, _ = rate(lambda z: brute_force_score(z, ab, beta), x, min_time)
    print(f"\nN = 12, n = {n}, alpha_bar = 1/Lambda: max |exact - brute force| = {err:.2e}")
    print(f"  brute-force enumeration (2^12 configs): {r_bf:.3e} spins/s")
    print(f"  Hubbard-Stratonovich exact score      : {r_hs:.3e} spins/s")
    print(f"  ratio HS / brute force                : {r_hs / r_bf:.2f}x")

    # fast large-N path (expansion around the saddles) vs the lattice quadrature
    print("\nsaddle-point (auto) path vs lattice quadrature, beta = 1.5, h = 0")
    print(f"{'N':>7} {'alpha_bar':>10} {'n':>6} {'saddle sp/s':>12} {'quad sp/s':>11} {'ratio':>6}")
    for N, n in ((1000, 2000), (10_000, 100)):
        for label, ab in (("1/Lambda", 1 / cw.top_eigenvalue(N, beta)), ("0.01", 0.01), ("0.5", 0.5)):
            x = sample_diffused(n, N, beta, ab, rng)
            cw._METHOD = "auto"
            r_t, _ = rate(lambda z: cw.score(z, ab, beta), x, min_time)
            cw._METHOD = "quadrature"
            xq = x[:max(4, n // 20)]
            r_q, _ = rate(lambda z: cw.score(z, ab, beta), xq, min_time)
            cw._METHOD = "auto"
            print(f"{N:>7} {label:>10} {n:>6} {r_t:>12.3e} {r_q:>11.3e} {r_t / r_q:>6.1f}")


if __name__ == "__main__":
    main()
