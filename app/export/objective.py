"""The objective's magnification and NA for a slide's metadata: `SlideInfo`'s own numbers, or
else read from its objective name ("20x/0.75", "40X / 0.95 oil")."""

from __future__ import annotations

import re

from slidescan.app.stitch.source import SlideInfo

_NAME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX]\s*(?:/\s*(\d*\.\d+|\d+))?")


def magnification(info: SlideInfo) -> float | None:
    if info.magnification is not None:
        return float(info.magnification)
    m = _NAME.match(info.objective or "")
    return float(m.group(1)) if m else None


def numerical_aperture(info: SlideInfo) -> float | None:
    if info.na is not None:
        return float(info.na)
    m = _NAME.match(info.objective or "")
    return float(m.group(2)) if m and m.group(2) else None
