"""Two-shot virtual autofocus (Li et al., "Rapid Whole Slide Imaging via Learning-based
Two-shot Virtual Autofocusing"): no search and no move to focus; two shots either side of the
predicted focus are fused by a network into the in-focus image.

Tile sequence, as the paper: the first tile is a dense z-sweep (`ZSweep`) that finds focus and
records the slide's focus curve; it is captured at focus like any swept tile. Every later tile
takes shot Y1 at F - dD and Y2 at F + dD around the predicted focus F (the scan's focus
predictor: previous tiles, or a focus map), Y1 approached from below inside the XY move
(`first_z`), Y2 one upward step of 2 dD later. The tile's focus is estimated from the pair
(`focus.pair_estimate`: the ratio of the two shots' metrics read against the first sweep's
curve), so the predictor, the focus plots and the focus overlay keep working; when it says
focus lies further than `repair_beyond_um` from the pair's centre, one more pair is taken
around the estimate (at most `max_pairs`). The result carries the shots as a
`DeferredImage`: the scan does not wait for the network, its image worker fuses them
(`make_image`, this class being an `ImageMaker`).

The network (`focus.learned.unet.TwoShotUNet`) and its inference (`focus.learned.fusion`) are
loaded from a kit checkpoint (method "tsva"): the shipped weights for 20x/0.75, or `weights`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned.tsva_params import TSVAParams
from slidescan.focus.metrics import get_metric
from slidescan.focus.pair_estimate import PairEstimator
from slidescan.focus.protocol import (
    DeferredImage,
    FocusCurve,
    FocusError,
    FocusHint,
    FocusMethod,
    FocusResult,
    ImageMaker,
    OpticsLike,
    Shot,
)

log = logging.getLogger(__name__)

METHOD = "tsva"
DEFAULT_OBJECTIVE = "20x/0.75"
#: Confidence of a focus estimate inside the pair's table, and of one clamped to its end.
CONFIDENCE_INSIDE, CONFIDENCE_CLAMPED = 0.9, 0.1


def load_fuser(
    weights: Path | None, threads: int | None = None, device: str = "auto"
) -> tuple[Any, Any]:
    """The fusion network of a checkpoint (default: the shipped 20x/0.75 weights) as a
    `Fuser`, and the checkpoint; a missing or corrupt file is a one-line `FocusError`."""
    import torch

    from slidescan.focus.learned.checkpoint import load_checkpoint, shipped_path
    from slidescan.focus.learned.fusion import Fuser

    path = Path(weights) if weights is not None else shipped_path(METHOD, DEFAULT_OBJECTIVE)
    ckpt = load_checkpoint(path, METHOD)
    model = ckpt.build()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Fuser(model, threads=threads, device=device), ckpt


class TSVAFocus(FocusMethod, ImageMaker):
    """Focus method "tsva" (see the module docstring). Parameters: `TSVAParams`."""

    name = METHOD
    Params = TSVAParams
    params: TSVAParams
    image_kind = "fused"

    def __init__(self, params: TSVAParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.fuser, self.checkpoint = load_fuser(
            self.params.weights, self.params.threads, self.params.device
        )
        self.meta: dict[str, Any] = dict(self.checkpoint.meta)
        self.estimator: PairEstimator | None = None
        self.sweep_peak_um: float | None = None
        self._metric = get_metric(self.params.metric)
        lo, hi = self.meta.get("spacing_um", (0.0, math.inf))
        if not lo - 1e-9 <= self.params.spacing_um <= hi + 1e-9:
            log.warning(
                "tsva: spacing %.2f um is outside the %.2f-%.2f um the network was trained for",
                self.params.spacing_um,
                lo,
                hi,
            )

    # -- the focus contract --------------------------------------------------------------------
    def prepare(self, optics: OpticsLike) -> None:
        trained = self.meta.get("objective", DEFAULT_OBJECTIVE)
        if optics.objective_name != trained:
            log.warning(
                "tsva: the network was trained for %s, this microscope has %s",
                trained,
                optics.objective_name,
            )
        # the first fusion pays for oneDNN's set-up: pay it here, not in the first tile
        warm = np.zeros((64, 64, 3), np.uint8)
        self.fuser.fuse(warm, warm)

    def _sweep(self) -> FocusMethod:
        from slidescan.focus.classical import ZSweep

        return ZSweep(metric=self.params.metric, range_um=self.params.sweep_range_um)

    def first_z(self, drive: FocusDrive, hint: FocusHint) -> float | None:
        if self.estimator is None:
            return self._sweep().first_z(drive, hint)
        return hint.z_um - self.params.spacing_um

    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        if self.estimator is None:
            return self._first_tile(drive, hint)
        hw0 = drive.now()
        d = self.params.spacing_um
        centre, _ = drive.clamp(hint.z_um)
        zs: list[float] = []
        values: list[float] = []
        compute = 0.0
        frames = 0
        for pair in range(self.params.max_pairs):
            lo_frame, lo_move = drive.snap_at(centre - d)
            hi_frame, hi_move = drive.snap_at(centre + d)
            frames += 2
            c0 = time.perf_counter()
            m_lo = float(self._metric(np.asarray(lo_frame.image)))
            m_hi = float(self._metric(np.asarray(hi_frame.image)))
            est = self.estimator.estimate(m_lo, m_hi)
            compute += time.perf_counter() - c0
            zs += [lo_move.z_um, hi_move.z_um]
            values += [m_lo, m_hi]
            pair_centre = 0.5 * (lo_move.z_um + hi_move.z_um)
            z_est = pair_centre + est.offset_um
            far = abs(est.offset_um) > self.params.repair_beyond_um or not est.inside
            if not far or pair == self.params.max_pairs - 1:
                break
            centre, _ = drive.clamp(z_est)
        shots = [Shot(lo_move.z_um, lo_frame), Shot(hi_move.z_um, hi_frame)]
        if m_hi > m_lo:
            shots.reverse()  # the sharper first: it stands in until the image is made
        confidence = CONFIDENCE_INSIDE if est.inside else CONFIDENCE_CLAMPED
        return FocusResult(
            z_um=z_est,
            frames=frames,
            hardware_s=drive.now() - hw0,
            compute_s=compute,
            confidence=confidence,
            curve=FocusCurve(np.asarray(zs), np.asarray(values), "metric", self.params.metric),
            method=self.name,
            message="" if est.inside else "focus beyond what the pair can tell",
            deferred=DeferredImage(tuple(shots), self.image_kind),
            extra={"pairs": frames // 2, "offset_um": est.offset_um, "spacing_um": d},
        )

    def _first_tile(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        """The dense sweep that finds focus and gives the slide's focus curve."""
        result = self._sweep().focus(drive, hint)
        result.method = self.name
        result.calibration = True  # its extra frames are by design
        if result.ok and result.z_um is not None and result.curve.z_um.size >= 3:
            try:
                self.estimator = PairEstimator(
                    result.curve.z_um, result.curve.values, result.z_um, self.params.spacing_um
                )
                self.sweep_peak_um = float(result.z_um)
            except ValueError as exc:
                log.warning("tsva: the first sweep gives no focus curve (%s); sweeping again", exc)
        return result

    # -- ImageMaker ----------------------------------------------------------------------------
    def make_image(self, shots: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
        from slidescan.focus.learned.fusion import to_camera

        if len(shots) != 2:
            raise FocusError(f"tsva fuses two shots, got {len(shots)}")
        a, b = (np.asarray(image) for _, image in shots)
        return to_camera(self.fuser.fuse(a, b), a)
