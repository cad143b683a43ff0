"""What only a simulator knows, as one small declared interface.

A simulated microscope knows the slide: where the tissue is, where every field is in focus, and
what the whole slide looks like. The scan engine records the truth beside each tile (so focus
and stitching errors can be measured), the GUI draws the slide outline and its overview, and
the CLI centres a default scan on the tissue. They ask `Microscope.truth`, which is None on real
hardware, instead of probing a microscope for simulator attributes.
"""

from __future__ import annotations

import abc

import numpy as np


class SlideTruth(abc.ABC):
    """The simulated slide's ground truth, in stage coordinates (um)."""

    @property
    @abc.abstractmethod
    def slide_bounds_um(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the slide's tissue area."""

    @abc.abstractmethod
    def true_focus_um(self, x_um: float, y_um: float) -> float:
        """Drive z at which the field centred at (x, y) is in focus."""

    @abc.abstractmethod
    def overview(self, pixel_size_um: float = 25.0, margin_um: float = 500.0) -> np.ndarray:
        """A macro RGB image (uint8) of the tissue area plus a margin; row 0 is the smallest
        y, pixel (i, j) sits at x0 - margin + (j + 1/2) * pixel."""
