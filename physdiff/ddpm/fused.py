"""A fused CPU training epoch for small per-timestep nets (small ``d`` and ``hidden``).

The batched trainer (:mod:`.train`) runs every minibatch step as a handful of batched torch
operations over the chunk's nets; for nets of a few inputs (the Swiss roll's ``d = 2``) each of them
is tiny and the ``(nets, batch, hidden)`` activations go through memory several times per step.
Here one numba kernel runs a whole epoch of one net: its forward pass, backward pass and Adam
update are done four samples at a time with the net's weights, gradients and Adam moments kept in
cache, and no ``(batch, hidden)`` activation is stored. The chunk's nets are shared out in
contiguous runs among numba's number of threads, Python threads each calling the kernel (compiled
``nogil``) on its run, one net after another.

It consumes exactly the randomness of the batched trainer (the permutations and noise of
``train._randomness``), computes the same loss ``w_t * mean (eps - eps_theta_t(x_t))^2``
[Ho20, eqs. 12 and 14] and the same Adam update as ``torch.optim.Adam`` [KB15], in float32, so it
gives the batched trainer's result to float32 rounding (the order of the floating-point sums
differs). Adam amplifies such differences wherever a gradient component is near zero (its step
is ``~lr`` whatever the gradient's size), so after many steps weights differ by up to ``~lr``
per step in a few components (measured on the Curie-Weiss preset, 189 steps at lr 1e-3: max
``|dW1|`` 4.5e-3, per-epoch losses equal to 8e-6 relative), as between any two summation orders.
Each net is computed by one thread from start to end of the epoch, so the result does not depend
on the number of threads. Nor does it depend on numba's cache: the kernel used to be a
``parallel=True`` (``prange``) one, which numba optimises differently when it compiles it and when
it loads it from its cache, so that a run's bytes differed between the first and later processes
(tested); the threads are also 5-10 % faster, and leave numba's OpenMP pool, which slows torch's
ops once started, unstarted.

Layout: the kernel works in place on the trainer's stacked tensors (``W1`` (C, d, H), ``b1`` (C, H),
``W2`` (C, H, d), ``b2`` (C, d) and the Adam moments of :class:`.train.StackedAdam`); each net's
``W2`` and its moments are transposed to (d, H) in a per-net scratch for the epoch, so that every
inner loop runs over the ``H`` contiguous hidden units.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: Algorithm 1; eqs. 12 and 14.
[KB15] Kingma, Ba (2015), Adam, arXiv:1412.6980, Algorithm 1 (torch.optim.Adam's bias-corrected form).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit

from .._util import PhysdiffError, map_threads

__all__ = ["use_fused", "train_epoch"]

#: "auto": the fused epoch where :func:`use_fused`'s rule says it is faster; "always" / "never"
#: force it on / off (CPU, default optimiser only), for tests and benchmarks.
MODE = "auto"

# LLVM may reassociate sums (vectorised dot products) and contract to FMA; NaN and inf are kept
# (the trainer checks every loss for them).
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def use_fused(device, d: int, hidden: int, batch: int) -> bool:
    """Whether :func:`physdiff.ddpm.train` runs its epochs with :func:`train_epoch`.

    Only on the CPU (and the trainer uses it only with its own optimiser, :class:`.train.StackedAdam`,
    not with a custom ``optimizer=``). ``MODE = "auto"`` applies a rule measured on 2 CPU cores
    and on one (torch and numba the same number of threads; 40 nets, 2000 points, fused / batched
    time): 0.12 (d = 2, H = 1000), 0.40 (d = 4, H = 256), 0.53 (d = 8, H = 256) and 0.99 / 0.80 on
    2 / 1 cores at d = 16 (H = 256); from d = 32 the batched matmuls win: 1.06 / 1.12 (d = 32, H =
    128), 1.13 / 1.12 (d = 64, H = 160: Curie-Weiss' preset), 1.16 / 1.03 (d = 128, H = 256). So
    the fused epoch is used for ``d <= 16`` (the Swiss roll's d = 2) with ``d * hidden <= 2 ** 17``.
    (Before the batched path wrote its ReLU derivative with ``sign`` instead of ``masked_fill_``,
    the fused epoch also won at d = 64.)
    """
    if torch.device(device).type != "cpu" or MODE == "never":
        return False
    if MODE == "always":
        return True
    return d <= 16 and d * hidden <= (1 << 17)


def train_epoch(params, opt, x0, perms, noise, sa, s1, w, batch: int, activation: str, steps,
                epoch: int) -> torch.Tensor:
    """One epoch of ``C`` nets, in place: the same updates as the batched trainer's minibatch loop.

    Parameters
    ----------
    params : list of 4 Tensors
        ``W1`` (C, d, H), ``b1`` (C, H), ``W2`` (C, H, d), ``b2`` (C, d), float32, contiguous, CPU
        (updated in place).
    opt : train.StackedAdam
        Its moments are updated in place and its ``step_count`` advanced by the number of minibatches.
    x0 : Tensor or array (n, d), float32
    perms : Tensor (C, n), int64; noise : Tensor (C, n, d), float32
        The epoch's randomness from ``train._randomness``.
    sa, s1, w : Tensor (C, ...) float32
        ``sqrt(alpha_bar_t)``, ``sqrt(1 - alpha_bar_t)`` and the loss weight of each net.
    batch : int
        Minibatch size (the last minibatch holds the remainder).
    activation : {"relu", "linear"}
    steps : list of int
        1-based steps of the nets (for the error message).
    epoch : int
        0-based epoch (for the error message).

    Returns
    -------
    Tensor (C,), float64
        ``sum_k w_t * loss_k * size_k`` over the minibatches: the trainer's ``loss_sum``.

    Raises
    ------
    PhysdiffError
        A non-finite loss (the message of the batched trainer).
    """
    W1, b1, W2, b2 = (p.detach().numpy() for p in params)
    mW1, mb1, mW2, mb2 = (m.numpy() for m in opt.exp_avg)
    vW1, vb1, vW2, vb2 = (v.numpy() for v in opt.exp_avg_sq)
    x0 = x0.numpy() if isinstance(x0, torch.Tensor) else np.asarray(x0, dtype=np.float32)
    C = W1.shape[0]
    n = x0.shape[0]
    nb = math.ceil(n / batch)
    k0 = opt.step_count
    beta1, beta2 = opt.betas
    # Adam's per-step scalars in float64 as torch.optim.Adam computes them, then used in float32
    ks = np.arange(k0 + 1, k0 + nb + 1, dtype=np.float64)
    bc1 = 1.0 - beta1 ** ks
    bc2_sqrt = np.sqrt(1.0 - beta2 ** ks)
    step_size = (opt.lr[None, :] / bc1[:, None]).astype(np.float32)  # (nb, C)
    loss = np.zeros(C)
    bad = np.full(C, -1, dtype=np.int64)
    as32 = lambda t: np.ascontiguousarray(t.detach().reshape(-1).numpy(), dtype=np.float32)  # noqa: E731
    args = (x0, perms.numpy(), noise.numpy(), W1, b1, W2, b2, mW1, vW1, mb1, vb1, mW2, vW2, mb2, vb2,
            as32(sa), as32(s1), as32(w), step_size, bc2_sqrt.astype(np.float32), np.float32(1.0 - beta1),
            np.float32(1.0 - beta2), np.float32(beta2), np.float32(opt.eps), int(batch), activation == "relu",
            loss, bad)
    # each net by one thread from start to end: the result does not depend on the number of threads
    workers = max(1, min(numba.get_num_threads(), C))
    map_threads(lambda nets: _epoch_kernel(*args, nets[0], nets[-1] + 1), np.array_split(np.arange(C), workers),
                workers)
    if (bad >= 0).any():
        k = int(bad[bad >= 0].min())
        at = [int(steps[i]) for i in np.flatnonzero(bad == k)]
        raise PhysdiffError(
            f"training diverged: non-finite loss at epoch {epoch + 1}, minibatch {k + 1}, "
            f"timesteps t={at[:10]}{'...' if len(at) > 10 else ''} (lr={opt.lr.max():g}); "
            "lower the learning rate (config.lr / lr_first) or check the data scale")
    names = ("W1", "b1", "W2", "b2")  # advance the optimiser's step count (public interface)
    opt.load_state_tensors(names, opt.state_tensors(names), k0 + nb)
    return torch.from_numpy(loss)


@njit(cache=True, fastmath=_FASTMATH)
def _adam(p, g, m, v, step_size, bc2_sqrt, beta2, omb1, omb2, eps):
    """``torch.optim.Adam``'s single-tensor update of the flat float32 arrays ``p``, ``m``, ``v``."""
    for j in range(p.size):
        gj = g[j]
        mj = m[j] + omb1 * (gj - m[j])  # m.lerp_(g, 1 - beta1)
        vj = v[j] * beta2 + omb2 * gj * gj  # v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m[j] = mj
        v[j] = vj
        p[j] = p[j] - step_size * (mj / (np.sqrt(vj) / bc2_sqrt + eps))


@njit(cache=True, fastmath=_FASTMATH)
def _block_step(xb, e, nv, w1, b1, w2t, b2, z, dz, g, g1, gb1, g2t, gb2, coef, relu):
    """Forward and backward of 4 samples (rows of ``xb``, targets ``e``, both (4, d)), accumulating
    the gradients ``g1`` (d, H), ``gb1`` (H,), ``g2t`` (d, H), ``gb2`` (d,); ``z``, ``dz`` (4, H) are
    scratch. Every weight and gradient row is read once per 4 samples (from L1), and every inner
    loop runs over the H contiguous hidden units (vectorised). Rows ``>= nv`` are padding (zero
    gradient). Returns the summed squared error of the ``nv`` valid rows."""
    d, H = w1.shape
    z0, z1, z2, z3 = z[0], z[1], z[2], z[3]
    d0, d1, d2, d3 = dz[0], dz[1], dz[2], dz[3]
    for j in range(H):
        bj = b1[j]
        z0[j] = bj
        z1[j] = bj
        z2[j] = bj
        z3[j] = bj
    for c in range(d):
        x0, x1, x2, x3 = xb[0, c], xb[1, c], xb[2, c], xb[3, c]
        wr = w1[c]
        for j in range(H):
            wj = wr[j]
            z0[j] += x0 * wj
            z1[j] += x1 * wj
            z2[j] += x2 * wj
            z3[j] += x3 * wj
    if relu:
        for j in range(H):
            if z0[j] < 0:
                z0[j] = 0
            if z1[j] < 0:
                z1[j] = 0
            if z2[j] < 0:
                z2[j] = 0
            if z3[j] < 0:
                z3[j] = 0
    sq = 0.0
    for c in range(d):
        wr = w2t[c]
        s0 = np.float32(0)
        s1 = np.float32(0)
        s2 = np.float32(0)
        s3 = np.float32(0)
        for j in range(H):
            wj = wr[j]
            s0 += z0[j] * wj
            s1 += z1[j] * wj
            s2 += z2[j] * wj
            s3 += z3[j] * wj
        for s, acc in ((0, s0), (1, s1), (2, s2), (3, s3)):
            if s < nv:
                r = (b2[c] + acc) - e[s, c]
                sq += r * r
                g[s, c] = coef * r
                gb2[c] += g[s, c]
            else:
                g[s, c] = 0
    for j in range(H):
        d0[j] = 0
        d1[j] = 0
        d2[j] = 0
        d3[j] = 0
    for c in range(d):
        g0, g1_, g2, g3 = g[0, c], g[1, c], g[2, c], g[3, c]
        wr = w2t[c]
        gr = g2t[c]
        for j in range(H):
            wj = wr[j]
            d0[j] += g0 * wj
            d1[j] += g1_ * wj
            d2[j] += g2 * wj
            d3[j] += g3 * wj
            gr[j] += g0 * z0[j] + g1_ * z1[j] + g2 * z2[j] + g3 * z3[j]
    if relu:
        for j in range(H):
            if z0[j] <= 0:
                d0[j] = 0
            if z1[j] <= 0:
                d1[j] = 0
            if z2[j] <= 0:
                d2[j] = 0
            if z3[j] <= 0:
                d3[j] = 0
    for c in range(d):
        x0, x1, x2, x3 = xb[0, c], xb[1, c], xb[2, c], xb[3, c]
        gr = g1[c]
        for j in range(H):
            gr[j] += x0 * d0[j] + x1 * d1[j] + x2 * d2[j] + x3 * d3[j]
    for j in range(H):
        gb1[j] += d0[j] + d1[j] + d2[j] + d3[j]
    return sq


@njit(cache=True, fastmath=_FASTMATH)
def _block_step_d2(xb, e, nv, w1, b1, w2t, b2, g, g1, gb1, g2t, gb2, coef, relu):
    """``_block_step`` for ``d = 2`` (the Swiss roll): two passes over the hidden units with every
    sample's values in registers, no scratch rows. Pass 1 accumulates the predictions; pass 2
    recomputes the pre-activations (4 FMAs per unit and sample) and accumulates every gradient."""
    H = w1.shape[1]
    x00, x01, x10, x11 = xb[0, 0], xb[0, 1], xb[1, 0], xb[1, 1]
    x20, x21, x30, x31 = xb[2, 0], xb[2, 1], xb[3, 0], xb[3, 1]
    wa, wb, bb, va, vb = w1[0], w1[1], b1, w2t[0], w2t[1]
    p00 = p01 = p10 = p11 = p20 = p21 = p30 = p31 = np.float32(0)
    zero = np.float32(0)
    for j in range(H):
        z0 = bb[j] + x00 * wa[j] + x01 * wb[j]
        z1 = bb[j] + x10 * wa[j] + x11 * wb[j]
        z2 = bb[j] + x20 * wa[j] + x21 * wb[j]
        z3 = bb[j] + x30 * wa[j] + x31 * wb[j]
        if relu:
            z0 = z0 if not z0 < zero else zero  # NaN passes through, as in torch.relu
            z1 = z1 if not z1 < zero else zero
            z2 = z2 if not z2 < zero else zero
            z3 = z3 if not z3 < zero else zero
        p00 += z0 * va[j]
        p01 += z0 * vb[j]
        p10 += z1 * va[j]
        p11 += z1 * vb[j]
        p20 += z2 * va[j]
        p21 += z2 * vb[j]
        p30 += z3 * va[j]
        p31 += z3 * vb[j]
    sq = 0.0
    preds = ((p00, p01), (p10, p11), (p20, p21), (p30, p31))
    for s in range(4):
        for c in range(2):
            if s < nv:
                r = (b2[c] + preds[s][c]) - e[s, c]
                sq += r * r
                g[s, c] = coef * r
                gb2[c] += g[s, c]
            else:
                g[s, c] = 0
    g00, g01, g10, g11 = g[0, 0], g[0, 1], g[1, 0], g[1, 1]
    g20, g21, g30, g31 = g[2, 0], g[2, 1], g[3, 0], g[3, 1]
    ga, gb, ua, ub, gbb = g1[0], g1[1], g2t[0], g2t[1], gb1
    for j in range(H):
        z0 = bb[j] + x00 * wa[j] + x01 * wb[j]
        z1 = bb[j] + x10 * wa[j] + x11 * wb[j]
        z2 = bb[j] + x20 * wa[j] + x21 * wb[j]
        z3 = bb[j] + x30 * wa[j] + x31 * wb[j]
        d0 = g00 * va[j] + g01 * vb[j]
        d1 = g10 * va[j] + g11 * vb[j]
        d2 = g20 * va[j] + g21 * vb[j]
        d3 = g30 * va[j] + g31 * vb[j]
        if relu:
            d0 = d0 if z0 > zero else zero
            d1 = d1 if z1 > zero else zero
            d2 = d2 if z2 > zero else zero
            d3 = d3 if z3 > zero else zero
            z0 = z0 if z0 > zero else zero
            z1 = z1 if z1 > zero else zero
            z2 = z2 if z2 > zero else zero
            z3 = z3 if z3 > zero else zero
        ua[j] += g00 * z0 + g10 * z1 + g20 * z2 + g30 * z3
        ub[j] += g01 * z0 + g11 * z1 + g21 * z2 + g31 * z3
        ga[j] += x00 * d0 + x10 * d1 + x20 * d2 + x30 * d3
        gb[j] += x01 * d0 + x11 * d1 + x21 * d2 + x31 * d3
        gbb[j] += d0 + d1 + d2 + d3
    return sq


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _epoch_kernel(x0, perms, noise, W1, b1, W2, b2, mW1, vW1, mb1, vb1, mW2, vW2, mb2, vb2,
                   sa, s1, w, step_size, bc2_sqrt, omb1, omb2, beta2, eps, B, relu, loss, bad, i0, i1):
    """The epoch of nets ``i0 .. i1 - 1``, one after another (threads run disjoint ranges)."""
    C, d, H = W1.shape
    n = x0.shape[0]
    nb = (n + B - 1) // B
    for i in range(i0, i1):
        w1, bi1, bi2 = W1[i], b1[i], b2[i]
        w2t = np.ascontiguousarray(W2[i].T)
        m2t = np.ascontiguousarray(mW2[i].T)
        v2t = np.ascontiguousarray(vW2[i].T)
        g1 = np.empty((d, H), np.float32)
        g2t = np.empty((d, H), np.float32)
        gb1 = np.empty(H, np.float32)
        gb2 = np.empty(d, np.float32)
        z = np.empty((4, H), np.float32)
        dz = np.empty((4, H), np.float32)
        xb = np.zeros((4, d), np.float32)
        e = np.zeros((4, d), np.float32)
        g = np.empty((4, d), np.float32)
        acc = 0.0
        for k in range(nb):
            lo = k * B
            hi = min(lo + B, n)
            g1[:] = 0
            g2t[:] = 0
            gb1[:] = 0
            gb2[:] = 0
            coef = np.float32(2.0 * w[i] / ((hi - lo) * d))
            sq = 0.0
            for b0 in range(lo, hi, 4):
                nv = min(4, hi - b0)
                for s in range(nv):
                    p = perms[i, b0 + s]
                    for c in range(d):
                        e[s, c] = noise[i, b0 + s, c]
                        xb[s, c] = sa[i] * x0[p, c] + s1[i] * e[s, c]
                if d == 2:
                    sq += _block_step_d2(xb, e, nv, w1, bi1, w2t, bi2, g, g1, gb1, g2t, gb2, coef, relu)
                else:
                    sq += _block_step(xb, e, nv, w1, bi1, w2t, bi2, z, dz, g, g1, gb1, g2t, gb2, coef, relu)
            per_t = np.float32(sq / ((hi - lo) * d))
            if not np.isfinite(per_t):
                bad[i] = k
                break
            acc += np.float64(w[i] * per_t) * (hi - lo)
            ss, b2s = step_size[k, i], bc2_sqrt[k]
            _adam(w1.reshape(-1), g1.reshape(-1), mW1[i].reshape(-1), vW1[i].reshape(-1), ss, b2s, beta2,
                  omb1, omb2, eps)
            _adam(bi1, gb1, mb1[i], vb1[i], ss, b2s, beta2, omb1, omb2, eps)
            _adam(w2t.reshape(-1), g2t.reshape(-1), m2t.reshape(-1), v2t.reshape(-1), ss, b2s, beta2,
                  omb1, omb2, eps)
            _adam(bi2, gb2, mb2[i], vb2[i], ss, b2s, beta2, omb1, omb2, eps)
        W2[i][:, :] = w2t.T
        mW2[i][:, :] = m2t.T
        vW2[i][:, :] = v2t.T
        loss[i] = acc

