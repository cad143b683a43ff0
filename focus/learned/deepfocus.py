"""DeepFocus: few-shot autofocus with a sample-invariant CNN sharpness function (Shajkofci &
Liebling, 2020).

A network trained once for many microscopes reads a patch and says how blurred it is
(`deepfocus_model`); one calibration stack per instrument and objective gives the curve of that
score against z (`focus.deepfocus_calibration`). A tile then needs a few frames:

1. `placement="golden"` (the paper): frames at the hint z1 and at z1 -/+ `search_fwhm` x FWHM,
   acquired bottom to top (no move needs a backlash take-up; the lowest is the method's
   `first_z`, reached during the XY move). `"mirror"` (the default): z1 - `search_fwhm` x FWHM
   and z1, then the mirror about their focus estimate of the one whose distance from it is
   nearest `mirror_distance` FWHM (so a pair brackets the focus out on the curve's flanks),
   or, when both lie more than `far_beyond` FWHM from it, a frame `mirror_distance` FWHM past
   it on the other side (not out on the other wing); with a budget of five
   frames or more, when the frame nearest the new estimate lies more than `refine` FWHM from
   it, one more frame that far past the estimate on the other side. When the first estimate
   lies more than `free_offset_beyond` FWHM from the hint (by default: always), the fits after
   it leave the curve's level and depth free, since specimens read a level apart (one
   blurrier than the calibration's object at every defocus) and dip deeper or shallower; each
   is drawn to the calibration's by a prior (`level_spread`, `depth_spread`), so three frames
   on one side of focus cannot be explained by a curve read far sharper than any specimen's.
2. After each frame, stop when a quadratic fits the frame scores better than a line by
   `convexity_margin` in R^2 and opens upwards (the paper's convexity test), or when the next
   frame would leave no room for the final capture within `max_frames`; otherwise the next
   z by golden section within the interval (`deepfocus_curve.golden_next`).
3. Per region (patch) that the network finds judgeable, the shift that lays the calibration
   curve over that region's scores (`fit_shift`, least squares over the interval +/- one
   FWHM); the regions' shifts are clustered by mean shift with bandwidth FWHM (the paper); the
   focus is the shift of one curve fit to all the largest cluster's regions at once
   (`combine="joint"`), or the weighted median of their own shifts ("median").
4. Move there (through the drive, which clamps to the soft limits) and take the final frame.

When the last fit or the first estimate runs into the edge of its reach (focus further from
the hint than the search looks: a scan's first tile, a slide that changed height; three frames
on the flat wing on one side can leave the last fit inside its reach on the wrong side) and
`recover` is on, a coarse pass of
the score over the calibrated reach, one FWHM apart, finds the dip, and one mirror frame about
the estimate from every frame brackets it: more frames for that tile (`extra["recovered"]`),
not a wrong focus handed on to the next tiles.

Every frame is scored with its noise raised to the calibration's noise floor
(`deepfocus_score`), so frames with less noise than the calibration stack (another specimen,
exposure or camera setting; a replay's blend of two planes) read the calibrated curve.

Confidence: the share of the judged regions in the chosen cluster, lowered when few regions
could be judged. A frame without judgeable patches (glass) fails the tile (ok = False, the hint
returned) so the scan's fallback decides.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.focus.deepfocus_calibration import (
    CalibrationError,
    DeepFocusCalibration,
    calibration_dir,
)
from slidescan.focus.deepfocus_curve import (
    fit_shift,
    golden_next,
    is_convex,
    mean_shift_modes,
)
from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned.deepfocus_model import FrameScores, SharpnessNet, load_sharpness
from slidescan.focus.learned.deepfocus_params import DeepFocusParams
from slidescan.focus.learned.diffcnn_model import weighted_median
from slidescan.focus.protocol import (
    FocusCurve,
    FocusHint,
    FocusMethod,
    FocusResult,
    FrameLike,
    OpticsLike,
)

#: A patch counts as judgeable when the network's validity probability is at least this.
VALID_PROBABILITY = 0.5


def find_calibration(optics: OpticsLike, folder: Path | None = None) -> DeepFocusCalibration:
    """The newest calibration in the config folder that matches these optics."""
    root = folder or calibration_dir()
    candidates = sorted(
        root.glob("deepfocus_*.json") if root.is_dir() else [],
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in candidates:
        try:
            cal = DeepFocusCalibration.load(path)
            cal.check_matches(optics)
        except CalibrationError:
            continue
        return cal
    raise CalibrationError(
        f"no DeepFocus calibration for {optics.objective_name} "
        f"({float(optics.pixel_size_um):.4g} um/px) in {root}: run `slidescan focus calibrate "
        "--mode deepfocus` first"
    )


class DeepFocusFocus(FocusMethod):
    """Focus method "deepfocus" (module docstring)."""

    name = "deepfocus"
    Params = DeepFocusParams
    params: DeepFocusParams

    def __init__(self, params: DeepFocusParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._net: SharpnessNet | None = None
        self._cal: DeepFocusCalibration | None = None
        self._prepared_for: tuple[str, float] | None = None

    # -- set-up ------------------------------------------------------------------------------
    def prepare(self, optics: OpticsLike) -> None:
        p = self.params
        if self._net is None:
            self._net = load_sharpness(p.weights, p.threads)
        if p.calibration is not None:
            cal = DeepFocusCalibration.load(p.calibration)
            cal.check_matches(optics)
        else:
            cal = find_calibration(optics)
        self._cal = cal
        self._prepared_for = (str(optics.objective_name), float(optics.pixel_size_um))

    def _ready(self, optics: OpticsLike) -> tuple[SharpnessNet, DeepFocusCalibration]:
        key = (str(optics.objective_name), float(optics.pixel_size_um))
        if self._net is None or self._cal is None or self._prepared_for != key:
            self.prepare(optics)
        assert self._net is not None and self._cal is not None
        return self._net, self._cal

    @property
    def calibration(self) -> DeepFocusCalibration | None:
        return self._cal

    def interval(self, drive: FocusDrive, hint: FocusHint) -> tuple[float, float, float]:
        """(low, hint, high) of the search, inside the soft limits."""
        _, cal = self._ready(drive.optics)
        half = self.params.search_fwhm * cal.fwhm_um
        centre, _ = drive.clamp(hint.z_um)
        lo, _ = drive.clamp(centre - half)
        hi, _ = drive.clamp(centre + half)
        return lo, centre, hi

    def first_z(self, drive: FocusDrive, hint: FocusHint) -> float:
        return self.interval(drive, hint)[0]

    # -- one tile ----------------------------------------------------------------------------
    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        p = self.params
        net, cal = self._ready(drive.optics)
        hw0, moves0 = drive.now(), drive.moves
        compute = 0.0
        lo, centre, hi = self.interval(drive, hint)
        zs: list[float] = []
        frames: list[FrameScores] = []
        clamped = False

        def measure(z: float) -> FrameLike:
            nonlocal compute, clamped
            frame, move = drive.snap_at(z)
            clamped |= move.clamped
            image = np.asarray(frame.image)
            if not zs:
                cal.check_frame(image)
            scored = net.score_frame(
                image, p.max_patches, cal.noise_floor, p.noise_draws, p.drawn_patches
            )
            compute += scored.compute_s
            zs.append(move.z_um)
            frames.append(scored)
            return frame

        search_budget = p.max_frames - (1 if p.final_capture else 0)
        last = None
        free_offset = p.free_offset
        first_at_edge = False
        if p.placement == "mirror" and search_budget >= 3 and lo < centre:
            for z in (lo, centre):
                last = measure(z)
            t0 = time.perf_counter()
            first = self._estimate(np.asarray(zs), frames, cal, lo, hi, free_width=False)
            compute += time.perf_counter() - t0
            if first["z"] is not None:
                # the third frame (`_third_z`): a pair about the first estimate out on the
                # curve's flanks, where the curve's width cancels out
                f_hat, _ = drive.clamp(float(first["z"]))
                # focus far from the hint: the first frames lie out on the curve's wings, where
                # specimens read a level apart (the offset the fits then leave free)
                far = abs(f_hat - centre) > p.free_offset_beyond * cal.fwhm_um
                free_offset = free_offset or far
                # with the recovery on, an estimate at the edge of its reach keeps the mirror
                first_at_edge = bool(first["at_edge"])
                watch_edge = p.recover and first_at_edge
                z_c = self._third_z(drive, zs, f_hat, cal.fwhm_um, watch_edge)
                if min(abs(z_c - z) for z in zs) < 0.1 * (centre - lo):
                    z_c = hi
                last = measure(z_c)
            if search_budget >= 4 and p.refine > 0:
                z_r = self._refine_z(drive, np.asarray(zs), frames, cal, lo, hi, free_offset)
                compute += z_r[1]
                if z_r[0] is not None:
                    last = measure(z_r[0])
        else:
            # by preference (the hint first), acquired bottom to top
            planned = sorted(list(dict.fromkeys([centre, lo, hi]))[: max(search_budget, 1)])
            for z in planned:
                last = measure(z)
        convex = False
        while True:
            t0 = time.perf_counter()
            valid = np.stack([f.valid_prob for f in frames]) >= VALID_PROBABILITY
            med = np.array([_median_valid(f.scores, v) for f, v in zip(frames, valid, strict=True)])
            convex = bool(np.isfinite(med).all() and is_convex(zs, med, p.convexity_margin))
            compute += time.perf_counter() - t0
            if convex or len(zs) >= search_budget or not np.isfinite(med).any():
                break
            fin = np.isfinite(med)
            z_next = golden_next(np.asarray(zs)[fin], med[fin], lo, hi)
            if min(abs(z_next - z) for z in zs) < 1e-3 * cal.fwhm_um:
                break
            last = measure(z_next)

        t0 = time.perf_counter()
        estimate = self._estimate(np.asarray(zs), frames, cal, lo, hi, free_offset=free_offset)
        compute += time.perf_counter() - t0
        recovered = False
        # the first estimate at the edge of its reach says focus may lie beyond it, even when
        # the last fit (three frames on one side of it, read on the curve's flat wing) does not
        if p.recover and estimate["z"] is not None and (estimate["at_edge"] or first_at_edge):
            # The fit ran into the edge of its reach: focus lies further from the hint than the
            # search looks (a first tile far from its hint). A coarse pass of the score over
            # the calibrated reach, one FWHM apart, finds the dip; a mirror frame about the
            # estimate from every frame then brackets it. Extra frames, counted.
            recovered = True
            reach = max(abs(min(cal.z_um)), abs(max(cal.z_um)))
            for z in np.arange(centre - reach, centre + reach + cal.fwhm_um / 2, cal.fwhm_um):
                z_c, _ = drive.clamp(float(z))
                if min(abs(z_c - v) for v in zs) > 0.25 * cal.fwhm_um:
                    last = measure(z_c)
            t0 = time.perf_counter()
            med = [_median_valid(f.scores, f.valid_prob >= VALID_PROBABILITY) for f in frames]
            best = zs[int(np.nanargmin(med))] if np.isfinite(med).any() else centre
            near = (best - 2 * cal.fwhm_um, best + 2 * cal.fwhm_um)
            estimate = self._estimate(
                np.asarray(zs), frames, cal, lo, hi, free_offset=free_offset, bounds=near
            )
            compute += time.perf_counter() - t0
            if estimate["z"] is not None:
                f_hat, _ = drive.clamp(float(estimate["z"]))
                z_m = self._mirror_z(drive, zs, f_hat)
                if min(abs(z_m - v) for v in zs) > 0.1 * cal.fwhm_um:
                    last = measure(z_m)
                t0 = time.perf_counter()
                around = (f_hat - cal.fwhm_um, f_hat + cal.fwhm_um)
                estimate = self._estimate(
                    np.asarray(zs), frames, cal, lo, hi, free_offset=free_offset, bounds=around
                )
                compute += time.perf_counter() - t0
        medians = [_median_valid(f.scores, f.valid_prob >= VALID_PROBABILITY) for f in frames]
        order = np.argsort(zs)
        curve = FocusCurve(
            np.asarray(zs)[order], np.asarray(medians)[order], "metric", "DeepFocus score (ln px)"
        )
        extra: dict[str, Any] = {
            "search_frames": len(zs),
            "convex": convex,
            "fwhm_um": float(cal.fwhm_um),
            "regions": estimate["regions"],
            "cluster_regions": estimate["cluster_regions"],
            "clamped": bool(clamped),
            "recovered": recovered,
        }
        if estimate["z"] is None:
            return FocusResult(
                z_um=float(centre),
                frames=len(zs),
                hardware_s=drive.now() - hw0,
                compute_s=compute,
                confidence=0.0,
                curve=curve,
                method=self.name,
                ok=False,
                message="no patch with texture to judge (glass?)",
                extra=extra | {"moves": drive.moves - moves0},
            )
        z_focus, _ = drive.clamp(float(estimate["z"]))
        final = None
        n_frames = len(zs)
        if p.final_capture:
            final, move = drive.snap_at(z_focus)
            z_focus = move.z_um
            n_frames += 1
        elif last is not None and abs(zs[-1] - z_focus) < 1e-9:
            final = last
        return FocusResult(
            z_um=float(z_focus),
            frames=n_frames,
            hardware_s=drive.now() - hw0,
            compute_s=compute,
            confidence=float(estimate["confidence"]),
            curve=curve,
            method=self.name,
            ok=True,
            final_frame=final,
            extra=extra | {"moves": drive.moves - moves0},
        )

    def _third_z(
        self, drive: FocusDrive, zs: list[float], f_hat: float, fwhm: float, at_edge: bool
    ) -> float:
        """The mirror placement's third frame (`DeepFocusParams.mirror_distance`, `far_beyond`):
        the mirror about the first estimate of the frame nearest `mirror_distance` FWHM from
        it; when both frames lie more than `far_beyond` FWHM from it (a hint far off: both
        out on the wing), `mirror_distance` FWHM past it on the other side instead, on the
        curve's flank, where a frame fixes the shift best, not out on the other wing. Not when
        `at_edge` (the estimate sits at the edge of its reach and the recovery is on): focus
        may lie beyond, and the mirror frame, far out, is what lets the last fit see that and
        the recovery run (a frame on the flank of an estimate held at the edge misleads it).
        An estimate within `hint_mirror` FWHM of the hint (`zs[1]`) gets the first frame's
        mirror about the hint: a pair symmetric about it, which cancels the curve's shape."""
        p = self.params
        first, hint = zs[0], zs[1]
        if p.hint_mirror > 0 and not at_edge and abs(f_hat - hint) < p.hint_mirror * fwhm:
            return drive.clamp(2.0 * hint - first)[0]
        distance = p.mirror_distance * fwhm
        far = min(abs(z - f_hat) for z in zs) > p.far_beyond * fwhm
        if p.far_beyond > 0 and far and not at_edge:
            side = -1.0 if float(np.mean(zs)) > f_hat else 1.0
            return drive.clamp(f_hat + side * distance)[0]
        return self._mirror_z(drive, zs, f_hat, distance)

    def _mirror_z(
        self, drive: FocusDrive, zs: list[float], f_hat: float, distance: float = 0.0
    ) -> float:
        """The mirror about `f_hat` of the frame whose distance from it is nearest `distance`
        (0: the frame nearest `f_hat`), inside the soft limits."""
        near = min(zs, key=lambda z: abs(abs(z - f_hat) - distance))
        return drive.clamp(2.0 * f_hat - near)[0]

    def _refine_z(
        self,
        drive: FocusDrive,
        zs: np.ndarray,
        frames: list[FrameScores],
        cal: DeepFocusCalibration,
        lo: float,
        hi: float,
        free_offset: bool,
    ) -> tuple[float | None, float]:
        """(z of a fourth search frame or None, compute s). The three mirror frames often
        leave the nearest one far from the estimate (a hint far off: the pair lies out on the
        curve's wings, where specimens differ most); a frame `refine` FWHM past the estimate,
        opposite the nearest frame, makes a tight pair around it (`DeepFocusParams.refine`)."""
        t0 = time.perf_counter()
        est = self._estimate(zs, frames, cal, lo, hi, free_offset=free_offset)
        spent = time.perf_counter() - t0
        if est["z"] is None:
            return None, spent
        f_hat, _ = drive.clamp(float(est["z"]))
        step = self.params.refine * cal.fwhm_um
        near = float(zs[np.argmin(np.abs(zs - f_hat))])
        if abs(near - f_hat) <= step:
            return None, spent
        side = 1.0 if f_hat >= near else -1.0
        z_r, _ = drive.clamp(f_hat + side * step)
        if np.min(np.abs(zs - z_r)) < 0.05 * cal.fwhm_um:
            return None, spent
        return float(z_r), spent

    def _estimate(
        self,
        zs: np.ndarray,
        frames: list[FrameScores],
        cal: DeepFocusCalibration,
        lo: float,
        hi: float,
        free_width: bool | None = None,
        bounds: tuple[float, float] | None = None,
        free_offset: bool | None = None,
    ) -> dict[str, Any]:
        """Per-region shifts, clustered; the largest cluster's focus (`combine`)."""
        p = self.params
        free_width = p.free_width if free_width is None else free_width
        free_offset = p.free_offset if free_offset is None else free_offset
        scores = np.stack([f.scores for f in frames], axis=1)  # (regions, frames)
        prob = np.stack([f.valid_prob for f in frames], axis=1)
        weight = prob.mean(axis=1)
        judged = np.flatnonzero(weight >= VALID_PROBABILITY)
        if judged.size == 0:
            return {
                "z": None,
                "confidence": 0.0,
                "regions": 0,
                "cluster_regions": 0,
                "at_edge": False,
            }
        depth_sd = p.depth_spread if free_offset and p.depth_spread > 0 else None
        offset_sd = p.level_spread if free_offset and p.level_spread > 0 else None
        width_sd = p.width_spread if free_offset and p.width_spread > 0 else None
        fwhm = cal.fwhm_um
        if bounds is None:
            # as far as the calibration reaches, or the search interval +/- one FWHM
            bounds = (
                (lo + min(cal.z_um), hi + max(cal.z_um))
                if p.reach == "calibration"
                else (lo - fwhm, hi + fwhm)
            )
        step = fwhm / 50.0
        shifts = np.array(
            [
                fit_shift(
                    zs,
                    scores[r],
                    cal.curve,
                    bounds,
                    free_offset=free_offset,
                    free_width=free_width,
                    depth_sd=depth_sd,
                    offset_sd=offset_sd,
                    width_sd=width_sd,
                    grid_step_um=step,
                ).shift_um
                for r in judged
            ]
        )
        w = weight[judged]
        modes = mean_shift_modes(shifts, w, fwhm)
        best = modes[0]
        members = np.asarray(best.members)
        if p.combine == "joint" and members.size > 1:
            # one shift for the whole cluster: every member region's scores in one fit
            fit = fit_shift(
                np.tile(zs, members.size),
                scores[judged[members]].ravel(),
                cal.curve,
                (float(shifts[members].min()) - step, float(shifts[members].max()) + step),
                free_offset=free_offset,
                free_width=free_width,
                depth_sd=depth_sd,
                offset_sd=offset_sd,
                width_sd=width_sd,
                grid_step_um=step / 4.0,
            )
            z = fit.shift_um
        else:
            z = weighted_median(shifts[members], w[members])
        share = best.weight / float(w.sum())
        confidence = share * min(1.0, judged.size / 4.0)
        edge = 2.0 * step
        return {
            "z": z,
            "at_edge": bool(z <= bounds[0] + edge or z >= bounds[1] - edge),
            "confidence": confidence,
            "regions": int(judged.size),
            "cluster_regions": int(members.size),
        }


def _median_valid(scores: np.ndarray, valid: np.ndarray) -> float:
    use = scores[valid] if valid.any() else np.zeros(0)
    return float(np.median(use)) if use.size else math.nan
