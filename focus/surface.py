"""Focus surfaces over the slide: fitted maps z(x, y), an online per-tile predictor, and the
choice of survey positions.

- `fit_surface` fits a plane, a quadratic or a thin-plate spline (scipy's `RBFInterpolator`)
  to measured focus points, optionally robustly: the point with the largest leave-one-out
  residual is dropped while it exceeds k x the residuals' robust spread (1.4826 MAD), one at a
  time, so a failed focus measurement does not bend the map.
- `FocusPredictor` predicts each tile's focus from the tiles already focused: the nearest point
  when there are one or two, a weighted local plane of the nearest neighbours when there are a
  few, a robust smoothed thin-plate spline once there are many. It rejects points that disagree
  with their neighbours, and gives an uncertainty the scan can use as the search range.
- `survey_points` picks a sparse, well-spread set of positions (farthest-point sampling) for a
  focus map.

Coordinates are stage micrometres. They are centred and scaled inside the fits, so slide-sized
coordinates (tens of thousands of um) do not hurt the conditioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.interpolate import RBFInterpolator

from slidescan.focus.protocol import FocusError

SurfaceKind = Literal["plane", "quadratic", "tps"]

#: Fewest points each kind can be fitted to (a TPS carries a plane, so it needs three too).
MIN_POINTS: dict[str, int] = {"plane": 3, "quadratic": 6, "tps": 3}

#: MAD to standard deviation for normally distributed residuals.
_MAD_TO_SIGMA = 1.4826


class SurfaceError(FocusError, ValueError):
    """A focus surface cannot be fitted or used (too few points, degenerate layout, bad input)."""


def _as_points(xy: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(xy, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise SurfaceError(f"xy must have shape (N, 2), got {xy.shape}")
    if z.shape != (xy.shape[0],):
        raise SurfaceError(f"z must have shape ({xy.shape[0]},) to match xy, got {z.shape}")
    if not (np.all(np.isfinite(xy)) and np.all(np.isfinite(z))):
        raise SurfaceError("focus points must be finite numbers")
    return xy, z


def _design(u: np.ndarray, kind: str) -> np.ndarray:
    x, y = u[:, 0], u[:, 1]
    ones = np.ones_like(x)
    if kind == "plane":
        return np.column_stack([ones, x, y])
    return np.column_stack([ones, x, y, x * x, x * y, y * y])


@dataclass(frozen=True)
class _Normaliser:
    """Maps stage um to roughly unit coordinates around the data."""

    centre: np.ndarray
    scale: float

    @classmethod
    def fit(cls, xy: np.ndarray) -> _Normaliser:
        centre = xy.mean(axis=0)
        scale = float(np.max(np.abs(xy - centre))) if len(xy) else 1.0
        return cls(centre, scale if scale > 0 else 1.0)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        return (xy - self.centre) / self.scale


class _Model:
    """One fit of one kind to the given points: predict and leave-one-out residuals."""

    def __init__(
        self, u: np.ndarray, z: np.ndarray, w: np.ndarray, kind: str, smoothing: float
    ) -> None:
        self.kind = kind
        if kind == "tps":
            # Per-point smoothing: a low-weight point may be missed by more.
            self.rbf = RBFInterpolator(
                u, z, kernel="thin_plate_spline", smoothing=smoothing / w, degree=1
            )
            self.coef = None
        else:
            a = _design(u, kind)
            sw = np.sqrt(w)
            coef, _, rank, _ = np.linalg.lstsq(a * sw[:, None], z * sw, rcond=None)
            if rank < a.shape[1]:
                raise SurfaceError(
                    f"cannot fit a {kind} to these {len(z)} points: they are collinear or "
                    "repeated (spread the focus points over the area)"
                )
            self.coef = coef
            self.rbf = None
        self._u, self._z, self._w, self._smoothing = u, z, w, smoothing

    def predict(self, u: np.ndarray) -> np.ndarray:
        if self.rbf is not None:
            return self.rbf(u)
        return _design(u, self.kind) @ self.coef

    def loo_residuals(self) -> np.ndarray:
        """Residual of each point when it is left out of the fit."""
        u, z, w = self._u, self._z, self._w
        if self.kind != "tps":
            a = _design(u, self.kind) * np.sqrt(w)[:, None]
            hat = np.einsum("ij,ji->i", a, np.linalg.pinv(a))  # leverages h_ii
            r = z - self.predict(u)
            # A point the fit cannot do without (leverage 1) cannot be judged: residual 0.
            free = 1.0 - hat > 1e-6
            return np.where(free, r / np.where(free, 1.0 - hat, 1.0), 0.0)
        out = np.empty_like(z)
        for i in range(len(z)):
            keep = np.arange(len(z)) != i
            try:
                sub = RBFInterpolator(
                    u[keep],
                    z[keep],
                    kernel="thin_plate_spline",
                    smoothing=self._smoothing / w[keep],
                    degree=1,
                )
            except np.linalg.LinAlgError:  # the others are collinear: this point is needed
                out[i] = 0.0
                continue
            out[i] = z[i] - float(sub(u[i : i + 1])[0])
        return out


def _judging_residuals(
    loo: np.ndarray, u: np.ndarray, z: np.ndarray, w: np.ndarray, kind: str
) -> np.ndarray:
    """The leave-one-out residuals an outlier test should judge.

    For a spline, a good point next to a bad one, or in a corner, can have a large spline
    leave-one-out residual: the spline extrapolates it from the bad point or from afar. So a
    point counts only as badly as the better of two predictions from the others, the spline's
    and a smooth global model's (quadratic, or plane with fewer than 8 points). A failed focus
    measurement is far from both.
    """
    if kind != "tps" or len(z) < 5:
        return loo
    ref_kind = "quadratic" if len(z) >= 8 else "plane"
    try:
        ref = _Model(u, z, w, ref_kind, 0.0).loo_residuals()
    except SurfaceError:
        return loo
    return np.where(np.abs(ref) < np.abs(loo), ref, loo)


def _robust_scale(r: np.ndarray, floor: float) -> float:
    mad = float(np.median(np.abs(r - np.median(r))))
    return max(_MAD_TO_SIGMA * mad, floor)


@dataclass
class FocusSurface:
    """A fitted focus map z(x, y) in stage um.

    `residual_rms` is the RMS of the inliers' residuals (0 for an interpolating spline: see
    `loo_rms` for an honest figure), `loo_rms` the RMS of their leave-one-out residuals, the
    expected error of a prediction at a new point like the fitted ones. `inliers` marks the
    points kept by a robust fit.
    """

    kind: str
    xy: np.ndarray
    z: np.ndarray
    inliers: np.ndarray
    residual_rms: float
    loo_rms: float
    smoothing: float
    _model: _Model = field(repr=False)
    _norm: _Normaliser = field(repr=False)

    @property
    def n_points(self) -> int:
        return int(self.inliers.sum())

    @property
    def outliers(self) -> np.ndarray:
        """Indices of the points a robust fit dropped."""
        return np.flatnonzero(~self.inliers)

    def predict(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        """z at (x, y); arrays broadcast and give an array of their shape, scalars a float."""
        xa, ya = np.broadcast_arrays(
            np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        )
        u = self._norm(np.column_stack([xa.ravel(), ya.ravel()]))
        z = self._model.predict(u).reshape(xa.shape)
        return float(z) if z.ndim == 0 else z

    __call__ = predict


def fit_surface(
    *points: np.ndarray,
    kind: SurfaceKind = "plane",
    smoothing: float = 0.0,
    weights: np.ndarray | None = None,
    robust: bool = False,
    outlier_k: float = 3.5,
    outlier_floor_um: float = 0.5,
    max_outlier_fraction: float = 0.25,
) -> FocusSurface:
    """Fit a focus surface to measured focus points, given as `(xy, z)` with xy (N, 2) um and
    z (N,) um, or as `(x, y, z)`, three (N,) arrays.

    `smoothing` applies to "tps" (scipy's RBFInterpolator smoothing; 0 interpolates exactly).
    `weights` (N,) > 0, e.g. focus confidences, weight the least-squares fits and divide the
    spline's smoothing per point. With `robust=True` the worst point by leave-one-out residual
    (for "tps", the better of the spline's and a quadratic's) is dropped, one at a time, while it lies more than `outlier_k` robust sigmas (1.4826 MAD)
    and more than `outlier_floor_um` from the median residual, at most `max_outlier_fraction`
    of the points. The floor keeps errors too small to matter for focus (about half a depth of
    field at 20x) from being called outliers where a sparse spline's own leave-one-out error is
    that large.
    """
    if kind not in MIN_POINTS:
        raise SurfaceError(f"unknown surface kind {kind!r}; known kinds: {', '.join(MIN_POINTS)}")
    if not (math.isfinite(smoothing) and smoothing >= 0):
        raise SurfaceError(f"smoothing must be a number >= 0, got {smoothing}")
    if len(points) == 3:
        x, y, z = (np.asarray(p, dtype=np.float64) for p in points)
        if x.shape != y.shape or x.ndim != 1:
            raise SurfaceError(
                f"x and y must be (N,) arrays of one length, got {x.shape}, {y.shape}"
            )
        xy = np.column_stack([x, y])
    elif len(points) == 2:
        xy, z = points
    else:
        raise SurfaceError(f"fit_surface takes (xy, z) or (x, y, z), got {len(points)} arrays")
    xy, z = _as_points(xy, z)
    n = len(z)
    need = MIN_POINTS[kind]
    if n < need:
        raise SurfaceError(f"a {kind} focus surface needs at least {need} points, got {n}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise SurfaceError("weights must be N positive finite numbers")
    norm = _Normaliser.fit(xy)
    u = norm(xy)
    if kind == "tps" and np.linalg.matrix_rank(_design(u, "plane")) < 3:
        raise SurfaceError(
            f"cannot fit a tps to these {n} points: they are collinear or repeated "
            "(spread the focus points over the area)"
        )
    keep = np.ones(n, dtype=bool)
    model = _Model(u, z, w, kind, smoothing)
    loo = model.loo_residuals() if robust or n > need else np.zeros(n)
    # Dropping needs at least two spare points (one for the fit, one to check it), and never
    # more than `max_outlier_fraction` of the points: beyond that the data, not a few bad
    # measurements, disagree with the model.
    max_drop = math.floor(max_outlier_fraction * n)
    while robust and keep.sum() > need + 1 and (~keep).sum() < max_drop:
        idx = np.flatnonzero(keep)
        judged = _judging_residuals(loo, u[idx], z[idx], w[idx], kind)
        dev = np.abs(judged - np.median(judged))
        worst = int(np.argmax(dev))
        spread = _MAD_TO_SIGMA * float(np.median(dev))
        if dev[worst] <= max(outlier_k * spread, outlier_floor_um):
            break
        keep[idx[worst]] = False
        idx = np.flatnonzero(keep)
        model = _Model(u[idx], z[idx], w[idx], kind, smoothing)
        loo = model.loo_residuals()
    idx = np.flatnonzero(keep)
    resid = z[idx] - model.predict(u[idx])
    loo_rms = float(np.sqrt(np.mean(loo**2))) if len(idx) > need else float("nan")
    return FocusSurface(
        kind=kind,
        xy=xy,
        z=z,
        inliers=keep,
        residual_rms=float(np.sqrt(np.mean(resid**2))),
        loo_rms=loo_rms,
        smoothing=float(smoothing),
        _model=model,
        _norm=norm,
    )


# -- online predictor --------------------------------------------------------------------------


class FocusPredictor:
    """Predict each tile's focus from the tiles already focused, with an uncertainty.

    - no points: `default_z` (if given) with `default_uncertainty_um`, else `FocusError`;
    - one or two points: the nearest point's z;
    - fewer than `surface_min_points`: a weighted local plane of the `neighbours` nearest
      points (the nearest point's z where they are collinear);
    - from `surface_min_points` on: a robust thin-plate spline (`smoothing`) through the
      `surface_neighbours` nearest points, so the cost per tile stays flat over a large scan.

    The uncertainty is sqrt(s^2 + (slope x d)^2). s is measured, not assumed: each `add` first
    predicts the new point, and s is the robust spread (1.4826 MAD) of the most recent of those
    out-of-sample errors (`measurement_sigma_um` until there are three). d is how much farther
    the nearest known point is than usual (the median gap at which those errors were measured)
    and `slope_um_per_um` how fast an unknown surface may drift (a slide's tilt and warp: about
    1 um per mm).

    `add` rejects a point (returns False) once there are `reject_min_points` points and it lies
    more than max(`reject_k` x uncertainty, `reject_floor_um`) from the prediction: a focus
    method that locked onto dust or the cover glass must not drag the hints of the next tiles.
    Rejected points are kept in `rejected` for the record.
    """

    def __init__(
        self,
        *,
        default_z: float | None = None,
        default_uncertainty_um: float = 10.0,
        neighbours: int = 6,
        surface_min_points: int = 10,
        surface_neighbours: int = 24,
        smoothing: float = 1e-3,
        measurement_sigma_um: float = 0.3,
        slope_um_per_um: float = 1e-3,
        residual_window: int = 25,
        reject_min_points: int = 4,
        reject_k: float = 4.0,
        reject_floor_um: float = 2.0,
    ) -> None:
        if neighbours < 3:
            raise ValueError(f"neighbours must be at least 3, got {neighbours}")
        if surface_min_points < MIN_POINTS["tps"] + 2:
            raise ValueError(f"surface_min_points must be at least 5, got {surface_min_points}")
        if surface_neighbours < surface_min_points:
            raise ValueError("surface_neighbours must be at least surface_min_points")
        self.default_z = default_z
        self.default_uncertainty_um = float(default_uncertainty_um)
        self.neighbours = int(neighbours)
        self.surface_min_points = int(surface_min_points)
        self.surface_neighbours = int(surface_neighbours)
        self.smoothing = float(smoothing)
        self.measurement_sigma_um = float(measurement_sigma_um)
        self.slope_um_per_um = float(slope_um_per_um)
        self.residual_window = int(residual_window)
        self.reject_min_points = int(reject_min_points)
        self.reject_k = float(reject_k)
        self.reject_floor_um = float(reject_floor_um)
        self._xy: list[tuple[float, float]] = []
        self._z: list[float] = []
        self._w: list[float] = []
        self._errors: list[float] = []
        self._gaps: list[float] = []  # distance to the nearest known point when each was added
        self.rejected: list[tuple[float, float, float]] = []

    def __len__(self) -> int:
        return len(self._z)

    @property
    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The accepted points: xy (N, 2), z (N,), weights (N,)."""
        return (
            np.asarray(self._xy, dtype=np.float64).reshape(-1, 2),
            np.asarray(self._z, dtype=np.float64),
            np.asarray(self._w, dtype=np.float64),
        )

    def add(self, x: float, y: float, z: float, confidence: float = 1.0) -> bool:
        """Add a measured focus; False if it was rejected (outlier, no confidence, not finite)."""
        x, y, z, confidence = float(x), float(y), float(z), float(confidence)
        if not all(map(math.isfinite, (x, y, z, confidence))) or confidence <= 0:
            return False
        if len(self) > 0:
            z_pred, sigma = self.predict(x, y)
            if len(self) >= self.reject_min_points and abs(z - z_pred) > max(
                self.reject_k * sigma, self.reject_floor_um
            ):
                self.rejected.append((x, y, z))
                return False
            self._errors.append(z - z_pred)
            xy, _, _ = self.points
            self._gaps.append(float(np.hypot(xy[:, 0] - x, xy[:, 1] - y).min()))
        self._xy.append((x, y))
        self._z.append(z)
        self._w.append(min(confidence, 1.0))
        return True

    def spread_um(self) -> float:
        """Robust spread of the recent out-of-sample errors (the prior until there are three)."""
        recent = np.asarray(self._errors[-self.residual_window :])
        if recent.size < 3:
            return self.measurement_sigma_um
        return _robust_scale(recent, self.measurement_sigma_um / 3.0)

    def predict(self, x: float, y: float) -> tuple[float, float]:
        """(z, uncertainty) in um at (x, y)."""
        x, y = float(x), float(y)
        n = len(self)
        if n == 0:
            if self.default_z is None:
                raise FocusError("no focus points yet and no default z to predict from")
            return float(self.default_z), self.default_uncertainty_um
        xy, z, w = self.points
        d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
        if n < 3:
            z_hat = float(z[int(np.argmin(d))])
        elif n < self.surface_min_points:
            z_hat = self._local_plane(xy, z, w, d, x, y)
        else:
            z_hat = self._local_spline(xy, z, w, d, x, y)
        # The measured spread already holds the drift over the usual gap between a new tile
        # and its nearest focused one; only the distance beyond that adds the slope prior.
        recent_gaps = self._gaps[-self.residual_window :]
        usual_gap = float(np.median(recent_gaps)) if len(recent_gaps) >= 3 else 0.0
        extra = self.slope_um_per_um * max(0.0, float(d.min()) - usual_gap)
        return z_hat, float(math.hypot(self.spread_um(), extra))

    def surface(self, kind: SurfaceKind = "tps", smoothing: float | None = None) -> FocusSurface:
        """A robust surface of `kind` through all accepted points (for a saved focus map)."""
        xy, z, w = self.points
        s = self.smoothing if smoothing is None else smoothing
        return fit_surface(
            xy, z, kind=kind, smoothing=s if kind == "tps" else 0.0, weights=w, robust=True
        )

    def _local_plane(
        self, xy: np.ndarray, z: np.ndarray, w: np.ndarray, d: np.ndarray, x: float, y: float
    ) -> float:
        idx = np.argsort(d, kind="stable")[: self.neighbours]
        pts = xy[idx]
        centre = pts.mean(axis=0)
        scale = float(np.max(np.abs(pts - centre))) or 1.0
        a = np.column_stack([np.ones(len(idx)), (pts - centre) / scale])
        # Nearer points count more (inverse distance), times their confidence.
        sw = np.sqrt(w[idx] / (1.0 + d[idx] / scale))
        coef, _, rank, _ = np.linalg.lstsq(a * sw[:, None], z[idx] * sw, rcond=None)
        if rank < 3:  # collinear neighbours (one row of tiles): nearest point
            return float(z[idx[0]])
        return float(coef[0] + coef[1:] @ ((np.array([x, y]) - centre) / scale))

    def _local_spline(
        self, xy: np.ndarray, z: np.ndarray, w: np.ndarray, d: np.ndarray, x: float, y: float
    ) -> float:
        idx = np.argsort(d, kind="stable")[: self.surface_neighbours]
        try:
            surf = fit_surface(
                xy[idx], z[idx], kind="tps", smoothing=self.smoothing, weights=w[idx], robust=True
            )
        except SurfaceError:  # collinear neighbours: fall back to the local plane
            return self._local_plane(xy, z, w, d, x, y)
        return float(surf.predict(x, y))


# -- survey positions --------------------------------------------------------------------------


def farthest_point_indices(points: np.ndarray, n: int, start: int | None = None) -> np.ndarray:
    """Indices of `n` points chosen by farthest-point sampling (each one as far as possible from
    those already chosen), starting from `start` or the point nearest the centroid."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise SurfaceError(f"points must have shape (M, 2) with M >= 1, got {pts.shape}")
    n = min(int(n), len(pts))
    if n <= 0:
        raise SurfaceError(f"need a positive number of points, got {n}")
    first = int(np.argmin(np.hypot(*(pts - pts.mean(axis=0)).T))) if start is None else int(start)
    chosen = [first]
    dist = np.hypot(*(pts - pts[first]).T)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:  # only duplicates left
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.hypot(*(pts - pts[nxt]).T))
    return np.asarray(chosen, dtype=int)


def survey_points(
    region: np.ndarray | tuple[float, float, float, float],
    n: int,
    *,
    margin: float = 0.05,
    seed: int | None = None,
) -> np.ndarray:
    """`n` well-spread survey positions (n, 2) in um.

    `region` is either the tile centres that hold tissue, (M, 2), and the survey picks among
    them; or bounds `(x_min, y_min, x_max, y_max)`, and the survey picks from a 24 x 24 grid
    inset by `margin` of the size (jittered by up to a quarter cell with `seed`). Farthest-point
    sampling from the centre reaches the corners early, which is what a plane or spline fit
    needs to avoid extrapolating.
    """
    if n < 1:
        raise SurfaceError(f"need at least one survey point, got {n}")
    arr = np.asarray(region, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 4:
        x0, y0, x1, y1 = arr
        if not (np.all(np.isfinite(arr)) and x0 <= x1 and y0 <= y1):
            raise SurfaceError(f"bounds must be finite (x_min, y_min, x_max, y_max), got {region}")
        g = 24
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        gx = np.linspace(x0 + mx, x1 - mx, g)
        gy = np.linspace(y0 + my, y1 - my, g)
        cand = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
        if seed is not None:
            rng = np.random.default_rng(seed)
            cell = np.array([(gx[1] - gx[0]) if g > 1 else 0.0, (gy[1] - gy[0]) if g > 1 else 0.0])
            cand = cand + rng.uniform(-0.25, 0.25, cand.shape) * cell
            cand = np.clip(cand, [x0, y0], [x1, y1])
        return cand[farthest_point_indices(cand, n)]
    if arr.ndim == 2 and arr.shape[1] == 2:
        if not np.all(np.isfinite(arr)):
            raise SurfaceError("tile centres must be finite numbers")
        return arr[farthest_point_indices(arr, n)]
    raise SurfaceError(
        f"region must be tile centres (M, 2) or bounds (x_min, y_min, x_max, y_max); got shape {arr.shape}"
    )
