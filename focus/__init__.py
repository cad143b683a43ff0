"""Focus engine: metrics, searches, focus maps and the learned modes.

It knows nothing of concrete devices or Qt: every method talks to the small `FocusDevice`
protocol in `slidescan.focus.protocol` through the one `FocusDrive` (`slidescan.focus.drive`)
that commands the focus drive; hardware objects satisfy the protocol structurally.
"""

from slidescan.focus.protocol import (
    DeferredImage,
    Fallback,
    FocusCurve,
    FocusDevice,
    FocusError,
    FocusHint,
    FocusMethod,
    FocusParams,
    FocusResult,
    ImageMaker,
    MadeImage,
    OpticsLike,
    Shot,
    SlideCalibrated,
    depth_of_field_um,
)

__all__ = [
    "DeferredImage",
    "Fallback",
    "FocusCurve",
    "FocusDevice",
    "FocusError",
    "FocusHint",
    "FocusMethod",
    "FocusParams",
    "FocusResult",
    "ImageMaker",
    "MadeImage",
    "OpticsLike",
    "Shot",
    "SlideCalibrated",
    "depth_of_field_um",
]
