"""Global placement: every tile's position from all registered pairs at once.

Weighted least squares over the tile positions p (x and y solve separately, with the same
weights):

    sum over pairs  w_ij |p_j - p_i - d_ij|^2  +  sum over tiles  lambda |p_i - s_i|^2

d_ij is a pair's registered shift, w_ij = 1 / sigma_ij^2 its weight from the NCC
(`pair_weight`), s_i the tile's position from the stage and lambda = 1 / sigma_stage^2 the
stage's own uncertainty (repeatability and play, in pixels): tens of pixels against tenths for
a pair, so the stage fixes only what the pairs leave open, the position of a group of tiles
as a whole. A group cut off from the rest, or a tile without a usable pair, lands where the
stage put it. The normal equations are sparse, symmetric and positive definite (a graph
Laplacian plus lambda); scipy's sparse solver does them directly.

Outliers (a pair that locked onto the wrong peak): after each solve the pair with the largest
residual goes if it exceeds `outlier_k` times the robust scale of all residuals (and
`min_outlier_px`), and the rest are solved again. One at a time, because one wrong pair drags
its neighbours' residuals up with it; and with every pair weighted alike while looking, so a
wrong pair that is also the most confident cannot pull its neighbours onto itself. The
positions are then solved once more with the NCC weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

REGISTERED = "registered"
STAGE = "stage"
#: A pair is never more certain than this (pixels, one sigma).
MIN_PAIR_SIGMA_PX = 0.02
#: Median of the 2-D norm of a standard normal pair residual, per unit sigma: sqrt(2 ln 2).
_NORM_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class PlacementParams:
    outlier_k: float = 4.0
    #: Residuals below this (pixels) are never outliers, however tight the rest.
    min_outlier_px: float = 1.0
    #: At most this fraction of the pairs is removed as outliers.
    max_outlier_fraction: float = 0.2


@dataclass(frozen=True)
class Placement:
    """Positions (n, 2) x, y of each tile's top-left (same frame as the stage positions given);
    `source` per tile (REGISTERED when at least one of its pairs was used, else STAGE);
    `residual_px` per tile: RMS of its used pairs' residuals (NaN without one); per pair:
    `used` and `residual_px` (2-D norm, NaN for pairs that had no shift)."""

    xy: np.ndarray
    source: np.ndarray
    residual_px: np.ndarray
    used: np.ndarray
    pair_residual_px: np.ndarray
    rounds: int

    @property
    def rms_pair_residual_px(self) -> float:
        r = self.pair_residual_px[self.used]
        return float(np.sqrt(np.mean(r**2))) if r.size else float("nan")


def pair_weight(ncc: np.ndarray) -> np.ndarray:
    """1 / sigma^2 of a registered shift from its NCC: sigma^2 = (1 - ncc) / ncc px^2, the
    noise-to-signal ratio of the overlap (0.95 -> 0.23 px, 0.99 -> 0.1 px)."""
    ncc = np.clip(np.asarray(ncc, np.float64), 1e-6, 1.0)
    var = np.maximum((1.0 - ncc) / ncc, MIN_PAIR_SIGMA_PX**2)
    return 1.0 / var


def solve_positions(
    n: int,
    pairs: np.ndarray,
    shifts: np.ndarray,
    weights: np.ndarray,
    stage_xy: np.ndarray,
    stage_weight: float,
) -> np.ndarray:
    """The weighted least-squares positions (n, 2). `pairs` (p, 2) tile positions (i, j),
    `shifts` (p, 2) d_ij = p_j - p_i, `weights` (p,)."""
    i, j = pairs[:, 0], pairs[:, 1]
    w = weights
    rows = np.concatenate([i, j, i, j, np.arange(n)])
    cols = np.concatenate([i, j, j, i, np.arange(n)])
    vals = np.concatenate([w, w, -w, -w, np.full(n, stage_weight)])
    a = sp.csc_matrix((vals, (rows, cols)), shape=(n, n))
    rhs = stage_weight * np.asarray(stage_xy, np.float64).copy()
    wd = w[:, None] * shifts
    np.add.at(rhs, j, wd)
    np.subtract.at(rhs, i, wd)
    out = spsolve(a, rhs)
    return np.asarray(out, np.float64).reshape(n, 2)


def _pair_residuals(
    xy: np.ndarray, pairs: np.ndarray, shifts: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """2-D norm of each valid pair's disagreement with the positions (NaN for the rest)."""
    residual = np.full(len(pairs), np.nan)
    if valid.any():
        pv = pairs[valid]
        residual[valid] = np.linalg.norm(xy[pv[:, 1]] - xy[pv[:, 0]] - shifts[valid], axis=1)
    return residual


def place(
    n: int,
    pairs: np.ndarray,
    shifts: np.ndarray,
    ncc: np.ndarray,
    stage_xy: np.ndarray,
    stage_sigma_px: float,
    params: PlacementParams | None = None,
) -> Placement:
    """Place `n` tiles from registered `pairs` ((p, 2) positions i, j) with `shifts` ((p, 2),
    NaN rows for refused pairs) and their `ncc`, anchored to `stage_xy` ((n, 2))."""
    params = params or PlacementParams()
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    shifts = np.asarray(shifts, np.float64).reshape(-1, 2)
    stage_xy = np.asarray(stage_xy, np.float64).reshape(n, 2)
    valid = np.all(np.isfinite(shifts), axis=1)
    used = valid.copy()
    weights = pair_weight(ncc)
    stage_weight = 1.0 / max(float(stage_sigma_px), 1e-3) ** 2
    limit = int(params.max_outlier_fraction * valid.sum())
    # Outliers are looked for with every pair weighted alike: one wrong pair that is also
    # the most confident would otherwise pull its neighbours onto itself and hide there.
    alike = np.where(valid, float(np.median(weights[valid])) if valid.any() else 1.0, 0.0)
    rounds = 0
    while n and valid.any():
        rounds += 1
        xy = solve_positions(n, pairs[used], shifts[used], alike[used], stage_xy, stage_weight)
        residual = _pair_residuals(xy, pairs, shifts, valid)
        r_used = residual[used]
        if r_used.size < 3 or (valid & ~used).sum() >= limit:
            break
        scale = float(np.median(r_used)) / _NORM_MEDIAN
        worst = int(np.flatnonzero(used)[np.argmax(r_used)])
        if residual[worst] <= max(params.outlier_k * scale, params.min_outlier_px):
            break
        used[worst] = False
    xy = (
        solve_positions(n, pairs[used], shifts[used], weights[used], stage_xy, stage_weight)
        if n
        else np.zeros((0, 2))
    )
    residual = _pair_residuals(xy, pairs, shifts, valid)

    source = np.full(n, STAGE, dtype=object)
    tile_sq = np.zeros(n)
    tile_count = np.zeros(n)
    for (i, j), r in zip(pairs[used], residual[used], strict=True):
        for k in (i, j):
            tile_sq[k] += r * r
            tile_count[k] += 1
    source[tile_count > 0] = REGISTERED
    with np.errstate(invalid="ignore", divide="ignore"):
        tile_res = np.where(tile_count > 0, np.sqrt(tile_sq / np.maximum(tile_count, 1)), np.nan)
    return Placement(
        xy=xy,
        source=source.astype(str),
        residual_px=tile_res,
        used=used,
        pair_residual_px=residual,
        rounds=rounds,
    )
