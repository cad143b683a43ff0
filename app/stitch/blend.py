"""Feathering: how much each tile counts at a mosaic pixel where tiles overlap.

A tile's weight at a point is the product of its distances (pixels) to the nearest left/right
edge and to the nearest top/bottom edge: zero on its border, rising linearly into it. Where
tiles overlap, each pixel is the weighted mean of the tiles covering it (the weights,
normalised, sum to one), so an illumination step between two tiles turns into a ramp across
the overlap instead of a seam. The product (rather than the smaller of the two distances)
keeps the weights smooth at the corners where four tiles meet.

`HARD` is the "before" of the seam figure: tiles pasted in order, each covering what came
before it, as a plain mosaic would be.
"""

from __future__ import annotations

import numpy as np

FEATHER, HARD = "feather", "hard"


def edge_distance(centres: np.ndarray, size: float) -> np.ndarray:
    """Distance of points (tile-local coordinates, 0 at the tile's first edge and `size` at
    its last) to the nearer edge; negative outside the tile."""
    return np.minimum(centres, size - centres)


def feather_weights(
    shape: tuple[int, int],
    offset: tuple[float, float] = (0.0, 0.0),
    extent: tuple[int, int] | None = None,
) -> np.ndarray:
    """Weights (rows, cols) of a tile of `shape` (H, W) at mosaic pixels whose centres sit at
    tile-local coordinates k + 0.5 - offset (k = 0, 1, ...; offset (fy, fx) is the tile's
    fractional placement); `extent` (rows, cols) is how many pixels to give (default the
    tile's shape). Zero outside the tile."""
    h, w = shape
    rows, cols = extent or shape
    fy, fx = offset
    wy = np.maximum(edge_distance(np.arange(rows) + 0.5 - fy, h), 0.0)
    wx = np.maximum(edge_distance(np.arange(cols) + 0.5 - fx, w), 0.0)
    return (wy[:, None] * wx[None, :]).astype(np.float32)


def normalise(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Weights of the tiles covering the same pixels, scaled to sum to one where any is
    positive (zero elsewhere)."""
    total = np.sum(weights, axis=0)
    safe = np.where(total > 0, total, 1.0)
    return [np.where(total > 0, w / safe, 0.0) for w in weights]
