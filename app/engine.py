"""The tile engine: one tile, from the stage move to the image, and the one owner of the focus
drive.

The runner (app/runner.py) iterates the plan, owns the state machine, the events and the
writer; for each tile it asks the engine to `take` it, with the hint its focus predictor gives.
The engine (pymmcore-plus's `setup_event`/`exec_event` beside its runner is the model):

1. move: the XY move to the tile; Z travels with it to where the tile's first exposure will be
   (the quick look's z, the focus map's z, or the focus method's `first_z`), approached from
   below through the `FocusDrive` (`FocusDrive.approach`: the drive chooses the point below,
   the stage runs both Z legs within the XY move where it can);
2. quick look (tissue detection on): one frame at the hint; empty glass is recorded as
   skipped and nothing else is done;
3. focus: the focus method through the same drive (or the focus map's z);
4. capture: the final frame at the chosen z, unless the method took it, made the image, or
   left raw shots whose image it makes later off the scan thread (`ImageMaker`: the tile is
   recorded as pending and the runner's image worker makes it).

Every Z move of a scan goes through the one `FocusDrive` the engine holds for the whole scan,
so the soft limits, the approach from below and the drive's play are handled in one place and
the drive always knows how it got where it is. A focus failure (an exception, ok=False or a
confidence below the plan's minimum) is a `TileOutcome.warning`, and the tile is taken at the
predicted z. A method that made an image (or left shots for one) keeps it whatever its
confidence, which is then that of its z alone: a z below the minimum is recorded but not
learned from. A `HardwareError` propagates: the runner pauses the scan.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from slidescan.app.plan import FocusSettings, Tile, TissueSettings
from slidescan.app.records import CAPTURE, MADE, PENDING, PREDICTED, TileRecord
from slidescan.app.tissue import tissue_fraction
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import FocusHint, FocusMethod, FocusResult, FrameLike, Shot
from slidescan.hardware.base import Frame
from slidescan.hardware.errors import HardwareError
from slidescan.hardware.microscope import Microscope

log = logging.getLogger(__name__)


@dataclass
class TileOutcome:
    """One tile taken: its record, its image (None for skipped glass and for a tile whose
    image is still to be made: `pending`), the quick-look image of a skipped tile (for its
    thumbnail), the raw shots of an image the method made or will make, a warning for the
    person ("" when none), and the focus a predictor may learn from (None: nothing
    measured)."""

    record: TileRecord
    image: np.ndarray | None
    look: np.ndarray | None
    shots: tuple[Shot, ...]
    warning: str = ""
    learned_z_um: float | None = None

    @property
    def pending(self) -> bool:
        """The method makes this tile's image later from `shots`."""
        return self.record.image_source == PENDING


class TileEngine:
    """Takes tiles on `microscope` with `method` (None: the focus map gives every z)."""

    def __init__(
        self,
        microscope: Microscope,
        method: FocusMethod,
        focus: FocusSettings,
        tissue: TissueSettings,
    ) -> None:
        self.microscope = microscope
        self.method = method
        self.focus_settings = focus
        self.tissue = tissue
        self.drive = FocusDrive(microscope)

    # -- small services for the runner ---------------------------------------------------------
    def prepare(self) -> None:
        """Once before the first tile: the method gets ready for these optics."""
        self.method.prepare(self.microscope.optics)

    def clamp(self, z_um: float) -> float:
        """`z_um` within the Z soft limits."""
        return self.drive.clamp(z_um)[0]

    def current_z(self) -> float:
        return self.drive.get_z()

    @property
    def fov_um(self) -> tuple[float, float]:
        shape = tuple(self.microscope.camera.shape)
        p = float(self.microscope.optics.pixel_size_um)
        return shape[1] * p, shape[0] * p

    def accepts(self, result: FocusResult) -> bool:
        """Whether a focus result is good enough to use (else the tile falls back)."""
        return self._why_not(result) == ""

    def _why_not(self, result: FocusResult) -> str:
        """Why a result is not used, for the person ("" when it is)."""
        if not result.ok:
            return result.message or "failed"
        has_image = result.made is not None or result.deferred is not None
        if (result.z_um is None or not math.isfinite(result.z_um)) and not has_image:
            return f"returned neither a z nor an image ({result.z_um})"
        if result.confidence < self.focus_settings.min_confidence and not has_image:
            return result.message or f"confidence {result.confidence:.2f}"
        return ""

    def _trusts_z(self, result: FocusResult) -> bool:
        """Whether the result's z is good enough to learn from."""
        return (
            result.z_um is not None
            and math.isfinite(result.z_um)
            and result.confidence >= self.focus_settings.min_confidence
        )

    # -- a focus-map survey point -------------------------------------------------------------
    def survey_point(self, x_um: float, y_um: float, hint_z: float, source: str) -> FocusResult:
        """Move to (x, y) and focus there (a focus-map survey point)."""
        self.microscope.move_xy(x_um, y_um)
        return self._run_focus(FocusHint(hint_z, self.focus_settings.range_um, source))

    # -- one tile ------------------------------------------------------------------------------
    def take(self, tile: Tile, hint_z: float, source: str, surface: bool) -> TileOutcome:
        """Take `tile` (see the module docstring). `hint_z` is the predicted focus (clamped);
        `surface`: the focus map says the z, no method runs."""
        m = self.microscope
        hw0 = m.now()
        hint = FocusHint(hint_z, self.focus_settings.range_um, source)
        rec = TileRecord(
            index=tile.index,
            row=tile.row,
            col=tile.col,
            x_um=tile.x_um,
            y_um=tile.y_um,
            z_um=hint_z,
            hint_z_um=hint_z,
            wall_time=time.time(),
        )
        frames = 0
        start_z = self._move(tile, hint, surface)
        look: FrameLike | None = None
        if self.tissue.enabled:
            look, _ = self.drive.snap_at(hint_z)
            frames += 1
            rec.tissue_fraction = tissue_fraction(
                np.asarray(look.image),
                self.tissue.od_threshold,
                self.tissue.saturation_threshold,
            )
            if rec.tissue_fraction < self.tissue.min_fraction:
                rec.skipped, rec.method, rec.image_source = True, "skipped", ""
                self._finish(rec, look, hw0, frames)
                return TileOutcome(rec, None, np.asarray(look.image), ())

        warning = ""
        learned: float | None = None
        final: FrameLike | None = None
        shots: tuple[Shot, ...] = ()
        image: np.ndarray | None = None
        if surface:
            rec.method = "focusmap"
            rec.z_um = rec.focus_z_um = hint_z
            rec.confidence = 1.0
        else:
            result = self._run_focus(FocusHint(hint_z, hint.range_um, source, start_z))
            frames += result.frames
            self._record_focus(rec, result)
            if self.accepts(result):
                rec.z_um = self.clamp(result.z_um) if result.z_um is not None else math.nan
                final = result.final_frame
                if result.made is not None:
                    image, shots = result.made.image, result.made.shots
                    rec.image_source, rec.made_kind = MADE, result.made.kind
                elif result.deferred is not None:
                    shots = result.deferred.shots
                    rec.image_source, rec.made_kind = PENDING, result.deferred.kind
                trusted = self._trusts_z(result)
                if result.frames > 0 and self.method.name != "none" and trusted:
                    learned = rec.z_um
            else:
                rec.z_um = hint_z
                why = self._why_not(result)
                rec.fallback, rec.fallback_reason = PREDICTED, why
                warning = (
                    f"tile {tile.index}: autofocus {why}; using the predicted z {hint_z:.2f} um"
                )
        if image is None and rec.image_source != PENDING:
            if final is None:
                if look is not None and abs(self.clamp(rec.z_um) - hint_z) < 1e-9:
                    final = look  # the quick look was taken right here: no need to expose again
                else:
                    final, _ = self.drive.snap_at(rec.z_um)
                    frames += 1
            image = np.asarray(final.image)
        witness = final if final is not None else (shots[0].frame if shots else None)
        self._finish(rec, witness, hw0, frames)
        return TileOutcome(rec, image, None, shots, warning, learned)

    def _move(self, tile: Tile, hint: FocusHint, surface: bool) -> float | None:
        """The XY move to `tile`, with Z brought from below to where the tile's first exposure
        will be. Returns the method's first z when Z went there (for `FocusHint.start_z_um`)."""
        m = self.microscope
        if self.tissue.enabled or surface:
            z, for_method = self.clamp(hint.z_um), False
        else:
            z, for_method = self._first_z(hint), True
        if z is None:
            m.move_xy(tile.x_um, tile.y_um)
            return None
        self.drive.approach(z, lambda z, via: m.move_xyz(tile.x_um, tile.y_um, z, via_z_um=via))
        return z if for_method else None

    def _first_z(self, hint: FocusHint) -> float | None:
        """The method's first position, clamped; None when it has no wish or its wish fails
        (an optimisation is never a reason to stop a scan)."""
        try:
            z = self.method.first_z(self.drive, hint)
        except HardwareError:
            raise
        except Exception:
            log.warning("focus method %s: first_z failed", self.method.name, exc_info=True)
            return None
        return self.clamp(z) if z is not None and math.isfinite(z) else None

    def _run_focus(self, hint: FocusHint) -> FocusResult:
        try:
            return self.method.focus(self.drive, hint)
        except HardwareError:
            raise
        except Exception as exc:  # a focus failure is a warning, never the end of the scan
            log.warning("focus method %s raised", self.method.name, exc_info=True)
            return FocusResult(
                z_um=hint.z_um,
                frames=0,
                hardware_s=0.0,
                compute_s=0.0,
                confidence=0.0,
                method=self.method.name,
                ok=False,
                message=f"raised {type(exc).__name__}: {exc}",
            )

    @staticmethod
    def _record_focus(rec: TileRecord, result: FocusResult) -> None:
        rec.method = result.method
        rec.focus_z_um = math.nan if result.z_um is None else float(result.z_um)
        rec.frames = int(result.frames)
        rec.confidence = float(result.confidence)
        rec.ok = bool(result.ok)
        rec.hardware_s = float(result.hardware_s)
        rec.compute_s = float(result.compute_s)
        rec.calibration = bool(result.calibration)
        if result.fallback is not None:
            rec.fallback, rec.fallback_reason = result.fallback.to, result.fallback.reason
        rec.curve_kind = result.curve.kind
        rec.curve_z_um = np.asarray(result.curve.z_um, np.float32)
        rec.curve_values = np.asarray(result.curve.values, np.float32)

    def _finish(self, rec: TileRecord, frame: FrameLike | None, hw0: float, frames: int) -> None:
        """Truth and positions from the frame that shows the tile, and the tile's totals."""
        m = self.microscope
        meta = frame.meta if frame is not None else {}
        truth = meta.get("true_focus_um")
        if truth is None and m.truth is not None:
            truth = m.truth.true_focus_um(rec.x_um, rec.y_um)
        rec.true_focus_um = float(truth) if truth is not None else math.nan
        true_xyz = meta.get("true_position_um")
        if true_xyz is not None:
            rec.true_x_um, rec.true_y_um = float(true_xyz[0]), float(true_xyz[1])
        if isinstance(frame, Frame) and frame.position is not None:
            rec.stage_x_um, rec.stage_y_um = frame.position.x, frame.position.y
        if not rec.skipped and rec.image_source == "":
            rec.image_source = CAPTURE
        rec.hw_time = m.now()
        rec.tile_hardware_s = rec.hw_time - hw0
        rec.tile_frames = frames
