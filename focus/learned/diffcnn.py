"""The difference-image CNN autofocus (Dastidar & Ethirajan, Biomed. Opt. Express 11(1):480).

One tile: from the hint, go below it by an offset large enough that both shots are on the
same side of focus (below it), approach from below (backlash), take two frames `delta` apart,
let the CNN read their difference patch by patch, combine the patches' predictions with a
std-weighted median, move to the predicted focus and take the final frame: three frames and
three moves. If the patches disagree (low confidence) or the prediction lies outside the range
the model was trained on, one more pair is taken where the first pair says focus is; if that
one is not trusted either, a short z-sweep around the best estimate decides.

Per slide (ours, not in the paper), the first `calibrate_tiles` tiles the CNN settles also take
pairs at two more distances and a short sweep on the green channel; a gain and an offset
fitted to those points (`fit_correction`) correct every later prediction. They remove what two
defocused frames cannot show and what is constant over a slide: cover-glass aberration, stain
and section, an aperture the network was not trained on.

The model (checkpoint meta, loading, `DiffCNNPredictor`: two frames -> distance) is in
`diffcnn_model`, the per-slide correction in `diffcnn_calibration`, the parameters (torch-free)
in `diffcnn_params`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned import diffcnn_model
from slidescan.focus.learned.diffcnn_calibration import SlideCorrection, fit_correction
from slidescan.focus.learned.diffcnn_model import (
    DEFAULT_OBJECTIVE,
    DiffCNNPredictor,
    PairPrediction,
)
from slidescan.focus.learned.diffcnn_params import DiffCNNParams
from slidescan.focus.protocol import (
    Fallback,
    FocusCurve,
    FocusError,
    FocusHint,
    FocusMethod,
    FocusResult,
    OpticsLike,
    SlideCalibrated,
)

#: Default largest distance a single pair is trusted at, in pair spacings (4.5 um at 20x/0.75,
#: where the validation error grows beyond it; other objectives scale with their spacing).
TRUST_WITHIN_DELTAS = 2.25


class DiffCNNFocus(FocusMethod, SlideCalibrated):
    """Focus method "diffcnn": two shots below the hint, one CNN prediction, one move.

    Parameters (`DiffCNNParams`; all optional, the defaults come from the checkpoint):
    - `weights`: checkpoint path; default the shipped weights for `objective`.
    - `objective`: whose shipped weights to use. None (the default): the objective of the
      optics the method is prepared for (`prepare`, or the first tile's) when weights are
      shipped for it, else 20x/0.75 with `na_scaling`.
    - `range_um`: how far off a hint may be when it does not say (`FocusHint.range_um`).
    - `margin_um`: extra distance kept between the upper shot and the nearest possible focus.
    - `min_confidence`: below this a pair is not trusted (another pair, then a sweep).
    - `trust_within_um`: a pair further from focus than this (model um) only places a second
      pair close to focus, where the network is most accurate. None (default):
      `TRUST_WITHIN_DELTAS` pair spacings of the active model (4.5 um at 20x/0.75, scaled
      with the depth of field for other objectives); infinity: trust any distance.
    - `max_pairs`: pairs before falling back to a sweep.
    - `calibrate_tiles` (default 5): per slide (one method instance serves one scan), the
      first this many tiles the CNN settles are also measured: one more pair at each distance
      of `calibration_pairs_um` below the CNN's focus, then a short sweep
      (`calibration_range_um` either side of it, default 1.5 um: about 7 frames) that says
      where focus really is. From these points a gain and an offset are fitted
      (`fit_correction`) and applied to every later prediction: distance = gain x network +
      offset. They remove what the network cannot see and is constant over a slide: the
      cover glass's spherical aberration, the stain and section, an aperture it was not
      trained on. 0 turns it off (the paper's method as published).
    - `calibration_pairs_um`: distances (model um) below the CNN's focus of the extra pairs of
      a calibration tile; with the tile's own pair they give the slope. () fits an offset
      only.
    - `fallback`: "zsweep" (a short `ZSweep` on `sweep_metric`) settles a tile the CNN does
      not trust, and is the calibration sweep; "none": the result is then `ok=False` with the
      best estimate. A caller may pass any method as `fallback_method` instead.
    - `sweep_metric`: the sweep's metric: "brenner_green" (see `slidescan.focus.metrics`:
      luminance is pulled towards red focus by axial colour).
    - `na_scaling`: on an objective whose NA is outside the trained range, scale the shot
      distance and the prediction by the ratio of blur per um (see `axial_scale`).
    - `threads`: torch CPU threads for inference (1 is fastest for this small network on a
      busy CPU; None keeps torch's setting).
    """

    name = "diffcnn"
    Params = DiffCNNParams
    params: DiffCNNParams

    def __init__(
        self,
        params: DiffCNNParams | None = None,
        /,
        *,
        fallback_method: FocusMethod | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, **kwargs)
        p = self.params
        self.calibrate_tiles = p.calibrate_tiles
        self.calibration_range_um = p.calibration_range_um
        #: True: use the correction measured so far but measure no more (see `SlideCalibrated`)
        self.calibration_frozen = False
        #: (model objective, axial scale) -> calibration tiles, each a list of (network
        #: distance, sweep distance) points in model um
        self._calibration: dict[tuple[str, float], list[list[tuple[float, float]]]] = {}
        self._predictor_args = (p.tolerance_um, p.max_patches, p.threads)
        first = DiffCNNPredictor(p.weights, p.objective or DEFAULT_OBJECTIVE, *self._predictor_args)
        #: choose shipped weights by the optics' objective (neither weights nor objective given)
        self.auto_objective = p.weights is None and p.objective is None
        self._models: dict[str, DiffCNNPredictor] = {first.meta.objective: first}
        self.default_objective = first.meta.objective
        self.predictor = first
        self.meta = first.meta
        self._prepared_for: OpticsLike | None = None
        lo, hi = self.meta.y_min_um, self.meta.y_max_um
        if any(not (lo <= y <= hi) for y in p.calibration_pairs_um):
            raise ValueError(
                f"calibration_pairs_um must lie in the trained range [{lo:g}, {hi:g}] um, "
                f"got {p.calibration_pairs_um}"
            )
        self.calibration_pairs_um = p.calibration_pairs_um
        self.na_scaling = p.na_scaling
        self._trust_within_um = p.trust_within_um
        self.range_um = p.range_um
        self.margin_um = p.margin_um
        self.min_confidence = p.min_confidence
        self.max_pairs = p.max_pairs
        if fallback_method is None and p.fallback == "zsweep":
            from slidescan.focus.classical import ZSweep

            fallback_method = ZSweep(metric=p.sweep_metric)
        self.fallback: FocusMethod | None = fallback_method

    # -- geometry ----------------------------------------------------------------------------
    @property
    def trust_within_um(self) -> float:
        """Largest predicted distance (model um) a single pair is trusted at."""
        if self._trust_within_um is not None:
            return self._trust_within_um
        return TRUST_WITHIN_DELTAS * self.meta.delta_um

    @trust_within_um.setter
    def trust_within_um(self, value: float) -> None:
        self._trust_within_um = float(value)

    @property
    def delta_um(self) -> float:
        return self.meta.delta_um

    def offset_for(self, range_um: float) -> float:
        """Distance below the hint for the first shot so that, with focus anywhere within
        +/- `range_um` of the hint, the pair lies inside the trained range: the upper shot at
        least `y_min - delta + margin` below focus. Capped so the far end stays trained."""
        lo, hi = self.meta.y_min_um, self.meta.y_max_um
        r = min(range_um, max(0.0, 0.5 * (hi - lo) - self.margin_um))
        return lo + self.margin_um + r

    def in_trained_range(self, distance_um: float) -> bool:
        return self.meta.y_min_um - 0.25 <= distance_um <= self.meta.y_max_um + 0.25

    def _trusted(self, pred: PairPrediction) -> bool:
        """Use this pair's prediction: patches agree, inside the trained range, and close
        enough to focus (`trust_within_um`) for one pair to be accurate. A prediction at the
        very bottom of the range may come from a pair that straddles focus: not trusted."""
        return (
            pred.ok
            and self.meta.y_min_um + 0.25 <= pred.distance_um <= self.meta.y_max_um + 0.25
            and pred.distance_um <= self.trust_within_um
            and pred.confidence >= self.min_confidence
        )

    def axial_scale(self, optics: OpticsLike) -> float:
        """Device um per model um along z.

        1 when the optics' NA lies in the range the model was trained on. Otherwise (with
        `na_scaling`) the ratio of the geometric blur per um of defocus, tan(asin(NA/n)),
        of the trained and the device objective: the shots are taken that much further apart
        and the predicted distance is stretched by the same factor, so the pair looks like
        one the model has seen. A first-order correction: diffraction near focus still
        differs.
        """
        if not self.na_scaling:
            return 1.0
        try:
            na = float(optics.na)
            n = float(optics.immersion_n)
        except (TypeError, ValueError):
            return 1.0
        lo, hi = self.meta.na_range or (self.meta.na, self.meta.na)
        if not (math.isfinite(na) and 0 < na < n) or lo - 1e-6 <= na <= hi + 1e-6:
            return 1.0
        trained = math.tan(math.asin(self.meta.na / self.meta.immersion_n))
        return trained / math.tan(math.asin(na / n))

    # -- lifecycle ---------------------------------------------------------------------------
    def prepare(self, optics: OpticsLike) -> None:
        """Choose the model for these optics (loading shipped weights for their objective the
        first time) and run it once, so the first tile pays no set-up."""
        self.select_model(optics)
        self.predictor.warm_up()

    def warm_up(self) -> None:
        """Run the loaded models once (see `DiffCNNPredictor.warm_up`)."""
        for predictor in self._models.values():
            predictor.warm_up()

    # -- per-slide calibration ---------------------------------------------------------------
    def _calibration_tile(
        self,
        drive: FocusDrive,
        first: tuple[float, float],
        z_cnn: float,
        scale: float,
        tiles: list[list[tuple[float, float]]],
        spent: tuple[int, float, float],
        curve: FocusCurve,
        extra: dict[str, Any],
    ) -> FocusResult:
        """Calibrate on this tile: the extra pairs (`calibration_pairs_um` below `z_cnn`), then
        a short sweep around `z_cnn` that settles the tile. `first` is (z, network distance)
        of the pair the CNN settled on. The tile's points are kept unless the sweep failed or
        landed further off than twice its own half range (the tile still gets the sweep's
        answer when it is ok)."""
        assert self.fallback is not None
        frames, hw_start, compute_s = spent
        pixel_size = _pixel_size(drive.optics)
        delta = self.delta_um * scale
        corrected = self.correction(scale)
        measured = [first]
        shots, values = list(curve.z_um), list(curve.values)
        for y in sorted(self.calibration_pairs_um, reverse=True):  # lowest first: moves go up
            f1, m1 = drive.snap_at(z_cnn - scale * y)
            f2, m2 = drive.snap_at(m1.z_um + delta)
            frames += 2
            if abs((m2.z_um - m1.z_um) - delta) > 1e-6:
                continue  # the soft limits left no room for this pair
            pred = self.predictor.predict(f1.image, f2.image, pixel_size)
            compute_s += pred.compute_s
            estimate = m1.z_um + scale * corrected(pred.distance_um)
            shots += [m1.z_um, m2.z_um]
            values += [estimate, estimate] if pred.ok else [math.nan, math.nan]
            if pred.ok and self.in_trained_range(pred.distance_um):
                measured.append((m1.z_um, pred.distance_um))
        half = self.calibration_range_um * scale
        sub = self.fallback.focus(drive, FocusHint(z_cnn, range_um=half, source="calibration"))
        sub_z = math.nan if sub.z_um is None else float(sub.z_um)
        diff = sub_z - z_cnn
        kept = bool(sub.ok and math.isfinite(diff) and abs(diff) <= 2.0 * half)
        if kept:
            tiles.append([(p, (sub_z - z) / scale) for z, p in measured])
        fitted = self.correction(scale)
        name = self.fallback.name
        extra["calibration"] = {
            "tile": len(tiles),
            "of": self.calibrate_tiles,
            "kept": kept,
            "points": len(measured),
            "gain": fitted.gain,
            "offset_um": fitted.offset_um * scale,
        }
        extra["calibration_diff_um"] = diff
        message = (
            f"calibration tile {len(tiles)}/{self.calibrate_tiles}: "
            f"{name} - CNN = {diff:+.2f} um"
            + ("" if kept else " (not kept)")
            + f"; slide correction: gain {fitted.gain:.3f}, offset {fitted.offset_um * scale:+.2f} um"
        )
        spent = (frames, drive.now() - hw_start, compute_s)
        label = f"diffcnn, then {name} (calibration)"
        joined = FocusCurve(np.array(shots), np.array(values), kind="prediction", label="diffcnn")
        result = _handed_over(sub, spent, joined, label, self.name, message, extra)
        result.calibration = True
        return result

    def _cal_key(self, scale: float) -> tuple[str, float]:
        return (self.meta.objective, round(scale, 6))

    def correction(self, scale: float = 1.0) -> SlideCorrection:
        """The active model's per-slide correction at this axial scale (model um; see
        `fit_correction`); the identity before any calibration tile."""
        return fit_correction(self._calibration.get(self._cal_key(scale), []))

    def reset_calibration(self) -> None:
        """Forget the calibration (a new slide)."""
        self._calibration.clear()

    def calibration_count(self) -> int:
        """Calibration tiles kept so far, over every model and axial scale."""
        return sum(len(v) for v in self._calibration.values())

    # -- which model -------------------------------------------------------------------------
    def select_model(self, optics: OpticsLike) -> DiffCNNPredictor:
        """Make the model for these optics' objective the active one (see `objective`)."""
        if self.auto_objective:
            name = optics_objective(optics)
            model = self._models.get(name) if name is not None else None
            if model is None and name is not None:
                path = diffcnn_model.shipped_weights_path(name)
                model = (
                    DiffCNNPredictor(path, name, *self._predictor_args)
                    if path.is_file()
                    else self._models[self.default_objective]
                )
                self._models[name] = model
            if model is not None:
                self.predictor, self.meta = model, model.meta
        self._prepared_for = optics
        return self.predictor

    def _ready(self, optics: OpticsLike) -> None:
        """The model for these optics, chosen once (by `prepare` or here)."""
        if self._prepared_for is not optics:
            self.select_model(optics)

    # -- one tile ----------------------------------------------------------------------------
    def _range(self, hint: FocusHint) -> float:
        r = hint.range_um
        return float(r) if r is not None and math.isfinite(r) and r > 0 else self.range_um

    def _first_shot(self, drive: FocusDrive, hint: FocusHint) -> float:
        """z of the first shot: far enough below the (clamped) hint for its range."""
        scale = self.axial_scale(drive.optics)
        hint_z, _ = drive.clamp(hint.z_um)
        return hint_z - scale * self.offset_for(self._range(hint) / scale)

    def first_z(self, drive: FocusDrive, hint: FocusHint) -> float:
        """The first shot's z (clamped to the soft limits): the scan engine brings Z there
        from below during the XY move, so the pair starts without a move of its own."""
        self._ready(drive.optics)
        return drive.clamp(self._first_shot(drive, hint))[0]

    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        optics = drive.optics
        self._ready(optics)
        hw_start = drive.now()
        compute_s = 0.0
        frames = 0
        pixel_size = _pixel_size(optics)
        scale = self.axial_scale(optics)  # device um per model um
        delta = self.delta_um * scale
        hint_z, hint_clamped = drive.clamp(hint.z_um)
        range_um = self._range(hint)
        shots: list[float] = []
        shot_pred: list[float] = []
        pairs: list[tuple[float, PairPrediction]] = []
        start = hint.start_z_um if hint.start_z_um is not None else self._first_shot(drive, hint)
        clamped = hint_clamped
        corrected = self.correction(scale)
        for _ in range(self.max_pairs):
            f1, m1 = drive.snap_at(start)
            f2, m2 = drive.snap_at(m1.z_um + delta)
            frames += 2
            clamped = clamped or m1.clamped or m2.clamped
            if abs((m2.z_um - m1.z_um) - delta) > 1e-6:
                raise FocusError(
                    f"no room for the diffcnn pair: z {m1.z_um:.2f}+{delta:.2f} um "
                    f"leaves the soft limits {drive.limits}"
                )
            pred = self.predictor.predict(f1.image, f2.image, pixel_size)
            compute_s += pred.compute_s
            pairs.append((m1.z_um, pred))
            z_est = m1.z_um + scale * corrected(pred.distance_um) if pred.ok else math.nan
            shots += [m1.z_um, m2.z_um]
            shot_pred += [z_est, z_est]
            if not pred.ok:
                break  # no tissue in the field: another pair will not find any
            if self._trusted(pred):
                break
            # Not trusted: place the next pair around the estimate, with its uncertainty as
            # the range (in model um). Out of range, the model only says "further than it was
            # trained for" (or "too close"): take the nearest trained distance, full range.
            lo, hi = self.meta.y_min_um, self.meta.y_max_um
            if self.in_trained_range(pred.distance_um):
                r = max(2.0 * pred.stderr_um, 0.75)
            else:
                r = range_um / scale
            nearest = corrected(float(np.clip(pred.distance_um, lo, hi)))
            start = m1.z_um + scale * (nearest - self.offset_for(r))

        z_first, last = pairs[-1]
        trusted = self._trusted(last)
        curve = FocusCurve(
            np.array(shots, float), np.array(shot_pred, float), kind="prediction", label="diffcnn"
        )
        extra: dict[str, Any] = {
            "pairs": len(pairs),
            "delta_um": delta,
            "axial_scale": scale,
            "distance_um": float(scale * last.distance_um),
            "spread_um": float(last.spread_um),
            "patches": int(last.n_patches),
            "clamped": bool(clamped),
        }
        extra["correction"] = {"gain": corrected.gain, "offset_um": corrected.offset_um * scale}
        if trusted:
            z_best = z_first + scale * corrected(last.distance_um)
            tiles = self._calibration.setdefault(self._cal_key(scale), [])
            wanted = len(tiles) < self.calibrate_tiles and not self.calibration_frozen
            if wanted and self.fallback is not None:
                spent = (frames, hw_start, compute_s)
                first = (z_first, last.distance_um)
                return self._calibration_tile(
                    drive, first, z_best, scale, tiles, spent, curve, extra
                )
            final, move = drive.snap_at(z_best)
            frames += 1
            extra["clamped"] = bool(clamped or move.clamped)
            return FocusResult(
                z_um=move.z_um,
                frames=frames,
                hardware_s=drive.now() - hw_start,
                compute_s=compute_s,
                confidence=last.confidence,
                curve=curve,
                method=self.name,
                ok=True,
                final_frame=final,
                extra=extra,
            )

        # Not trusted: a short sweep around the last in-range estimate, else around the hint.
        seen = [p for _, p in pairs if p.ok]
        if not seen:
            why = "no tissue in the field"
        elif not last.ok:
            why = "no tissue in the field at the second pair"
        elif not self.in_trained_range(last.distance_um):
            why = f"prediction {last.distance_um:.2f} um outside the trained range"
        elif (
            last.distance_um < self.meta.y_min_um + 0.25 and last.confidence >= self.min_confidence
        ):
            why = f"pair only {last.distance_um:.2f} um below focus: it may straddle focus"
        elif last.confidence >= self.min_confidence:
            why = f"still {last.distance_um:.2f} um from focus after {len(pairs)} pairs"
        else:
            why = f"patches disagree (confidence {last.confidence:.2f})"
        if last.ok and self.in_trained_range(last.distance_um):
            centre = z_first + scale * corrected(last.distance_um)
            sweep_range = min(max(3.0 * scale * last.stderr_um, 2.0), range_um)
        else:
            centre, sweep_range = hint_z, range_um
        if self.fallback is None or not seen:
            z_best, _ = drive.clamp(centre)
            return FocusResult(
                z_um=z_best,
                frames=frames,
                hardware_s=drive.now() - hw_start,
                compute_s=compute_s,
                confidence=0.0,
                curve=curve,
                method=self.name,
                ok=False,
                message=why,
                extra=extra,
            )
        sub = self.fallback.focus(drive, FocusHint(centre, range_um=sweep_range, source="diffcnn"))
        name = self.fallback.name
        spent = (frames, drive.now() - hw_start, compute_s)
        message = f"{why}; fell back to {name}"
        result = _handed_over(sub, spent, curve, f"diffcnn, then {name}", self.name, message, extra)
        result.fallback = Fallback(name, why)
        return result


def _handed_over(
    sub: FocusResult,
    spent: tuple[int, float, float],
    curve: FocusCurve,
    label: str,
    method: str,
    message: str,
    extra: dict[str, Any],
) -> FocusResult:
    """The tile's result when a sub-method (the sweep) settled it: its z, confidence, ok and
    final frame; frames and compute are the CNN's (`spent`: frames, -, compute s) plus the
    sub-method's, hardware s is the whole tile's (`spent[1]`), and the curve is the CNN's
    shots followed by the sub-method's frames, all valued at the z it settled on."""
    frames, hardware_s, compute_s = spent
    settled = math.nan if sub.z_um is None else sub.z_um
    joined = FocusCurve(
        np.concatenate([curve.z_um, sub.curve.z_um]),
        np.concatenate([curve.values, np.full(sub.curve.z_um.size, settled)]),
        kind="prediction",
        label=label,
    )
    return FocusResult(
        z_um=sub.z_um,
        frames=frames + sub.frames,
        hardware_s=hardware_s,
        compute_s=compute_s + sub.compute_s,
        confidence=sub.confidence,
        curve=joined,
        method=method,
        ok=sub.ok,
        message=message,
        final_frame=sub.final_frame,
        extra=extra,
    )


def optics_objective(optics: OpticsLike) -> str | None:
    """The optics' objective name ('20x/0.75'): the declared name when there is one (an NA
    override keeps the catalogue name), else magnification and NA as a stack file records
    them; None when the optics do not say."""
    name = optics.objective_name
    if isinstance(name, str) and name:
        return name
    try:
        mag, na = float(optics.magnification), float(optics.na)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(mag) and math.isfinite(na) and mag > 0 and na > 0):
        return None
    return f"{mag:g}x/{na:.2f}"


def _pixel_size(optics: OpticsLike) -> float | None:
    try:
        px = float(optics.pixel_size_um)
    except (TypeError, ValueError):
        return None
    return px if math.isfinite(px) and px > 0 else None
