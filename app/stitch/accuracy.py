"""How far placed tiles are from where they really were (simulator scans know the truth).

The mosaic's origin is arbitrary, so positions are compared after removing the one global
translation that fits best (the mean difference); what is left is each tile's 2-D error.
"""

from __future__ import annotations

import numpy as np


def position_errors(placed_xy: np.ndarray, true_xy: np.ndarray) -> np.ndarray:
    """Per-tile error norms (pixels) of `placed_xy` against `true_xy` ((n, 2) each), after
    the best global translation."""
    d = np.asarray(placed_xy, np.float64) - np.asarray(true_xy, np.float64)
    if d.size == 0:
        return np.zeros(0)
    d -= d.mean(axis=0)
    return np.linalg.norm(d, axis=1)


def error_summary(placed_xy: np.ndarray, true_xy: np.ndarray) -> dict[str, float]:
    """`rms_error_px` and `max_error_px` of placed against true positions."""
    e = position_errors(placed_xy, true_xy)
    if e.size == 0:
        return {"rms_error_px": float("nan"), "max_error_px": float("nan")}
    return {"rms_error_px": float(np.sqrt(np.mean(e**2))), "max_error_px": float(e.max())}
