"""A one-chip colour camera's colour filter array: each pixel sees one of R, G, B through its
filter (a Bayer mosaic), and the frame is interpolated back to RGB (bilinear demosaicing).

Why the simulator has it: most colour cameras on microscopes (Basler ace colour, most
low-cost scanners' sensors) are one-chip Bayer sensors. Their noise is drawn per mosaic pixel
and then spread over neighbours by the demosaicing, so it is spatially correlated, and the
interpolation softens the finest detail. A network trained only on frames with independent
noise in every channel of every pixel reads that texture wrongly.

Bilinear demosaicing is done as a normalised convolution (sum of the neighbours that carry the
colour, weighted, divided by the sum of their weights), which is the textbook bilinear
interpolation inside the frame and needs no special case at its edges. A real camera's or
driver's demosaicing (OpenCV's in `hardware/drivers/basler.py`) differs only at the borders
and in rounding.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

#: Filter layouts, read row by row over the 2 x 2 cell at the sensor's top-left corner.
BayerPattern = Literal["RGGB", "GRBG", "GBRG", "BGGR"]
PATTERNS: tuple[BayerPattern, ...] = ("RGGB", "GRBG", "GBRG", "BGGR")

_CHANNEL = {"R": 0, "G": 1, "B": 2}
_CELL = ((0, 0), (0, 1), (1, 0), (1, 1))
#: Bilinear weights: green sits on a quincunx, red and blue on a square lattice of pitch 2.
_KERNEL_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32)
_KERNEL_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32)


def channel_map(pattern: BayerPattern, height: int, width: int) -> np.ndarray:
    """(height, width) uint8: the colour channel (0 R, 1 G, 2 B) each pixel sees."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; one of {', '.join(PATTERNS)}")
    out = np.empty((height, width), np.uint8)
    for (dy, dx), colour in zip(_CELL, pattern, strict=True):
        out[dy::2, dx::2] = _CHANNEL[colour]
    return out


def mosaic(rgb: np.ndarray, pattern: BayerPattern) -> np.ndarray:
    """What the sensor's pixels see of an (H, W, 3) image: (H, W), one channel per pixel."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"a Bayer mosaic needs an (H, W, 3) image, got shape {rgb.shape}")
    cmap = channel_map(pattern, rgb.shape[0], rgb.shape[1])
    return np.take_along_axis(rgb, cmap[:, :, None].astype(np.intp), axis=2)[:, :, 0]


def demosaic_bilinear(raw: np.ndarray, pattern: BayerPattern) -> np.ndarray:
    """(H, W) mosaic -> (H, W, 3) float32 RGB by bilinear interpolation; the measured value of
    each pixel's own colour is kept as it is."""
    raw = np.asarray(raw, np.float32)
    cmap = channel_map(pattern, raw.shape[0], raw.shape[1])
    out = np.empty((*raw.shape, 3), np.float32)
    for c in range(3):
        mask = (cmap == c).astype(np.float32)
        kernel = _KERNEL_G if c == 1 else _KERNEL_RB
        num = cv2.filter2D(raw * mask, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        den = cv2.filter2D(mask, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        out[:, :, c] = np.where(mask > 0, raw, num / den)
    return out
