"""Where the next tile's focus is expected: the hint the runner gives the engine.

Per-tile strategy: a `FocusPredictor` (a robust surface through the focus measured so far,
`slidescan.focus.surface`) updated as the scan goes, seeded on resume from the tiles already in
the file; before any point, the scan's start z. Focus-map strategy: a surface fitted once to
the survey points; every tile is taken at its z. Every hint is clamped to the Z soft limits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from slidescan.app.plan import FocusSettings
from slidescan.focus.protocol import FocusError
from slidescan.focus.surface import MIN_POINTS, FocusPredictor, fit_surface

log = logging.getLogger(__name__)

#: Methods whose z is not a measurement (they only repeat the hint): never learned from.
NOT_MEASURED = ("none", "focusmap")


class FocusHints:
    """The hint for a tile at (x, y): `hint(x, y) -> (z, source)`."""

    def __init__(
        self,
        settings: FocusSettings,
        start_z_um: float,
        clamp: Callable[[float], float],
        predictor: Any | None = None,
    ) -> None:
        self.settings = settings
        self.start_z_um = float(start_z_um)
        self.clamp = clamp
        self.predictor = (
            predictor if predictor is not None else FocusPredictor(default_z=start_z_um)
        )
        self.surface: Callable[[float, float], float] | None = None

    def hint(self, x_um: float, y_um: float) -> tuple[float, str]:
        if self.surface is not None:
            return self.clamp(float(self.surface(x_um, y_um))), "focusmap"
        try:
            z, _uncertainty = self.predictor.predict(x_um, y_um)
        except (FocusError, np.linalg.LinAlgError):
            log.debug("no prediction at (%.0f, %.0f) yet; using the start z", x_um, y_um)
            return self.start_z_um, "start"
        if not math.isfinite(z):
            return self.start_z_um, "start"
        return self.clamp(float(z)), "predictor"

    def learn(self, x_um: float, y_um: float, z_um: float, confidence: float) -> None:
        """A focus measured at (x, y)."""
        self.predictor.add(x_um, y_um, z_um, max(confidence, 1e-3))

    def seed(self, records: np.ndarray) -> None:
        """On resume: learn every focus measured before (scan-file records)."""
        for rec in records:
            fallback = bytes(rec["fallback"]).decode(errors="replace").strip("\x00 ")
            method = bytes(rec["method"]).decode(errors="replace").strip("\x00 ")
            if rec["skipped"] or fallback == "predicted" or method in NOT_MEASURED:
                continue
            if not math.isfinite(rec["z_um"]):
                continue
            w = float(rec["confidence"]) if math.isfinite(rec["confidence"]) else 1.0
            self.predictor.add(float(rec["x_um"]), float(rec["y_um"]), float(rec["z_um"]), w)

    def fit_map(
        self, x_um: list[float], y_um: list[float], z_um: list[float], w: list[float]
    ) -> str:
        """Fit the focus-map surface to the survey points; from now on it gives every hint.
        With too few points for the planned surface (survey points that failed were dropped),
        a simpler one is fitted: returns a warning saying so ("" when none). Fewer than three
        points: `FocusError`."""
        xs, ys, zs, ws = (np.asarray(v, float) for v in (x_um, y_um, z_um, w))
        kind = self.settings.surface
        warning = ""
        if len(zs) < MIN_POINTS[kind]:
            if len(zs) < MIN_POINTS["plane"]:
                raise FocusError(
                    f"the focus map needs at least {MIN_POINTS['plane']} focused survey points, "
                    f"got {len(zs)}"
                )
            warning = (
                f"only {len(zs)} survey points focused: fitting a plane instead of a {kind} "
                "focus map"
            )
            kind = "plane"
        surface = fit_surface(
            np.column_stack([xs, ys]),
            zs,
            kind=kind,
            smoothing=1e-3 if kind == "tps" else 0.0,
            weights=np.clip(ws, 1e-3, None),
            robust=True,
        )
        self.surface = surface.predict
        return warning
