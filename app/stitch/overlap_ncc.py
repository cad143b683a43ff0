"""The normalised cross-correlation of the actual overlap of two windows, at every shift of a
box at once.

For a displacement s (window a(u) against window b(u - s)) only the part where both windows
have pixels counts, and the NCC normalises over exactly that part:

    NCC(s) = (Sab - Sa Sb / n) / sqrt((Saa - Sa^2 / n) (Sbb - Sb^2 / n))

Sab(s), the sum of products, is one zero-padded FFT cross-correlation (padded just enough that
no shift of the box wraps onto another); the sums Sa, Saa, Sb, Sbb over the overlap rectangle
and its size n come from integral images. So the whole box costs about what one phase
correlation does, and unlike a phase-correlation peak it is the quantity that decides.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.fft as sfft

#: Overlaps whose variance is below this (relative to the squared mean) count as flat.
_FLAT = 1e-12


def _integrals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integral images (float64, one row and column of zeros first) of x and of x^2."""
    total, squares = cv2.integral2(x, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    return total, squares


def _rect_sums(
    table: np.ndarray, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray
) -> np.ndarray:
    """Sums over [y0, y1) x [x0, x1) for every (y, x) combination (outer product)."""
    y0, y1 = y0[:, None], y1[:, None]
    x0, x1 = x0[None, :], x1[None, :]
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def overlap_ncc_map(
    a: np.ndarray,
    b: np.ndarray,
    sy: tuple[int, int],
    sx: tuple[int, int],
    min_side: int = 1,
) -> np.ndarray:
    """NCC of the overlap of same-shape windows `a` and `b` for every displacement
    (sy, sx) with sy in [sy[0], sy[1]] and sx in [sx[0], sx[1]] (a(u) ~ b(u - s)); shape
    (sy[1] - sy[0] + 1, sx[1] - sx[0] + 1). Displacements that leave an overlap narrower than
    `min_side` pixels, or a flat one, get -1."""
    if a.shape != b.shape:
        raise ValueError(f"windows differ in shape: {a.shape} vs {b.shape}")
    h, w = a.shape
    ys = np.arange(sy[0], sy[1] + 1)
    xs = np.arange(sx[0], sx[1] + 1)
    # Rows of the overlap in a's and b's coordinates, per displacement.
    ay0, ay1 = np.clip(ys, 0, h), np.clip(h + ys, 0, h)
    ax0, ax1 = np.clip(xs, 0, w), np.clip(w + xs, 0, w)
    side_y = np.maximum(ay1 - ay0, 0)
    side_x = np.maximum(ax1 - ax0, 0)
    # b's rows are a's shifted back (clipped only where there is no overlap at all).
    by0, by1 = np.clip(ay0 - ys, 0, h), np.clip(ay1 - ys, 0, h)
    bx0, bx1 = np.clip(ax0 - xs, 0, w), np.clip(ax1 - xs, 0, w)
    n = (side_y[:, None] * side_x[None, :]).astype(np.float64)

    # Centre both windows on one level: NCC is unchanged and the float32 FFT keeps its
    # precision (the sums of squares are float64 integral images).
    mu = 0.5 * (float(np.mean(a)) + float(np.mean(b)))
    a32 = np.asarray(a, np.float32) - np.float32(mu)
    b32 = np.asarray(b, np.float32) - np.float32(mu)
    ia, iaa = _integrals(a32)
    ib, ibb = _integrals(b32)
    sa = _rect_sums(ia, ay0, ay1, ax0, ax1)
    saa = _rect_sums(iaa, ay0, ay1, ax0, ax1)
    sb = _rect_sums(ib, by0, by1, bx0, bx1)
    sbb = _rect_sums(ibb, by0, by1, bx0, bx1)

    # Cross term: zero-padded FFT correlation, no wrap for any displacement of the box.
    py = sfft.next_fast_len(h + max(abs(sy[0]), abs(sy[1])) + 1, real=True)
    px = sfft.next_fast_len(w + max(abs(sx[0]), abs(sx[1])) + 1, real=True)
    fa = sfft.rfft2(a32, s=(py, px))
    fb = sfft.rfft2(b32, s=(py, px))
    corr = sfft.irfft2(fa * np.conj(fb), s=(py, px))
    sab = corr[np.ix_(ys % py, xs % px)].astype(np.float64)

    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.maximum(n, 1.0)
        va = saa - sa * sa / nn
        vb = sbb - sb * sb / nn
        num = sab - sa * sb / nn
        out = num / np.sqrt(va * vb)
    scale = max(float(iaa[-1, -1]) / a32.size, 1e-30)
    bad = (
        (side_y[:, None] < min_side)
        | (side_x[None, :] < min_side)
        | ~(va > _FLAT * scale * nn)
        | ~(vb > _FLAT * scale * nn)
        | ~np.isfinite(out)
    )
    out[bad] = -1.0
    return np.clip(out, -1.0, 1.0)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation (Pearson) of two same-shape arrays; 0 when flat."""
    a = np.asarray(a, np.float64) - np.mean(a, dtype=np.float64)
    b = np.asarray(b, np.float64) - np.mean(b, dtype=np.float64)
    den = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else 0.0


def parabola_vertex(minus: float, centre: float, plus: float) -> float:
    """Offset in [-0.5, 0.5] of the vertex of the parabola through (-1, minus), (0, centre),
    (1, plus), where centre is the largest (0 when flat)."""
    den = minus - 2.0 * centre + plus
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (minus - plus) / den, -0.5, 0.5))
