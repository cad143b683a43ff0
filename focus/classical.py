"""Classical focus methods: a z-sweep with a sub-step peak fit, a coarse-to-fine Brent search,
and "none" (use the hint as it is).

Every Z move goes through the `FocusDrive` a method is given: targets are clamped to the soft
limits and approached from below, so backlash never enters a measurement and the final frame is
taken after an upward move. Hardware time is the device clock's difference over the run;
compute time is the `perf_counter` time spent in metrics, fits and the optimiser's own
bookkeeping.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy.optimize import minimize_scalar

from slidescan.focus.drive import FocusDrive
from slidescan.focus.metrics import MetricName, get_metric
from slidescan.focus.protocol import (
    FocusCurve,
    FocusError,
    FocusHint,
    FocusMethod,
    FocusParams,
    FocusResult,
    FrameLike,
)

PeakFitKind = Literal["gauss", "parabola"]

#: BrentSearch's refinement fits the evaluations within this many DOF of the best one. Wide
#: enough to see the curve's shape, not just its noisy, slightly lopsided top (a thick
#: section's layers): on the simulator 1.0 DOF left 0.11 um MAE at 256 px frames, 1.5 DOF 0.04.
REFINE_WINDOW_DOF = 1.5

#: The metric the classical methods use unless told otherwise. On the simulator (20x/0.75,
#: 4 um section, z-sweep, 20 positions, hints within +/- 5 um) Brenner had MAE 0.027 um on dense tissue and
#: 0.09 um on sparse fields (3-25 % tissue). Normalised variance was better on dense tissue
#: (0.013 um) but failed on 8 of 20 sparse fields (vignetting variance swamps it); Tenengrad
#: ties with Brenner at twice the compute; the Laplacian and high-pass energy are noisier.
DEFAULT_METRIC = "brenner"


@dataclass(frozen=True)
class PeakFit:
    """Sub-step peak of a sampled focus curve.

    `quality` is the coefficient of determination of the local fit (0 when no fit was
    possible), `edge` says the sampled maximum lies at the first or last sample, so the true
    peak may lie outside the samples.
    """

    z_um: float
    index: int
    edge: bool
    quality: float


def fit_peak(
    z_um: np.ndarray, values: np.ndarray, kind: PeakFitKind = "gauss", points: int = 5
) -> PeakFit:
    """Locate the peak of `values(z_um)` to better than the sample spacing.

    Fits a parabola to the `points` samples around the maximum: on the log of the values for
    `kind="gauss"` (a Gaussian peak is a parabola in log space, and focus curves are close to
    Gaussian near their top), on the values themselves for `"parabola"`. The vertex is kept
    within the fitted window; if the fit is not concave, or the maximum is at an end of the
    samples, the best sample's z is returned.
    """
    if kind not in ("gauss", "parabola"):
        raise ValueError(f"fit must be 'gauss' or 'parabola', got {kind!r}")
    if points < 3:
        raise ValueError(f"a peak fit needs at least 3 points, got {points}")
    order = np.argsort(z_um)
    z = np.asarray(z_um, dtype=np.float64)[order]
    v = np.asarray(values, dtype=np.float64)[order]
    if z.size == 0:
        raise FocusError("no samples to fit a peak to")
    if not np.all(np.isfinite(v)):
        raise FocusError("focus metric returned a non-finite value")
    i = int(np.argmax(v))
    edge = i == 0 or i == z.size - 1
    half = points // 2
    lo, hi = max(0, i - half), min(z.size, i + half + 1)
    if edge or hi - lo < 3:
        return PeakFit(float(z[i]), int(order[i]), edge, 0.0)
    zz, vv = z[lo:hi], v[lo:hi]
    if kind == "gauss":
        vv = np.log(np.maximum(vv, np.finfo(np.float64).tiny))
    centre = zz.mean()
    scale = max(float(np.ptp(zz)), 1e-12)
    a, b, c = np.polyfit((zz - centre) / scale, vv, 2)
    fitted = np.polyval((a, b, c), (zz - centre) / scale)
    ss_res = float(np.sum((vv - fitted) ** 2))
    ss_tot = float(np.sum((vv - vv.mean()) ** 2))
    quality = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    if not a < 0:
        return PeakFit(float(z[i]), int(order[i]), edge, 0.0)
    vertex = centre + scale * (-b / (2.0 * a))
    vertex = float(np.clip(vertex, zz[0], zz[-1]))
    return PeakFit(vertex, int(order[i]), edge, float(np.clip(quality, 0.0, 1.0)))


def gaussian_vertex(
    z_um: np.ndarray, values: np.ndarray, centre_um: float, half_width_um: float
) -> float | None:
    """Peak of a Gaussian (a parabola in log values) fitted by least squares to the samples
    within `half_width_um` of `centre_um`; None when fewer than 4 samples, a span under one
    half width, a non-concave fit, or a vertex outside the window."""
    z = np.asarray(z_um, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    near = np.abs(z - centre_um) <= half_width_um
    if near.sum() < 4 or np.ptp(z[near]) < half_width_um:
        return None
    t = (z[near] - centre_um) / half_width_um
    a, b, _ = np.polyfit(t, np.log(np.maximum(v[near], np.finfo(np.float64).tiny)), 2)
    if not a < 0:
        return None
    vertex = -b / (2.0 * a)
    return float(centre_um + vertex * half_width_um) if abs(vertex) <= 1.0 else None


def curve_confidence(values: np.ndarray, quality: float, edge: bool) -> float:
    """Confidence in [0, 1] from the curve's prominence and the fit quality.

    Prominence is 1 - min/max of the metric over the samples: about 0.8 for a sweep that spans
    focus on tissue, near 0 on empty glass. It saturates at 0.5. A peak at the edge of the
    samples is down-weighted to at most 0.25: focus may lie outside the range.
    """
    v = np.asarray(values, dtype=np.float64)
    vmax = float(v.max()) if v.size else 0.0
    if vmax <= 0:
        return 0.0
    prominence = 1.0 - float(v.min()) / vmax
    confidence = min(prominence / 0.5, 1.0) * quality
    if edge:
        confidence = min(confidence, 0.25)
    return float(np.clip(confidence, 0.0, 1.0))


def _prominence(values: np.ndarray) -> float:
    vmax = float(np.max(values)) if len(values) else 0.0
    return 1.0 - float(np.min(values)) / vmax if vmax > 0 else 0.0


def _dof(drive: FocusDrive) -> float:
    dof = float(drive.optics.depth_of_field_um)
    if not (math.isfinite(dof) and dof > 0):
        raise FocusError(f"device optics report an invalid depth of field ({dof})")
    return dof


class _Session:
    """One focus run: the drive, the clocks, and the measured curve."""

    def __init__(self, drive: FocusDrive, metric_name: str):
        self.drive = drive
        self.metric = get_metric(metric_name)
        self.metric_name = metric_name
        self.moves_start = drive.moves
        self.hw_start = drive.now()
        self.compute_s = 0.0
        self.frames = 0
        self.z: list[float] = []
        self.values: list[float] = []
        self.clamped = False

    def measure(self, z_um: float) -> tuple[float, float, FrameLike]:
        """Move to `z_um` through the drive, snap, and score the frame: (z reached, value,
        frame)."""
        frame, move = self.drive.snap_at(z_um)
        self.clamped |= move.clamped
        self.frames += 1
        t0 = time.perf_counter()
        value = float(self.metric(np.asarray(frame.image)))
        self.compute_s += time.perf_counter() - t0
        if not math.isfinite(value):
            raise FocusError(f"focus metric returned {value} at z = {move.z_um:.3f} um")
        self.z.append(move.z_um)
        self.values.append(value)
        return move.z_um, value, frame

    def curve(self, label: str) -> FocusCurve:
        z = np.asarray(self.z, dtype=np.float64)
        v = np.asarray(self.values, dtype=np.float64)
        order = np.argsort(z, kind="stable")
        return FocusCurve(z[order], v[order], kind="metric", label=label)

    def hardware_s(self) -> float:
        return self.drive.now() - self.hw_start

    @property
    def moves(self) -> int:
        """Z commands sent during this run."""
        return self.drive.moves - self.moves_start

    def result(
        self,
        method: str,
        z_um: float,
        confidence: float,
        ok: bool,
        message: str,
        final: FrameLike | None,
        extra: dict[str, Any],
    ) -> FocusResult:
        """The session's FocusResult: its frames, clocks and metric curve, plus the verdict."""
        return FocusResult(
            z_um=float(z_um),
            frames=self.frames,
            hardware_s=self.hardware_s(),
            compute_s=self.compute_s,
            confidence=confidence,
            curve=self.curve(self.metric_name),
            method=method,
            ok=ok,
            message=message,
            final_frame=final,
            extra=extra,
        )


def _half_range(configured_um: float | None, hint: FocusHint, dof: float) -> float:
    """Half the search range: the method's own setting, else the hint's, else max(6, 7.5 DOF)."""
    if configured_um is not None:
        return float(configured_um)
    if hint.range_um is not None and math.isfinite(hint.range_um) and hint.range_um > 0:
        return float(hint.range_um)
    return max(6.0, 7.5 * dof)


def _sweep_planes(centre: float, half: float, step: float, limits: tuple[float, float]):
    k = max(1, math.ceil(half / step - 1e-9))
    planes = centre + step * np.arange(-k, k + 1)
    lo, hi = limits
    return np.unique(np.clip(planes, lo, hi))


class ZSweepParams(FocusParams):
    range_um: float | None = Field(
        default=None,
        gt=0,
        description="half the sweep range, um (default: the hint's, else max(6, 7.5 DOF))",
    )
    step_um: float | None = Field(
        default=None, gt=0, description="plane spacing, um (default 0.75 DOF)"
    )
    metric: MetricName = Field(default=DEFAULT_METRIC, description="focus metric")
    fit: PeakFitKind = Field(default="gauss", description="peak fit")
    fit_points: int = Field(default=5, ge=3, description="samples in the peak fit")
    extend: bool = Field(
        default=True, description="sweep on once if the peak lands on an end plane"
    )
    max_planes: int = Field(default=41, ge=3, description="most planes (the step grows to fit)")
    min_prominence: float = Field(
        default=0.2, ge=0, le=1, description="least relative rise of the metric (1 - min/max)"
    )
    final_frame: bool = Field(default=True, description="take the final frame at the fitted z")


class ZSweep(FocusMethod):
    """Sweep N planes around the hint from bottom to top, then fit the metric's peak.

    Defaults scale with the optics: `step_um` = 0.75 x depth of field; half range = `range_um`
    if set, else the hint's `range_um`, else max(6 um, 7.5 x DOF) (20x/0.75: 21 planes 0.61 um
    apart over +/- 6.1 um); at most `max_planes` (the step grows to fit). If the maximum lands
    on an end plane and `extend` is set, the sweep continues once by half its length in that
    direction. The method finishes at the fitted z (approached from below) and takes the final
    frame there.

    Below `min_prominence` relative rise of the metric over the sweep (1 - min / max) there is
    no focus signal (blank glass, or focus far outside the range): the result is not ok, its z
    is the hint and its confidence 0. Confidence otherwise comes from `curve_confidence`.
    """

    name = "zsweep"
    Params = ZSweepParams
    params: ZSweepParams

    def plan(self, drive: FocusDrive, hint: FocusHint) -> tuple[float, float]:
        """(half range, step) in um for this drive's optics and this hint."""
        p = self.params
        dof = _dof(drive)
        step = p.step_um if p.step_um is not None else 0.75 * dof
        half = max(_half_range(p.range_um, hint, dof), 2.0 * step)
        k = math.ceil(half / step - 1e-9)
        if 2 * k + 1 > p.max_planes:
            k = (p.max_planes - 1) // 2
            step = half / k
        return k * step, step

    def first_z(self, drive: FocusDrive, hint: FocusHint) -> float:
        """The lowest plane: the scan engine brings Z there from below during the XY move, so
        the sweep's first frame needs no move of its own."""
        centre, _ = drive.clamp(hint.z_um)
        half, step = self.plan(drive, hint)
        return float(_sweep_planes(centre, half, step, drive.limits)[0])

    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        p = self.params
        s = _Session(drive, p.metric)
        centre, hint_clamped = drive.clamp(hint.z_um)
        half, step = self.plan(drive, hint)
        limits = drive.limits
        planes = _sweep_planes(centre, half, step, limits)
        for z in planes:
            s.measure(z)

        t0 = time.perf_counter()
        peak = fit_peak(np.array(s.z), np.array(s.values), p.fit, p.fit_points)
        s.compute_s += time.perf_counter() - t0
        extended = ""
        if peak.edge and p.extend:
            n_more = max(2, len(planes) // 2)
            at_top = s.z[peak.index] >= max(s.z) - 1e-9
            more = (
                max(s.z) + step * np.arange(1, n_more + 1)
                if at_top
                else min(s.z) - step * np.arange(n_more, 0, -1)
            )
            more = np.unique(np.clip(more, *limits))
            more = more[~np.isin(np.round(more, 6), np.round(s.z, 6))]
            if more.size:
                extended = "up" if at_top else "down"
                for z in more:  # ascending: one direction again
                    s.measure(z)
                t0 = time.perf_counter()
                peak = fit_peak(np.array(s.z), np.array(s.values), p.fit, p.fit_points)
                s.compute_s += time.perf_counter() - t0

        values = np.array(s.values)
        prominence = _prominence(values)
        ok = prominence >= p.min_prominence
        if ok:
            z_best = peak.z_um
            confidence = curve_confidence(values, peak.quality, peak.edge)
            message = "peak at the edge of the sweep" if peak.edge else ""
        else:
            z_best = centre
            confidence = 0.0
            message = f"no focus signal: the metric varies {100 * prominence:.1f}% over the sweep"

        final = None
        if p.final_frame:
            final, move = drive.snap_at(z_best)
            z_best = move.z_um
            s.frames += 1
        extra: dict[str, Any] = {
            "metric": p.metric,
            "fit": p.fit,
            "step_um": float(step),
            "planes": len(s.z),
            "edge": bool(peak.edge),
            "extended": extended,
            "clamped": bool(s.clamped or hint_clamped),
            "moves": s.moves,
            "fit_quality": float(peak.quality),
            "prominence": float(prominence),
        }
        return s.result(self.name, z_best, confidence, ok, message, final, extra)


class BrentParams(FocusParams):
    range_um: float | None = Field(default=None, gt=0, description="half the coarse range, um")
    coarse_step_um: float | None = Field(
        default=None, gt=0, description="coarse plane spacing, um (default 2 DOF)"
    )
    xatol_um: float | None = Field(
        default=None, gt=0, description="Brent's z tolerance, um (default DOF/16)"
    )
    metric: MetricName = Field(default=DEFAULT_METRIC, description="focus metric")
    max_evaluations: int = Field(default=12, ge=1, description="most Brent evaluations")
    refine: bool = Field(default=True, description="one more frame at the fitted peak")
    min_prominence: float = Field(
        default=0.2, ge=0, le=1, description="least relative rise of the metric (1 - min/max)"
    )
    max_frames: int | None = Field(
        default=None,
        ge=2,
        description="most frames, the final one counted; set: no coarse pass, bounded Brent "
        "over hint +/- range from the first frame, the best frame is the final one",
    )


class BrentSearch(FocusMethod):
    """Coarse-to-fine search: a coarse bottom-to-top pass, then bounded Brent on -metric.

    The coarse pass (step `coarse_step_um`, default 2 x DOF, over the same range as a z-sweep)
    finds the peak's basin, so the noisy flat tails of the focus curve never mislead the
    optimiser. `scipy.optimize.minimize_scalar(method="bounded")` then searches the bracket of
    one coarse step either side of the best coarse plane to `xatol_um` (default DOF / 16). Brent
    moves both ways; the drive approaches every evaluation from below, so backlash does not
    bias it (at the price of an extra move for each downward step). Near the flat top of the
    curve the metric's noise decides which evaluation is best, so with `refine` a Gaussian is
    fitted to every evaluation within `REFINE_WINDOW_DOF` (1.5) DOF of the best and, if its
    peak lies more than xatol / 2 away, the method moves there and takes one more frame (on the
    simulator at 20x/0.75 with a 4 um section: MAE 0.051 -> 0.028 um for about one frame more).
    Otherwise the final frame is the best evaluation's. `min_prominence` as for `ZSweep`,
    judged on the coarse pass.

    With a frame budget (`max_frames`, for comparisons at equal frames such as the DeepFocus
    paper's Fig. 4) the search is the paper's "bounded Brent": no coarse pass, Brent from the
    first frame over the hint +/- the half range (the method's `range_um`, else the hint's,
    else max(6, 7.5 DOF)), at most `max_frames` evaluations, and the best evaluation's frame is
    the final one (no refinement frame). A few frames cannot tell blank glass from frames that
    all lie near focus, so there is no prominence gate: the result is ok and the confidence
    (`curve_confidence`) says how much the metric rose.
    """

    name = "brent"
    Params = BrentParams
    params: BrentParams

    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        if self.params.max_frames is not None:
            return self._focus_budget(drive, hint, self.params.max_frames)
        p = self.params
        dof = _dof(drive)
        s = _Session(drive, p.metric)
        centre, hint_clamped = drive.clamp(hint.z_um)
        step = p.coarse_step_um if p.coarse_step_um is not None else 2.0 * dof
        half = max(_half_range(p.range_um, hint, dof), step)
        limits = drive.limits
        best_frame: FrameLike | None = None
        best_value = -math.inf
        best_z = centre

        def evaluate(z: float) -> float:
            nonlocal best_frame, best_value, best_z
            z_reached, value, frame = s.measure(z)
            if value > best_value:
                best_value, best_z, best_frame = value, z_reached, frame
            return value

        coarse = _sweep_planes(centre, half, step, limits)
        for z in coarse:
            evaluate(z)
        coarse_values = np.array(s.values)
        i = int(np.argmax(coarse_values))
        edge = i in (0, coarse.size - 1)
        prominence = _prominence(coarse_values)
        ok = prominence >= p.min_prominence
        converged = False
        xatol = p.xatol_um if p.xatol_um is not None else dof / 16.0
        if ok:
            lo = max(coarse[i] - step, limits[0])
            hi = min(coarse[i] + step, limits[1])
            t0 = time.perf_counter()
            inside_objective_s = 0.0

            def objective(z: float) -> float:
                nonlocal inside_objective_s
                t = time.perf_counter()
                value = evaluate(float(z))
                inside_objective_s += time.perf_counter() - t
                return -value

            if hi - lo > xatol:
                res = minimize_scalar(
                    objective,
                    bounds=(lo, hi),
                    method="bounded",
                    options={"xatol": xatol, "maxiter": p.max_evaluations},
                )
                converged = bool(res.success)
            # The optimiser's own time, without the device calls and metrics inside objective
            # (the metric time is already counted by the session).
            s.compute_s += max(0.0, time.perf_counter() - t0 - inside_objective_s)

        values = np.array(s.values)
        refined = False
        if ok:
            z_best = best_z
            final = best_frame
            if p.refine:
                t0 = time.perf_counter()
                vertex = gaussian_vertex(np.array(s.z), values, best_z, REFINE_WINDOW_DOF * dof)
                s.compute_s += time.perf_counter() - t0
                if vertex is not None and abs(vertex - best_z) > xatol / 2:
                    # The fitted peak lies between evaluations: one more frame, from below.
                    final, move = drive.snap_at(vertex)
                    z_best, refined = move.z_um, True
                    s.frames += 1
            quality = 1.0 if converged else 0.5
            confidence = curve_confidence(values, quality, edge)
            message = "peak at the edge of the coarse range" if edge else ""
        else:
            z_best = centre
            confidence = 0.0
            message = f"no focus signal: the metric varies {100 * prominence:.1f}% over the range"
            final = None
        return s.result(
            self.name,
            z_best,
            confidence,
            ok,
            message,
            final,
            {
                "metric": p.metric,
                "coarse_step_um": float(step),
                "coarse_planes": int(coarse.size),
                "evaluations": len(s.z),
                "edge": bool(edge),
                "converged": converged,
                "refined": refined,
                "clamped": bool(s.clamped or hint_clamped),
                "moves": s.moves,
                "prominence": float(prominence),
            },
        )

    def _focus_budget(self, drive: FocusDrive, hint: FocusHint, budget: int) -> FocusResult:
        """Bounded Brent over hint +/- the half range, at most `budget` frames (the class
        docstring)."""
        p = self.params
        dof = _dof(drive)
        s = _Session(drive, p.metric)
        centre, hint_clamped = drive.clamp(hint.z_um)
        half = _half_range(p.range_um, hint, dof)
        lo, _ = drive.clamp(centre - half)
        hi, _ = drive.clamp(centre + half)
        xatol = p.xatol_um if p.xatol_um is not None else dof / 16.0
        best: list[Any] = [-math.inf, centre, None]  # value, z, frame
        inside_objective_s = 0.0

        def objective(z: float) -> float:
            nonlocal inside_objective_s
            if s.frames >= budget:  # scipy counts its calls too; this makes sure
                raise _BudgetSpent
            t = time.perf_counter()
            z_reached, value, frame = s.measure(float(z))
            inside_objective_s += time.perf_counter() - t
            if value > best[0]:
                best[:] = [value, z_reached, frame]
            return -value

        converged = False
        t0 = time.perf_counter()
        if hi - lo > xatol:
            try:
                res = minimize_scalar(
                    objective,
                    bounds=(lo, hi),
                    method="bounded",
                    options={"xatol": xatol, "maxiter": budget},
                )
                converged = bool(res.success)
            except _BudgetSpent:
                pass
        else:  # the limits leave no room to search: one frame where the hint is
            objective(centre)
        s.compute_s += max(0.0, time.perf_counter() - t0 - inside_objective_s)
        values = np.array(s.values)
        z_sorted = np.sort(np.array(s.z))
        edge = len(z_sorted) > 1 and best[1] in (z_sorted[0], z_sorted[-1])
        confidence = curve_confidence(values, 1.0 if converged else 0.5, edge)
        return s.result(
            self.name,
            best[1],
            confidence,
            True,
            "best frame at the edge of those taken" if edge else "",
            best[2],
            {
                "metric": p.metric,
                "max_frames": int(budget),
                "range_um": float(half),
                "evaluations": len(s.z),
                "edge": bool(edge),
                "converged": converged,
                "refined": False,
                "clamped": bool(s.clamped or hint_clamped),
                "moves": s.moves,
                "prominence": float(_prominence(values)),
            },
        )


class _BudgetSpent(Exception):
    """Raised inside Brent's objective when the frame budget is spent."""


class NoFocusParams(FocusParams):
    snap: bool = Field(default=False, description="go to the hint and take the final frame there")


class NoFocus(FocusMethod):
    """Use the hint as the focus (fixed z, or a focus-map prediction), clamped to the limits.

    With `snap=False` (default) nothing moves and no frame is taken; with `snap=True` the drive
    goes to the hint from below and takes the final frame there.
    """

    name = "none"
    Params = NoFocusParams
    params: NoFocusParams

    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        hw0 = drive.now()
        z, clamped = drive.clamp(hint.z_um)
        frame = None
        if self.params.snap:
            frame, _ = drive.snap_at(z)
        return FocusResult(
            z_um=z,
            frames=1 if frame is not None else 0,
            hardware_s=drive.now() - hw0,
            compute_s=0.0,
            confidence=1.0,
            method=self.name,
            message="hint clamped to the z limits" if clamped else "",
            final_frame=frame,
            extra={"clamped": clamped, "hint_source": hint.source},
        )
