"""A small, fast, reproducible random-number kernel for numba ``@njit(parallel=True)`` code.

numba's own ``np.random`` inside compiled code is a per-thread Mersenne Twister with a 32-bit
seed: reseeding it costs ~2 microseconds, the seed keeps only 32 bits, and the legacy
``np.random.standard_normal`` costs ~28 ns per number. This module gives every *stream* (a
sample, a block of samples, a Markov chain) its own generator whose whole state is a small
``uint64`` array owned by that stream, so kernels share no state and their output does not depend
on the number of threads or on scheduling:

* **Generator**: xoshiro256** [BV21] (256-bit state, period ``2**256 - 1``, passes BigCrush and
  PractRand), one 64-bit output per call, about a nanosecond.
* **Seeding**: the four state words are four consecutive outputs of SplitMix64 [SLF14] started at
  the stream seed, as the xoshiro authors recommend [BV21]. SplitMix64 is a bijective mixer, so
  distinct 64-bit seeds give distinct states, and adjacent seeds (``s``, ``s + 1``) give unrelated
  streams. Seeds are the full 63-bit integers of :func:`physdiff._util.stream_seeds` (any
  ``int64``/``uint64`` value is accepted, all 64 bits are used; nothing is truncated to 32 bits).
* **Uniform**: ``(u64 >> 11) * 2**-53``, the 53-bit doubles on ``[0, 1)`` [BV21].
* **Normal**: the ziggurat method of Marsaglia & Tsang [MT00] with 256 layers on 64-bit draws
  (8 bits of layer index, 1 sign bit, 52 bits of abscissa), the variant numpy's
  ``Generator.standard_normal`` uses; the tail beyond ``r = 3.6541...`` is sampled exactly by
  Marsaglia's method [Mar64]. It is exact (rejection, no approximation beyond float64 rounding)
  and takes one 64-bit draw 98.5% of the time. On one thread :func:`fill_normal` measured about
  3x faster than the Marsaglia polar method and 8x faster than Box-Muller on the same uniforms,
  and 4-5x faster than numpy's ``Generator.standard_normal`` (``python
  benchmarks/bench_forward.py`` prints the comparison).
* **Bounded integers**: Lemire's multiply-and-reject method [Lem19], unbiased.

Usage inside a kernel (``seeds`` from :func:`physdiff._util.stream_seeds`, one per stream)::

    from physdiff._rng import fill_normal, normal, seed_state

    @njit(parallel=True)
    def kernel(seeds, out):
        for k in prange(seeds.size):
            state = seed_state(seeds[k])     # this stream's own generator
            fill_normal(state, out[k])       # a block of normals: the fast path
            z = normal(state)                # or one number at a time (about half the speed)

All functions are ``@njit`` and can also be called from Python (slowly, one number per call).
:func:`fill_normal` and :func:`fill_uniform` give exactly the numbers of repeated :func:`normal` /
:func:`uniform` calls but keep the state in registers; prefer them for blocks. Equal seeds give
bit-for-bit equal numbers on the same machine (docs/design.md, "Conventions"), and across
machines wherever libm's ``exp``, ``log`` and ``log1p`` round alike (they enter the ziggurat
tables and its rare wedge and tail draws).

Performance notes for kernel authors: do not wrap these functions with ``inline="always"`` or call
them through another non-inlined ``@njit`` helper inside a hot loop: numba then increfs/decrefs the
state array on every call (atomic operations), which measured 3-5x slower.

Note for maintainers: numba's on-disk cache (``cache=True``) of a kernel in another module does not
notice edits to this file; after changing it, touch the modules whose kernels call it (or delete
their ``__pycache__/*.nbi``/``*.nbc`` files).

References
----------
[BV21] Blackman, Vigna (2021), Scrambled linear pseudorandom number generators, ACM Trans. Math.
    Softw. 47(4):36, arXiv:1805.01407 (xoshiro256**; seeding with SplitMix64; 53-bit floats).
[SLF14] Steele, Lea, Flood (2014), Fast splittable pseudorandom number generators, OOPSLA'14
    (SplitMix64).
[MT00] Marsaglia, Tsang (2000), The ziggurat method for generating random variables, J. Stat.
    Softw. 5(8).
[Mar64] Marsaglia (1964), Generating a variable from the tail of the normal distribution,
    Technometrics 6(1):101-102.
[Lem19] Lemire (2019), Fast random integer generation in an interval, ACM Trans. Model. Comput.
    Simul. 29(1):3, arXiv:1805.10941.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import optimize, special

__all__ = [
    "STATE_SIZE",
    "seed_state",
    "reseed",
    "next_u64",
    "uniform",
    "normal",
    "integers",
    "fill_normal",
    "fill_uniform",
]

#: Number of ``uint64`` words in a generator state (xoshiro256**).
STATE_SIZE = 4

# uint64 constants: numba turns int64 (op) uint64 into float64, so every literal that meets a
# uint64 is itself a global np.uint64 (frozen into the compiled code as a typed constant).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_U5 = np.uint64(5)
_U7 = np.uint64(7)
_U8 = np.uint64(8)
_U9 = np.uint64(9)
_U11 = np.uint64(11)
_U17 = np.uint64(17)
_U27 = np.uint64(27)
_U30 = np.uint64(30)
_U31 = np.uint64(31)
_U32 = np.uint64(32)
_U45 = np.uint64(45)
_U64 = np.uint64(64)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_MASK8 = np.uint64(0xFF)
_MASK32 = np.uint64(0xFFFFFFFF)
_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)
_TWO32 = np.uint64(1 << 32)
_INV_2_53 = 1.0 / 9007199254740992.0  # 2**-53


# ---------------------------------------------------------------------------------------------
# ziggurat tables [MT00], built once at import
# ---------------------------------------------------------------------------------------------


def _ziggurat_tables(n_layers: int = 256, bits: int = 52):
    """Tables ``(k, w, f, r)`` of the ``n_layers``-layer ziggurat for ``exp(-x^2/2)`` [MT00].

    Layer ``i >= 1`` is the rectangle ``[0, x_i] x [f(x_i), f(x_{i-1})]`` with ``x_0 = 0``,
    ``x_{n-1} = r``; layer 0 is the base strip ``[0, r] x [0, f(r)]`` plus the tail ``x > r``,
    drawn as a rectangle of width ``V / f(r)``. All layers have the same area ``V``. ``r`` is the
    root (``scipy.optimize.brentq``) of "the top layer has area ``V`` too", i.e. the recursion
    ``f(x_{i-1}) = f(x_i) + V / x_i`` from ``x_{n-1} = r`` closes at ``f(x_0) = 1`` [MT00].

    Returns ``k`` (uint64): a draw ``u < k[i]`` (of ``bits`` bits) lies under the curve for sure;
    ``w`` (float64): ``x = u * w[i]``; ``f`` (float64): ``f(x_i)`` (``f[0] = 1``); and ``r``.
    """
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731

    def area(r):  # V(r): base rectangle plus the Gaussian tail beyond r
        return r * f(r) + math.sqrt(math.pi / 2.0) * special.erfc(r / math.sqrt(2.0))

    def layers(r):
        v = area(r)
        x = np.empty(n_layers)
        x[n_layers - 1] = r
        for i in range(n_layers - 1, 1, -1):
            y = f(x[i]) + v / x[i]
            if y >= 1.0:  # r too small: the stack overshoots the mode before the top layer
                return None, v
            x[i - 1] = math.sqrt(-2.0 * math.log(y))
        return x, v

    def top_excess(r):  # V minus the top layer's area: > 0 for r too small, < 0 for r too large
        x, v = layers(r)
        if x is None:  # r far too small: the layers reach the mode before the top one
            return v
        return v - x[1] * (1.0 - f(x[1]))

    r = optimize.brentq(top_excess, 3.0, 4.5, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    x, v = layers(r)
    scale = float(2**bits)
    q = v / f(r)  # width of the base strip
    k = np.zeros(n_layers, dtype=np.uint64)
    w = np.empty(n_layers)
    fx = np.empty(n_layers)
    k[0] = np.uint64(math.floor(r / q * scale))
    w[0] = q / scale
    fx[0] = 1.0
    for i in range(1, n_layers):
        x_below = x[i - 1] if i > 1 else 0.0  # x_{i-1}, with x_0 = 0 at the top
        k[i] = np.uint64(math.floor(x_below / x[i] * scale))
        w[i] = x[i] / scale
        fx[i] = f(x[i])
    return k, w, fx, r


_ZIG_K, _ZIG_W, _ZIG_F, _ZIG_R = _ziggurat_tables()
_ZIG_INV_R = 1.0 / _ZIG_R


# ---------------------------------------------------------------------------------------------
# generator
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _splitmix64(x):  # pragma: no cover - compiled
    """One SplitMix64 step [SLF14]: returns ``(new counter, output)``."""
    x = x + _GOLDEN
    z = x
    z = (z ^ (z >> _U30)) * _MIX1
    z = (z ^ (z >> _U27)) * _MIX2
    return x, z ^ (z >> _U31)


@njit(cache=True)
def _rotl(x, k):  # pragma: no cover - compiled
    return (x << k) | (x >> (_U64 - k))


@njit(cache=True)
def reseed(state, seed):  # pragma: no cover - compiled
    """Seed an existing generator state in place from a 64-bit ``seed`` [BV21; SLF14].

    Parameters
    ----------
    state : ndarray of uint64, shape (STATE_SIZE,)
        Overwritten with ``STATE_SIZE`` consecutive SplitMix64 outputs started at ``seed``.
    seed : int64 or uint64 scalar
        All 64 bits are used (an int64 is reinterpreted as its two's-complement uint64), e.g. one
        of the 63-bit seeds of :func:`physdiff._util.stream_seeds`. Distinct seeds give distinct
        states; adjacent seeds give unrelated streams.

    Notes
    -----
    SplitMix64 is a bijection of its counter, so four consecutive outputs are never all zero
    (the one state xoshiro256** must avoid). No validation is done (this runs inside kernels);
    the caller passes a C-contiguous uint64 array of length ``STATE_SIZE``.
    """
    x = np.uint64(seed)
    for i in range(STATE_SIZE):
        x, z = _splitmix64(x)
        state[i] = z


@njit(cache=True)
def seed_state(seed):  # pragma: no cover - compiled
    """A new generator state seeded from a 64-bit ``seed`` (see :func:`reseed`).

    Parameters
    ----------
    seed : int64 or uint64 scalar
        The stream's seed; all 64 bits are used.

    Returns
    -------
    state : ndarray of uint64, shape (STATE_SIZE,)
        The xoshiro256** state [BV21]. Pass it to :func:`next_u64`, :func:`uniform`,
        :func:`normal`, :func:`integers`, which advance it in place. A stream owns its state:
        never share one state between threads.

    Examples
    --------
    >>> a, b = seed_state(42), seed_state(42)
    >>> bool(normal(a) == normal(b))
    True
    """
    state = np.empty(STATE_SIZE, dtype=np.uint64)
    reseed(state, seed)
    return state


@njit(cache=True)
def _xoshiro_step(s0, s1, s2, s3):  # pragma: no cover - compiled
    """xoshiro256** [BV21] on a state held in four uint64 locals (registers).

    Returns ``(output, s0, s1, s2, s3)``. Small and free of arrays, so LLVM inlines it and loops
    that keep the state in locals (:func:`fill_normal`) run without memory traffic or calls.
    """
    result = _rotl(s1 * _U5, _U7) * _U9
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, _U45)
    return result, s0, s1, s2, s3


@njit(cache=True)
def next_u64(state):  # pragma: no cover - compiled
    """The next 64-bit output of xoshiro256** [BV21]; advances ``state``.

    Parameters
    ----------
    state : ndarray of uint64, shape (STATE_SIZE,)
        From :func:`seed_state`; modified in place.

    Returns
    -------
    uint64
        Uniform on ``0 .. 2**64 - 1``.
    """
    result, state[0], state[1], state[2], state[3] = _xoshiro_step(state[0], state[1], state[2],
                                                                   state[3])
    return result


@njit(cache=True)
def uniform(state):  # pragma: no cover - compiled
    """A uniform float64 on ``[0, 1)``: the top 53 bits of :func:`next_u64` times ``2**-53``.

    [BV21]. Every multiple of ``2**-53`` in ``[0, 1)`` has probability ``2**-53``;
    ``1 - uniform(state)`` lies in ``(0, 1]`` (safe for ``log``). Advances ``state``.
    """
    return float(next_u64(state) >> _U11) * _INV_2_53


@njit(cache=True)
def normal(state):  # pragma: no cover - compiled
    """A standard normal float64 ``N(0, 1)``: 256-layer ziggurat [MT00] on xoshiro256** draws.

    One 64-bit draw gives the layer (8 bits), the sign (1 bit) and the abscissa (52 bits); 98.5%
    of draws are accepted at once. Otherwise the wedge is tested against ``exp(-x^2/2)`` or, in
    the base layer, the tail ``|x| > r = 3.6541...`` is sampled exactly [Mar64]:
    ``x = r - log(U1)/r`` accepted when ``-2 log(U2) > (x - r)^2``. Exact up to float64 rounding.

    Parameters
    ----------
    state : ndarray of uint64, shape (STATE_SIZE,)
        From :func:`seed_state`; advanced in place (by one or more draws).

    Returns
    -------
    float64
    """
    while True:
        r = next_u64(state)
        idx = np.intp(r & _MASK8)
        r >>= _U8
        negative = (r & _ONE) != _ZERO
        rabs = (r >> _ONE) & _MASK52
        x = float(rabs) * _ZIG_W[idx]
        if negative:
            x = -x
        if rabs < _ZIG_K[idx]:
            return x
        if idx == 0:
            # tail beyond r [Mar64]; 1 - U in (0, 1] keeps log finite
            while True:
                xx = -_ZIG_INV_R * math.log1p(-uniform(state))
                yy = -math.log1p(-uniform(state))
                if yy + yy > xx * xx:
                    return -(_ZIG_R + xx) if negative else _ZIG_R + xx
        elif (_ZIG_F[idx - 1] - _ZIG_F[idx]) * uniform(state) + _ZIG_F[idx] < math.exp(-0.5 * x * x):
            return x


@njit(cache=True)
def integers(state, n):  # pragma: no cover - compiled
    """A uniform integer on ``0 .. n - 1`` (unbiased), as int64 [Lem19].

    For ``n <= 2**32``: Lemire's multiply-shift of a 32-bit draw with rejection of the
    ``2**32 mod n`` biased values (almost never more than one draw); for larger ``n``: bit-mask
    rejection on 64-bit draws.

    Parameters
    ----------
    state : ndarray of uint64, shape (STATE_SIZE,)
        Advanced in place.
    n : int, 1 <= n <= 2**63 - 1
        Not validated (this runs inside kernels); ``n <= 0`` returns 0.

    Returns
    -------
    int64
    """
    if n <= 1:
        return np.int64(0)
    un = np.uint64(n)
    if un <= _TWO32:
        m = (next_u64(state) >> _U32) * un
        low = m & _MASK32
        if low < un:
            threshold = (_TWO32 - un) % un
            while low < threshold:
                m = (next_u64(state) >> _U32) * un
                low = m & _MASK32
        return np.int64(m >> _U32)
    mask = un - _ONE
    mask |= mask >> np.uint64(1)
    mask |= mask >> np.uint64(2)
    mask |= mask >> np.uint64(4)
    mask |= mask >> np.uint64(8)
    mask |= mask >> np.uint64(16)
    mask |= mask >> np.uint64(32)
    while True:
        v = next_u64(state) & mask
        if v < un:
            return np.int64(v)


@njit(cache=True)
def fill_normal(state, out):  # pragma: no cover - compiled
    """Fill the 1-D array ``out`` with standard normals; the fast path for kernels.

    Gives exactly the numbers that ``out.size`` successive calls of :func:`normal` would (same
    ziggurat [MT00], same draws), about twice as fast: the generator state lives in registers
    for the whole loop and no function is called per number.

    Parameters
    ----------
    state : ndarray of uint64, shape (STATE_SIZE,)
        Advanced in place.
    out : ndarray, 1-D, float64 or float32
        Overwritten, in order (float32 receives the float64 draws rounded).
    """
    s0 = state[0]
    s1 = state[1]
    s2 = state[2]
    s3 = state[3]
    for i in range(out.size):
        # the body of normal(), with next_u64/uniform on the locals s0..s3
        while True:
            r, s0, s1, s2, s3 = _xoshiro_step(s0, s1, s2, s3)
            idx = np.intp(r & _MASK8)
            r >>= _U8
            negative = (r & _ONE) != _ZERO
            rabs = (r >> _ONE) & _MASK52
            x = float(rabs) * _ZIG_W[idx]
            if negative:
                x = -x
            if rabs < _ZIG_K[idx]:
                break
            if idx == 0:
                while True:
                    u, s0, s1, s2, s3 = _xoshiro_step(s0, s1, s2, s3)
                    xx = -_ZIG_INV_R * math.log1p(-(float(u >> _U11) * _INV_2_53))
                    u, s0, s1, s2, s3 = _xoshiro_step(s0, s1, s2, s3)
                    yy = -math.log1p(-(float(u >> _U11) * _INV_2_53))
                    if yy + yy > xx * xx:
                        break
                x = -(_ZIG_R + xx) if negative else _ZIG_R + xx
                break
            u, s0, s1, s2, s3 = _xoshiro_step(s0, s1, s2, s3)
            if (_ZIG_F[idx - 1] - _ZIG_F[idx]) * (float(u >> _U11) * _INV_2_53) + _ZIG_F[idx] \
                    < math.exp(-0.5 * x * x):
                break
        out[i] = x
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3


@njit(cache=True)
def fill_uniform(state, out):  # pragma: no cover - compiled
    """Fill the 1-D array ``out`` (float64 or float32) with :func:`uniform` draws, in order.

    Same numbers as ``out.size`` calls of :func:`uniform`; the state stays in registers.
    """
    s0 = state[0]
    s1 = state[1]
    s2 = state[2]
    s3 = state[3]
    for i in range(out.size):
        u, s0, s1, s2, s3 = _xoshiro_step(s0, s1, s2, s3)
        out[i] = float(u >> _U11) * _INV_2_53
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3
