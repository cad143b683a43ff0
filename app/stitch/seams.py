"""How visible the tile boundaries of a mosaic are: gradient energy across them against inside.

The boundaries are where a plain mosaic (tiles pasted in order, each covering what came
before) changes from one tile to the next. At every boundary pixel pair the squared
difference across the boundary is compared with the squared differences of the pixel pairs
in the same direction a few pixels to either side (`offsets`), inside one tile: the same
tissue, the same part of the field, no boundary. A ratio of 1 means the boundaries look like
the tissue around them; a step in brightness or colour, or a doubled structure, raises it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

OFFSETS = (3, 4, 5, 6, 7, 8)


def paste_labels(xy: np.ndarray, tile_shape: tuple[int, ...], y0: int, x0: int, h: int, w: int):
    """(h, w) int array: which tile (index into `xy`) a plain in-order paste shows at each
    pixel of the region (pixel centres; -1 where none)."""
    th, tw = tile_shape[:2]
    labels = np.full((h, w), -1, np.int64)
    cy = np.arange(y0, y0 + h) + 0.5
    cx = np.arange(x0, x0 + w) + 0.5
    for t, (x, y) in enumerate(np.asarray(xy, np.float64)):
        rows = (cy > y) & (cy < y + th)
        cols = (cx > x) & (cx < x + tw)
        if rows.any() and cols.any():
            labels[np.ix_(rows, cols)] = t
    return labels


def _along(grey: np.ndarray, labels: np.ndarray, offsets: tuple[int, ...]):
    """Across-boundary squared differences between horizontal neighbours, and the mean of
    the inside ones beside each (boundary pairs with no inside pair beside them are left
    out)."""
    diff = np.diff(grey, axis=1) ** 2  # pair (x, x + 1)
    same = labels[:, 1:] == labels[:, :-1]
    valid = (labels[:, 1:] >= 0) & (labels[:, :-1] >= 0)
    inside_ok = valid & same
    ys, xs = np.nonzero(valid & ~same)
    w = diff.shape[1]
    total = np.zeros(ys.size)
    count = np.zeros(ys.size)
    for d in (s * sign for s in offsets for sign in (-1, 1)):
        x = xs + d
        ok = (x >= 0) & (x < w)
        ok[ok] &= inside_ok[ys[ok], x[ok]]
        total[ok] += diff[ys[ok], x[ok]]
        count[ok] += 1
    keep = count > 0
    return diff[ys[keep], xs[keep]], total[keep] / count[keep]


def seam_visibility(
    image: np.ndarray,
    labels: np.ndarray,
    offsets: tuple[int, ...] = OFFSETS,
    smooth: float = 0.0,
) -> dict[str, float]:
    """Mean squared neighbour difference across tile boundaries, over that of the pairs
    `offsets` pixels beside them inside one tile, on the grey (mean of channels) image
    (optionally smoothed by a Gaussian of `smooth` pixels); uncovered pixels are left out."""
    grey = np.asarray(image, np.float64)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    if smooth > 0:
        grey = gaussian_filter(grey, smooth)
    a1, i1 = _along(grey, labels, offsets)
    a2, i2 = _along(grey.T, labels.T, offsets)
    across, inside = np.concatenate([a1, a2]), np.concatenate([i1, i2])
    if across.size == 0:
        return {"ratio": float("nan"), "across": float("nan"), "inside": float("nan"), "n": 0}
    a, i = float(np.mean(across)), float(np.mean(inside))
    return {"ratio": a / i if i > 0 else float("nan"), "across": a, "inside": i, "n": len(across)}
