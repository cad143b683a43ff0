"""Where focus is, from two shots either side of a guess: the ratio of their focus metrics,
read against a focus curve measured once on the same slide.

Shots at F - d and F + d of a field whose focus is F + e: the metric of each is the slide's
focus curve c (metric against defocus u) at u1 = -d - e and u2 = d - e, times the field's
contrast. The contrast cancels in the log-ratio

    r(e) = ln c(-d - e) - ln c(d - e),

which falls monotonically with e around 0 (the nearer shot is the sharper). `PairEstimator`
tabulates r(e) from one measured sweep (its metric values against z, peak at z0: c(u) is the
sweep at z0 + u, interpolated in log) and inverts it: e from the observed ratio. Outside the
table (the focus further off than the sweep can tell) the estimate is clamped to the table's
end and flagged. This is TSVA's focus estimate (the focus map and the plots still need each
tile's focus); it needs no network and no extra frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Table resolution in um.
STEP_UM = 0.02


@dataclass(frozen=True)
class PairEstimate:
    """`offset_um`: estimated focus minus the pair's centre; `inside`: the ratio fell inside
    the table (else the offset is the table's end in the ratio's direction)."""

    offset_um: float
    inside: bool
    log_ratio: float


class PairEstimator:
    """The log-ratio table of one sweep for shots `spacing_um` either side (module docstring)."""

    def __init__(self, z_um: np.ndarray, values: np.ndarray, peak_z_um: float, spacing_um: float):
        z = np.asarray(z_um, np.float64)
        v = np.asarray(values, np.float64)
        order = np.argsort(z)
        z, v = z[order], v[order]
        if z.size < 3 or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError("a focus curve needs 3 or more positive, finite metric values")
        if not spacing_um > 0:
            raise ValueError(f"spacing must be positive, got {spacing_um}")
        self.spacing_um = float(spacing_um)
        u = z - float(peak_z_um)
        self._u, self._log_c = u, np.log(v)
        d = self.spacing_um
        # e such that both -d - e and d - e lie inside the measured defocus range
        e_lo, e_hi = d - u[-1], -d - u[0]
        if not e_hi - e_lo > 2 * STEP_UM:
            raise ValueError(
                f"the sweep ({u[0]:+.1f}..{u[-1]:+.1f} um about its peak) is too short for "
                f"shots {d:g} um either side"
            )
        e = np.arange(e_lo, e_hi + STEP_UM / 2, STEP_UM)
        r = self._log_curve(-d - e) - self._log_curve(d - e)
        # the monotonically falling stretch around e = 0
        k0 = int(np.argmin(np.abs(e)))
        lo = k0
        while lo > 0 and r[lo - 1] > r[lo]:
            lo -= 1
        hi = k0
        while hi < len(e) - 1 and r[hi + 1] < r[hi]:
            hi += 1
        if hi - lo < 2:
            raise ValueError("the focus curve gives no usable ratio around its peak")
        self.e_um, self.r = e[lo : hi + 1], r[lo : hi + 1]

    def _log_curve(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self._u, self._log_c)

    @property
    def range_um(self) -> tuple[float, float]:
        """Offsets the table can tell apart."""
        return float(self.e_um[0]), float(self.e_um[-1])

    def estimate(self, metric_low: float, metric_high: float) -> PairEstimate:
        """Offset of focus from the pair's centre, from the metric of the lower shot (at
        centre - spacing) and of the upper one."""
        if not (metric_low > 0 and metric_high > 0):
            return PairEstimate(0.0, False, math.nan)
        r = math.log(metric_low) - math.log(metric_high)
        if not math.isfinite(r):
            return PairEstimate(0.0, False, r)
        if r >= self.r[0]:
            return PairEstimate(float(self.e_um[0]), r <= self.r[0] + 1e-12, r)
        if r <= self.r[-1]:
            return PairEstimate(float(self.e_um[-1]), r >= self.r[-1] - 1e-12, r)
        # r falls with e: interpolate on the reversed arrays
        e = float(np.interp(r, self.r[::-1], self.e_um[::-1]))
        return PairEstimate(e, True, r)
