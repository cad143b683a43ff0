"""The stitched slide as export and the viewer see it: a level-0 image read region by region.

`MosaicSource` is the contract between stitching (which makes one from a scan file and its
placement) and its readers (pyramid export, the slide viewer, tests). Reading a region composes
only the tiles that overlap it, so a 46k x 46k slide never sits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SlideInfo:
    """What viewers want to know about a slide besides its pixels."""

    pixel_size_um: float
    objective: str = ""  # "20x/0.75"
    magnification: float | None = None
    na: float | None = None
    #: stage (x, y) in um of the mosaic's top-left corner (pixel (0, 0)'s corner)
    origin_um: tuple[float, float] = (0.0, 0.0)
    name: str = ""


@runtime_checkable
class MosaicSource(Protocol):
    """A level-0 slide image, (H, W, C) or (H, W), read by region."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def info(self) -> SlideInfo: ...

    def read(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        """The region [y0, y0 + height) x [x0, x0 + width) of level 0, clipped to nothing:
        parts outside the mosaic (or between tiles) are background (bare glass, full
        scale)."""
        ...
