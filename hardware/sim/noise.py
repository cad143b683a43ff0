"""Deterministic procedural noise evaluated in world coordinates (um).

Every random texture of the simulated slide is a function of position only: lattice values come
from a hash of (seed, lattice index), never from a sequential random stream, so a field renders
identically whichever path the stage took to reach it and however the field is cut.

`value_noise` is cubic B-spline value noise: hashed values on a lattice of spacing `scale_um`
(optionally different in x and y, for stretched fibre textures), smoothed by the separable cubic
B-spline kernel. On a regular pixel grid it is evaluated separably (a sparse 4-tap matrix per axis),
which costs a few operations per pixel whatever the lattice size. Values are normalised to
zero mean and unit standard deviation. `value_noise_points` evaluates the same function at
scattered points (object placement).
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import sparse

_MASK64 = (1 << 64) - 1
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11 = np.uint64(11)


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for an independent stream named by `keys` (ints or strings)."""
    parts = [int(seed) & _MASK64]
    for k in keys:
        parts.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & _MASK64)
    ss = np.random.SeedSequence(parts)
    return int(ss.generate_state(1, dtype=np.uint64)[0]) >> 1


def hash_uniform(seed: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Uniform values in [0, 1) from integer lattice coordinates (any broadcastable shapes).

    splitmix64 finaliser over a mix of (i, j, seed); identical inputs give identical outputs.
    """
    i, j = np.broadcast_arrays(np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64))
    shape = i.shape
    # 1-d arrays throughout: array arithmetic wraps modulo 2^64 silently, scalar math warns
    iu = i.reshape(-1).view(np.uint64)
    ju = j.reshape(-1).view(np.uint64)
    h = (iu * _P1) ^ (ju * _P2) ^ np.full(1, int(seed) & _MASK64, dtype=np.uint64)
    h = h ^ (h >> _S30)
    h = h * _M1
    h = h ^ (h >> _S27)
    h = h * _M2
    h = h ^ (h >> _S31)
    return ((h >> _S11).astype(np.float64) * (1.0 / (1 << 53))).reshape(shape)


def _bspline_weights(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline weights (4, n) for lattice offsets -1, 0, 1, 2 at fractions t in [0, 1)."""
    t2 = t * t
    t3 = t2 * t
    w0 = (1.0 - t) ** 3 / 6.0
    w1 = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w2 = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    w3 = t3 / 6.0
    return np.stack([w0, w1, w2, w3])


def _bspline_variance_1d() -> float:
    t = (np.arange(4096) + 0.5) / 4096
    return float(np.mean(np.sum(_bspline_weights(t) ** 2, axis=0)))


#: Standard deviation of lattice values uniform in [-1, 1] after 2-D B-spline smoothing.
_RAW_STD = float(np.sqrt(1.0 / 3.0) * _bspline_variance_1d())


def _axis_taps(coords_um: np.ndarray, scale_um: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    u = np.asarray(coords_um, dtype=np.float64) / scale_um
    iu = np.floor(u)
    w = _bspline_weights(u - iu).astype(np.float32)
    iu = iu.astype(np.int64)
    lo = int(iu.min()) - 1
    n = int(iu.max()) + 3 - lo
    taps = (iu - 1 - lo)[None, :] + np.arange(4)[:, None]
    return taps, w, lo, n


def _tap_matrix(taps: np.ndarray, weights: np.ndarray, n_lattice: int) -> sparse.csr_matrix:
    """Sparse (n_points, n_lattice) interpolation matrix with 4 taps per row."""
    n = taps.shape[1]
    return sparse.csr_matrix(
        (weights.T.ravel(), taps.T.ravel(), np.arange(0, 4 * n + 1, 4)), shape=(n, n_lattice)
    )


def value_noise(
    xs_um: np.ndarray,
    ys_um: np.ndarray,
    scale_um: float | tuple[float, float],
    seed: int,
) -> np.ndarray:
    """Unit-variance value noise on the grid `ys_um` x `xs_um` -> (len(ys), len(xs)) float32.

    `scale_um` is the lattice spacing, or (sx, sy) for anisotropic (stretched) noise.
    """
    sx, sy = (scale_um, scale_um) if np.isscalar(scale_um) else scale_um  # type: ignore[misc]
    tx, wx, x_lo, nx = _axis_taps(xs_um, float(sx))
    ty, wy, y_lo, ny = _axis_taps(ys_um, float(sy))
    jj = np.arange(y_lo, y_lo + ny)[:, None]
    ii = np.arange(x_lo, x_lo + nx)[None, :]
    lattice = (hash_uniform(seed, ii, jj) * 2.0 - 1.0).astype(np.float32)
    if len(xs_um) * len(ys_um) <= 4096:
        # small grids (tissue look-ups): dense 4-tap gathers, no sparse-matrix set-up
        rows = sum(wx[k][None, :] * lattice[:, tx[k]] for k in range(4))
        out = sum(wy[k][:, None] * rows[ty[k], :] for k in range(4)).astype(np.float32)
    else:
        rows = lattice @ _tap_matrix(tx, wx, nx).T.tocsr()  # (ny, W)
        out = np.asarray(_tap_matrix(ty, wy, ny) @ rows, dtype=np.float32)  # (H, W)
    out *= np.float32(1.0 / _RAW_STD)
    return out


def value_noise_points(
    x_um: np.ndarray, y_um: np.ndarray, scale_um: float | tuple[float, float], seed: int
) -> np.ndarray:
    """The same noise as `value_noise`, evaluated at scattered points (same shapes as x, y)."""
    sx, sy = (scale_um, scale_um) if np.isscalar(scale_um) else scale_um  # type: ignore[misc]
    u = np.asarray(x_um, dtype=np.float64) / float(sx)
    v = np.asarray(y_um, dtype=np.float64) / float(sy)
    iu, iv = np.floor(u), np.floor(v)
    wu, wv = _bspline_weights(u - iu), _bspline_weights(v - iv)
    iu64, iv64 = iu.astype(np.int64), iv.astype(np.int64)
    out = np.zeros(u.shape, dtype=np.float64)
    for a in range(4):
        for b in range(4):
            lat = hash_uniform(seed, iu64 + (a - 1), iv64 + (b - 1)) * 2.0 - 1.0
            out += wu[a] * wv[b] * lat
    return out / _RAW_STD


def fbm(
    xs_um: np.ndarray,
    ys_um: np.ndarray,
    scale_um: float,
    seed: int,
    octaves: int = 3,
    gain: float = 0.5,
) -> np.ndarray:
    """Fractal sum of `octaves` value-noise layers (each half the scale), unit variance."""
    total = np.zeros((len(ys_um), len(xs_um)), dtype=np.float32)
    norm = 0.0
    for o in range(octaves):
        amp = gain**o
        total += np.float32(amp) * value_noise(xs_um, ys_um, scale_um / 2**o, seed + 7919 * o)
        norm += amp * amp
    total *= np.float32(1.0 / np.sqrt(norm))
    return total


def fbm_points(
    x_um: np.ndarray, y_um: np.ndarray, scale_um: float, seed: int, octaves: int = 3, gain=0.5
) -> np.ndarray:
    """`fbm` at scattered points."""
    total = np.zeros(np.shape(x_um), dtype=np.float64)
    norm = 0.0
    for o in range(octaves):
        amp = gain**o
        total += amp * value_noise_points(x_um, y_um, scale_um / 2**o, seed + 7919 * o)
        norm += amp * amp
    return total / np.sqrt(norm)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at edge0 to 1 at edge1 (same dtype as x)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def value_noise_3d(
    xs_um: np.ndarray,
    ys_um: np.ndarray,
    depths_um: np.ndarray,
    scale_um: float | tuple[float, float],
    scale_z_um: float,
    seed: int,
) -> np.ndarray:
    """Value noise that is also smooth in depth: one unit-variance field per depth ->
    (len(depths), len(ys), len(xs)) float32.

    2-D fields on a lattice of depths `scale_z_um` apart (each seeded by its depth index) are
    blended with cubic B-spline weights, so slabs closer than `scale_z_um` share most of
    their texture, like real tissue structure that runs through a section. Each depth's
    blend is rescaled to unit variance.
    """
    u = np.asarray(depths_um, np.float64) / scale_z_um
    iu = np.floor(u).astype(np.int64)
    w = _bspline_weights(u - iu)  # (4, n_depths)
    lo = int(iu.min()) - 1
    n_fields = int(iu.max()) + 3 - lo
    mix = np.zeros((len(u), n_fields), np.float32)  # depth d <- lattice field j
    for d in range(len(u)):
        norm = 1.0 / np.sqrt(np.sum(w[:, d] ** 2))
        for t in range(4):
            mix[d, int(iu[d]) - 1 + t - lo] = w[t, d] * norm
    h, wd = len(ys_um), len(xs_um)
    fields = np.empty((n_fields, h * wd), np.float32)
    for j in range(n_fields):
        seed_j = derive_seed(seed, "depth", lo + j)
        fields[j] = value_noise(xs_um, ys_um, scale_um, seed_j).reshape(-1)
    return (mix @ fields).reshape(len(u), h, wd)


def fbm_3d(
    xs_um: np.ndarray,
    ys_um: np.ndarray,
    depths_um: np.ndarray,
    scale_um: float,
    seed: int,
    octaves: int = 2,
    gain: float = 0.5,
) -> np.ndarray:
    """Fractal `value_noise_3d`, isotropic (depth scale = lateral scale per octave)."""
    total = np.zeros((len(depths_um), len(ys_um), len(xs_um)), np.float32)
    norm = 0.0
    for o in range(octaves):
        amp = gain**o
        s = scale_um / 2**o
        total += np.float32(amp) * value_noise_3d(xs_um, ys_um, depths_um, s, s, seed + 7919 * o)
        norm += amp * amp
    total *= np.float32(1.0 / np.sqrt(norm))
    return total
