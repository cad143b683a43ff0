"""The numbers behind DeepFocus's search (Shajkofci & Liebling), torch-free.

- `CurveModel`: the calibration curve of blur score against z, the paper's model: a Moffat dip
  plus a Gaussian dip plus a linear term, around the focus z0:

      b(z) = c + s u - A (1 + (u / alpha)^2)^(-beta) - G exp(-u^2 / (2 w^2)),   u = z - z0

  The Moffat's wings follow a blur that grows and saturates; the Gaussian sharpens the bottom;
  the slope takes up an asymmetry (spherical aberration blurs one side faster). `moffat_fwhm_um`
  is the Moffat's own 2 alpha sqrt(2^(1/beta) - 1); `dip_width_um` the whole fitted dip's full
  width at half depth, measured on the curve itself (with a Gaussian in the bottom the Moffat
  alone can be much wider than the dip), for a given depth or the dip's depth over a range.
- `fit_curve`: least squares of that model to (z, score) points (scipy), from a start read off
  the data.
- `fit_shift`: the shift dz that best lays the calibration curve over a few measured scores,
  argmin_dz sum_i (b_i - b_cal(z_i - dz))^2 (the paper's step 6), optionally with a free
  vertical offset (a specimen whose sharpest score sits higher or lower than the calibration
  specimen's), a depth (a specimen whose curve dips deeper or shallower, the same on both
  sides of focus: drawn to the calibration's by a ridge) and a z stretch (a specimen whose
  curve is wider), by a grid then a bounded scalar refinement.
- `is_convex`: the paper's stopping test: a quadratic fits the scores better than a line (by
  `margin` in R^2) and opens upwards.
- `golden_next`: the next z of a golden-section search on the scores measured so far.
- `mean_shift_modes`: 1-D mean shift of the regions' shifts (flat kernel of `bandwidth`,
  weighted), so the largest cluster of regions that agree decides, not their mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...
#: a patch's score noise (ln px) that a free depth's ridge is weighed against
SCORE_NOISE = 0.1
#: the curve depth a free fit may take (x the calibration's)
DEPTH_LIMITS = (0.5, 2.0)


@dataclass(frozen=True)
class CurveModel:
    """b(z) of the module docstring."""

    z0: float
    c: float
    slope: float
    amp: float
    alpha: float
    beta: float
    gauss_amp: float
    gauss_width: float

    def __call__(self, z: float | np.ndarray) -> np.ndarray:
        return _model(np.asarray(z, dtype=np.float64), *self.params())

    def params(self) -> tuple[float, ...]:
        return (
            self.z0,
            self.c,
            self.slope,
            self.amp,
            self.alpha,
            self.beta,
            self.gauss_amp,
            self.gauss_width,
        )

    @property
    def moffat_fwhm_um(self) -> float:
        return 2.0 * self.alpha * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0)

    def dip_width_um(
        self, lo: float, hi: float, depth: float | None = None, samples: int = 4001
    ) -> float:
        """Full width at half depth of the curve's dip over [lo, hi] (module docstring).

        The depth is `depth` when given (a fixed depth makes the width a property of the curve
        alone) and the curve reaches half of it on both sides within [lo, hi]; otherwise the
        dip's own depth over [lo, hi], from its least value to the mean of its two ends, which
        grows with the range the curve is read over."""
        z = np.linspace(lo, hi, samples)
        b = self(z)
        i = int(np.argmin(b))
        half = 0.5 * (b[i] + 0.5 * (b[0] + b[-1]))
        if depth is not None and min(b[0], b[-1]) >= b[i] + 0.5 * depth:
            half = b[i] + 0.5 * depth
        left = np.flatnonzero(b[:i] >= half)
        right = np.flatnonzero(b[i:] >= half)
        z_left = _crossing(z, b, left[-1], half) if left.size else z[0]
        z_right = _crossing(z, b, i + right[0] - 1, half) if right.size else z[-1]
        return float(z_right - z_left)

    def centred(self) -> CurveModel:
        """The same curve with its focus at z = 0."""
        return CurveModel(0.0, *self.params()[1:])

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> CurveModel:
        return cls(**{k: float(d[k]) for k in cls.__dataclass_fields__})


def _crossing(z: np.ndarray, b: np.ndarray, k: int, level: float) -> float:
    """Where b crosses `level` between samples k and k + 1 (linear)."""
    db = b[k + 1] - b[k]
    t = 0.5 if db == 0 else (level - b[k]) / db
    return float(z[k] + t * (z[k + 1] - z[k]))


def _model(z, z0, c, s, a, alpha, beta, g, w):
    u = z - z0
    return c + s * u - a * (1.0 + (u / alpha) ** 2) ** (-beta) - g * np.exp(-0.5 * (u / w) ** 2)


@dataclass(frozen=True)
class CurveFit:
    model: CurveModel
    rms: float  # residual, score units


def fit_curve(z_um: Sequence[float], scores: Sequence[float]) -> CurveFit:
    """The model fitted to (z, score); ValueError when the points cannot carry it."""
    from scipy.optimize import curve_fit

    z = np.asarray(z_um, dtype=np.float64)
    b = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(z) & np.isfinite(b)
    z, b = z[keep], b[keep]
    if z.size < 9:
        raise ValueError(f"a calibration curve needs at least 9 finite points, got {z.size}")
    order = np.argsort(z)
    z, b = z[order], b[order]
    span = float(z[-1] - z[0])
    if span <= 0:
        raise ValueError("the calibration points all sit at one z")
    i = int(np.argmin(b))
    top, bottom = float(np.percentile(b, 90)), float(b[i])
    depth = max(top - bottom, 1e-6)
    half = bottom + depth / 2
    above = np.flatnonzero(b > half)
    left = above[above < i]
    right = above[above > i]
    lo = z[left[-1]] if left.size else z[0]
    hi = z[right[0]] if right.size else z[-1]
    alpha0 = max((hi - lo) / 2.0, span / 50.0)
    p0 = [float(z[i]), top, 0.0, depth * 0.8, alpha0, 1.0, depth * 0.2, alpha0 / 3.0]
    lower = [z[0], -np.inf, -np.inf, 0.0, span / 500.0, 0.2, 0.0, span / 1000.0]
    upper = [z[-1], np.inf, np.inf, np.inf, span * 4.0, 20.0, np.inf, span]
    try:
        popt, _ = curve_fit(_model, z, b, p0=p0, bounds=(lower, upper), maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"the calibration curve could not be fitted ({exc})") from None
    model = CurveModel(*(float(v) for v in popt))
    rms = float(np.sqrt(np.mean((model(z) - b) ** 2)))
    return CurveFit(model, rms)


#: The z stretches `fit_shift` tries with a free width (a specimen whose curve is wider or
#: narrower than the calibration specimen's: thicker sections, finer texture): 0.69-1.45 in
#: equal steps of ln, 1 among them (where a width prior draws the stretch).
WIDTH_SCALES = np.round(np.exp(0.053 * np.arange(-7, 8)), 4)


@dataclass(frozen=True)
class ShiftFit:
    shift_um: float  # where the curve's focus lands: the estimated focus z
    offset: float  # the vertical offset fitted (0 when not free)
    rss: float
    width_scale: float = 1.0  # the z stretch fitted (1 when not free)
    depth: float = 1.0  # the curve depth fitted, x the calibration's (1 when not free)


def fit_shift(
    z_um: Sequence[float],
    scores: Sequence[float],
    curve: CurveModel,
    bounds: tuple[float, float],
    *,
    free_offset: bool = False,
    free_width: bool = False,
    offset_sd: float | None = None,
    depth_sd: float | None = None,
    width_sd: float | None = None,
    grid_step_um: float | None = None,
) -> ShiftFit:
    """argmin over dz in `bounds` of sum (b_i - (curve((z_i - dz) / s) + offset))^2, `curve`
    centred at 0 (the calibration's), plus the priors' penalties below (`ShiftFit.rss` is
    that whole cost). With `free_offset` the offset is fitted at each dz
    (closed form), otherwise 0; with `free_width` the stretch s is the best of `WIDTH_SCALES`,
    otherwise 1. With `depth_sd` (needs `free_offset`) the curve's depth is free too:
    b_i ~ offset + g curve(...) (g scales the curve about score 0, ln of a 1 px blur, near
    the curve's floor), g drawn to 1 by a ridge of prior spread `depth_sd`, held within
    `DEPTH_LIMITS`; with `offset_sd` the offset is drawn to 0 the same way (without it,
    it is unbounded). With `width_sd` the stretch is free (as `free_width`) and drawn to 1 by a
    ridge on ln s of prior spread `width_sd` (specimens' curves differ in width: 10x tuning
    stacks 25-36 um against a calibration's 27). Each ridge is weighed against a patch score
    noise of `SCORE_NOISE`, so a prior spread reads in the score's own units. A grid over dz,
    then a bounded scalar refinement."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(z_um, dtype=np.float64)
    b = np.asarray(scores, dtype=np.float64)
    if z.size == 0 or z.size != b.size:
        raise ValueError("fit_shift needs as many scores as positions, at least one")
    for name, sd in (("depth_sd", depth_sd), ("offset_sd", offset_sd)):
        if sd is not None and not (free_offset and 0 < sd < math.inf):
            raise ValueError(f"fit_shift: {name} needs a free offset and a positive finite spread")
    if width_sd is not None and not 0 < width_sd < math.inf:
        raise ValueError("fit_shift: width_sd needs a positive finite spread")
    level_ridge = 0.0 if offset_sd is None else (SCORE_NOISE / offset_sd) ** 2
    depth_ridge = None if depth_sd is None else (SCORE_NOISE / depth_sd) ** 2
    lo, hi = float(min(bounds)), float(max(bounds))
    centred = curve.centred()
    scales = WIDTH_SCALES if free_width or width_sd is not None else np.array([1.0])
    width_ridge = 0.0 if width_sd is None else (SCORE_NOISE / width_sd) ** 2
    stretch_cost = width_ridge * np.log(scales) ** 2  # per scale
    step = grid_step_um or max((hi - lo) / 400.0, 1e-4)
    grid = np.arange(lo, hi + step / 2, step)

    def fits(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not free_offset:
            r = b - m
            return np.sum(r * r, axis=-1), np.zeros(m.shape[:-1]), np.ones(m.shape[:-1])
        return _level_depth_fit(b, m, level_ridge, depth_ridge)

    # every (scale, dz) at once: the model (S, G, n)
    costs = fits(centred((z[None, None, :] - grid[None, :, None]) / scales[:, None, None]))[0]
    costs = costs + stretch_cost[:, None]
    si, k = np.unravel_index(int(np.argmin(costs)), costs.shape)
    scale = float(scales[si])

    def cost(dz: float) -> tuple[float, float, float]:
        c, off, g = fits(centred((z - dz) / scale))
        return float(c) + float(stretch_cost[si]), float(off), float(g)

    a, c = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    if c > a:
        res = minimize_scalar(lambda d: cost(d)[0], bounds=(a, c), method="bounded")
        best = float(res.x) if res.fun <= costs[si, k] else float(grid[k])
    else:
        best = float(grid[k])
    rss, off, depth = cost(best)
    return ShiftFit(best, off, rss, scale, depth)


def _level_depth_fit(
    b: np.ndarray, m: np.ndarray, level_ridge: float, depth_ridge: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cost, level L, depth g) minimising sum (b - L - g m)^2 + level_ridge L^2 +
    depth_ridge (g - 1)^2 over the last axis (g = 1 when `depth_ridge` is None), in closed
    form; g held within `DEPTH_LIMITS`, L then the best for that g."""
    n = b.shape[-1] + level_ridge
    sm, sb = m.sum(axis=-1), b.sum()
    if depth_ridge is None:
        g = np.ones(sm.shape)
    else:
        smm, sbm = np.sum(m * m, axis=-1), np.sum(m * b, axis=-1)
        det = n * (smm + depth_ridge) - sm * sm
        g = np.clip((n * (sbm + depth_ridge) - sm * sb) / det, *DEPTH_LIMITS)
    level = (sb - g * sm) / n
    r = b - level[..., None] - g[..., None] * m
    penalty = level_ridge * level**2 + (0.0 if depth_ridge is None else depth_ridge * (g - 1) ** 2)
    return np.sum(r * r, axis=-1) + penalty, level, g


def r_squared(z: np.ndarray, b: np.ndarray, degree: int) -> tuple[float, np.ndarray]:
    """R^2 of a least-squares polynomial of `degree` and its coefficients (highest first)."""
    coef = np.polyfit(z, b, degree)
    resid = b - np.polyval(coef, z)
    total = float(np.sum((b - b.mean()) ** 2))
    if total <= 0:
        return 1.0, coef
    return 1.0 - float(np.sum(resid**2)) / total, coef


def is_convex(z_um: Sequence[float], scores: Sequence[float], margin: float = 0.05) -> bool:
    """The paper's stop: the scores' quadratic fit beats the linear one by `margin` in R^2
    and opens upwards (a minimum lies between the points). Needs three points."""
    z = np.asarray(z_um, dtype=np.float64)
    b = np.asarray(scores, dtype=np.float64)
    if z.size < 3 or np.unique(z).size < 3:
        return False
    zc = (z - z.mean()) / max(float(np.ptp(z)), 1e-12)
    r2_lin, _ = r_squared(zc, b, 1)
    r2_quad, coef = r_squared(zc, b, 2)
    return bool(coef[0] > 0 and r2_quad > r2_lin + margin)


def golden_next(z_um: Sequence[float], scores: Sequence[float], lo: float, hi: float) -> float:
    """The next z of a golden-section search for the least score inside [lo, hi].

    The bracket is the best point and its measured neighbours (or the interval's ends where
    it has none); the new point goes into the larger side, a golden fraction from the best.
    """
    z = np.asarray(z_um, dtype=np.float64)
    b = np.asarray(scores, dtype=np.float64)
    order = np.argsort(z)
    z, b = z[order], b[order]
    i = int(np.argmin(b))
    left = z[i - 1] if i > 0 else lo
    right = z[i + 1] if i < z.size - 1 else hi
    best = z[i]
    if right - best >= best - left:
        return float(best + (1.0 - GOLDEN) * (right - best))
    return float(best - (1.0 - GOLDEN) * (best - left))


@dataclass(frozen=True)
class Mode:
    centre: float
    weight: float
    members: tuple[int, ...]


def mean_shift_modes(
    values: Sequence[float], weights: Sequence[float] | None, bandwidth: float
) -> list[Mode]:
    """Clusters of 1-D `values` by mean shift with a flat kernel of half-width `bandwidth`,
    heaviest first. Each point climbs to its mode; modes closer than bandwidth / 2 merge; a
    mode's centre is the weighted mean of its members."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    if v.size == 0:
        return []
    if bandwidth <= 0:
        raise ValueError("the mean-shift bandwidth must be positive")
    modes = v.copy()
    for _ in range(100):
        near = np.abs(modes[:, None] - v[None, :]) <= bandwidth
        new = (near * w[None, :]).sum(1)
        new = np.where(new > 0, (near * (w * v)[None, :]).sum(1) / np.maximum(new, 1e-300), modes)
        if np.allclose(new, modes, atol=bandwidth * 1e-4):
            modes = new
            break
        modes = new
    labels = -np.ones(v.size, dtype=int)
    centres: list[float] = []
    for k in np.argsort(-w):
        for j, c in enumerate(centres):
            if abs(modes[k] - c) <= bandwidth / 2:
                labels[k] = j
                break
        else:
            centres.append(float(modes[k]))
            labels[k] = len(centres) - 1
    out = []
    for j in range(len(centres)):
        members = np.flatnonzero(labels == j)
        weight = float(w[members].sum())
        centre = float(np.average(v[members], weights=w[members])) if weight > 0 else centres[j]
        out.append(Mode(centre, weight, tuple(int(m) for m in members)))
    out.sort(key=lambda m: (-m.weight, -len(m.members)))
    return out
