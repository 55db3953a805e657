"""Speed of the numba forward-chain kernels against vectorised numpy, measured in the same run.

    python benchmarks/bench_forward.py [--n 2000] [--d 784] [--T 1000] [--repeat 3]

* ``trajectory``: the numba chain (:func:`physdiff.forward.trajectory`) against the numpy chain
  ``x = sqrt(alphas[t]) x + sqrt(betas[t]) rng.standard_normal(x.shape)`` (float64 state, like the
  kernel) recording the same steps. Rate: elements * steps per second.
* ``diffuse``: :func:`physdiff.forward.diffuse` with per-sample steps against the numpy closed form
  ``sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps`` in x0's dtype. Rate: elements per second.

* ``normal generator`` (one thread): standard normals per second from :mod:`physdiff._rng` --
  ``fill_normal`` (ziggurat, state in registers; what the kernels use), one ``normal()`` call per
  number, and the Box-Muller and Marsaglia polar transforms on the same xoshiro256** uniforms --
  and from numba's legacy ``np.random.standard_normal`` (what the kernels used before), each
  against numpy's ``Generator.standard_normal`` (float64). This is how the transform was picked.

numba is warmed up (compiled) before timing; each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import numba  # noqa: E402
from numba import njit  # noqa: E402

from physdiff._rng import fill_normal, normal, seed_state, uniform  # noqa: E402
from physdiff.forward import diffuse, trajectory  # noqa: E402
from physdiff.schedules import make_schedule  # noqa: E402


def numpy_trajectory(x0, schedule, steps, rng):
    steps = np.asarray(steps)
    out = np.empty((steps.size,) + x0.shape, dtype=x0.dtype)
    x = x0.astype(np.float64)
    out[steps == 0] = x0
    sa, sb = np.sqrt(schedule.alphas), np.sqrt(schedule.betas)
    for t in range(1, int(steps.max()) + 1):
        x = sa[t] * x + sb[t] * rng.standard_normal(x.shape)
        hit = steps == t
        if hit.any():
            out[hit] = x
    return out


def numpy_diffuse(x0, schedule, t, rng):
    ab = schedule.alpha_bar[t].astype(x0.dtype)[:, None]
    eps = rng.standard_normal(x0.shape, dtype=x0.dtype)
    return np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps, eps


@njit(cache=True)
def _normal_calls(state, out):
    for i in range(out.size):
        out[i] = normal(state)


@njit(cache=True)
def _box_muller(state, out):
    for i in range(0, out.size - 1, 2):
        r = math.sqrt(-2.0 * math.log1p(-uniform(state)))
        theta = 2.0 * math.pi * uniform(state)
        out[i] = r * math.cos(theta)
        out[i + 1] = r * math.sin(theta)


@njit(cache=True)
def _polar(state, out):
    i = 0
    while i < out.size - 1:
        u = 2.0 * uniform(state) - 1.0
        v = 2.0 * uniform(state) - 1.0
        q = u * u + v * v
        if q >= 1.0 or q == 0.0:
            continue
        f = math.sqrt(-2.0 * math.log(q) / q)
        out[i] = u * f
        out[i + 1] = v * f
        i += 2


@njit(cache=True)
def _numba_legacy(seed, out):
    np.random.seed(seed)
    for i in range(out.size):
        out[i] = np.random.standard_normal()


def bench_normal_generators(repeat, size=4_000_000):
    out = np.empty(size)
    fns = {
        "_rng.fill_normal (ziggurat)": lambda: fill_normal(seed_state(1), out),
        "_rng.normal() per number": lambda: _normal_calls(seed_state(1), out),
        "polar on xoshiro256**": lambda: _polar(seed_state(1), out),
        "Box-Muller on xoshiro256**": lambda: _box_muller(seed_state(1), out),
        "numba legacy np.random": lambda: _numba_legacy(1, out),
    }
    for fn in fns.values():  # compile / load from cache
        fn()
    rng = np.random.default_rng(1)
    t_np = best_time(lambda: rng.standard_normal(size, out=out), repeat)
    print(f"normal generator, one thread, {size:.0e} float64 numbers; numpy Generator.standard_normal "
          f"{size / t_np:10.3e} /s ({t_np / size * 1e9:5.2f} ns)")
    for name, fn in fns.items():
        t = best_time(fn, repeat)
        print(f"  {name:28s} {size / t:10.3e} /s ({t / size * 1e9:5.2f} ns)   "
              f"ratio vs numpy {t_np / t:5.2f}x")


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-generators", action="store_true", help="skip the normal-generator comparison")
    args = p.parse_args(argv)

    n, d, T = args.n, args.d, args.T
    schedule = make_schedule("linear", T)
    x0 = np.random.default_rng(0).uniform(-1, 1, size=(n, d)).astype(np.float32)
    steps = [0, T // 10, T // 2, T]
    t_per_sample = np.random.default_rng(1).integers(0, T + 1, size=n)
    print(f"n={n} d={d} T={T} float32 data, steps={steps}, numba threads={numba.get_num_threads()}, "
          f"best of {args.repeat}")

    # warm-up: compile (or load from cache) every specialisation used below
    trajectory(x0[:2], schedule, steps, seed=0)
    diffuse(x0[:2], schedule, t_per_sample[:2], seed=0)

    work = n * d * max(steps)
    t_nb = best_time(lambda: trajectory(x0, schedule, steps, seed=1), args.repeat)
    rng = np.random.default_rng(1)
    t_np = best_time(lambda: numpy_trajectory(x0, schedule, steps, rng), args.repeat)
    print(f"trajectory  numba {work / t_nb:10.3e} elem*steps/s ({t_nb:7.3f} s)   "
          f"numpy {work / t_np:10.3e} elem*steps/s ({t_np:7.3f} s)   ratio numba/numpy {t_np / t_nb:5.2f}x")

    reps = max(1, int(2e7 // (n * d)))  # ~2e7 elements per timed run
    work = reps * n * d

    def run_nb():
        for r in range(reps):
            diffuse(x0, schedule, t_per_sample, seed=r)

    def run_np():
        for _ in range(reps):
            numpy_diffuse(x0, schedule, t_per_sample, rng)

    t_nb = best_time(run_nb, args.repeat)
    t_np = best_time(run_np, args.repeat)
    print(f"diffuse     numba {work / t_nb:10.3e} elem/s       ({t_nb:7.3f} s)   "
          f"numpy {work / t_np:10.3e} elem/s       ({t_np:7.3f} s)   ratio numba/numpy {t_np / t_nb:5.2f}x")

    if not args.no_generators:
        bench_normal_generators(args.repeat)


if __name__ == "__main__":
    main()
