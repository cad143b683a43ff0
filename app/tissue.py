"""Tissue detection: is there anything on this field worth focusing on and storing?

The decision is made from one quick frame taken at the predicted z, before any focusing, so an
empty-glass tile costs one exposure. The frame is block-averaged to about 64 px on its long side
(cheap, and it suppresses camera noise), then a block counts as tissue when either

- its optical density OD = -log10(I / white) (mean over channels) exceeds `od_threshold`, or
- its HSV saturation (max - min) / max exceeds `saturation_threshold` (colour images only).

`white` is the full scale of the image's dtype: brightfield scanners expose (or flat-field) so
that bare glass sits near full scale, giving glass an OD of a few hundredths. Stained tissue is
both darker (H&E and IHC fields have mean OD of 0.2-0.6) and coloured; the saturation term keeps
pale but stained tissue, the OD term keeps unstained or grey-camera specimens. Both survive
defocus: blur moves light around within the field but keeps the block means nearly unchanged.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Block-averaged look size (long side, px).
LOOK_SIZE = 64


def _full_scale(image: np.ndarray) -> float:
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    return 1.0


def block_mean(
    image: np.ndarray, target: int = LOOK_SIZE, samples_per_block: int | None = None
) -> np.ndarray:
    """Average over square k x k blocks so the long side is about `target`; (h, w, C) float32.

    cv2's INTER_AREA resize at an integer factor is exactly the block mean, and fast. With
    `samples_per_block` = m, each block is averaged over an m x m sub-grid of its pixels
    (every (k / m)-th row and column) instead of all k x k: enough for a thumbnail, and 1/16
    of the memory traffic for a 2048-pixel frame.
    """
    img = image if image.ndim == 3 else image[:, :, None]
    h, w = img.shape[:2]
    k = max(1, math.ceil(max(h, w) / target))
    hh, ww = max(1, h // k), max(1, w // k)
    step = 1
    if samples_per_block is not None:
        step = max(d for d in range(1, max(1, k // samples_per_block) + 1) if k % d == 0)
    src = np.ascontiguousarray(img[: hh * k : step, : ww * k : step])
    if src.dtype not in (np.uint8, np.uint16, np.float32):
        src = src.astype(np.float32)
    out = src if k == step else cv2.resize(src, (ww, hh), interpolation=cv2.INTER_AREA)
    out = np.asarray(out, np.float32)
    return out.reshape(hh, ww, img.shape[2])


def tissue_fraction(
    image: np.ndarray, od_threshold: float = 0.15, saturation_threshold: float = 0.08
) -> float:
    """Fraction of the field (0..1) that looks like tissue."""
    blocks = block_mean(image) / _full_scale(image)
    blocks = np.clip(blocks, 1e-4, 1.0)
    od = -np.log10(blocks).mean(axis=2)
    tissue = od > od_threshold
    if blocks.shape[2] >= 3:
        mx = blocks.max(axis=2)
        mn = blocks.min(axis=2)
        tissue |= (mx - mn) / mx > saturation_threshold
    return float(tissue.mean())


def thumbnail(image: np.ndarray, size: int = LOOK_SIZE) -> np.ndarray:
    """A small uint8 image (long side about `size`) for tile maps and fast review."""
    small = block_mean(image, size, samples_per_block=8) / _full_scale(image) * 255.0
    out = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return out if image.ndim == 3 else out[:, :, 0]
