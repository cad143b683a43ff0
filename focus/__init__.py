"""Focus engine: metrics, searches, focus maps and the learned modes.

It knows nothing of concrete devices or Qt: every method talks to the small `FocusDevice`
protocol in `slidescan.focus.protocol`, which hardware objects satisfy structurally.
"""

from slidescan.focus.protocol import (
    FocusCurve,
    FocusDevice,
    FocusError,
    FocusHint,
    FocusMethod,
    FocusResult,
    OpticsLike,
    ZApproach,
    depth_of_field_um,
)

__all__ = [
    "FocusCurve",
    "FocusDevice",
    "FocusError",
    "FocusHint",
    "FocusMethod",
    "FocusResult",
    "OpticsLike",
    "ZApproach",
    "depth_of_field_um",
]
