"""What the two TIFF exports share: tifffile arguments for a pyramid level's tiles, and when
to write BigTIFF."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from slidescan.app.export.codec import Compression
from slidescan.app.export.pyramid import StreamingPyramid

#: A classic TIFF addresses 4 GiB; compressed tiles can outgrow their raw size a little (JPEG
#: of noise at high quality), so anything whose raw pixels pass 2 GiB is written as BigTIFF.
BIGTIFF_RAW_BYTES = 2 * 1024**3
#: Tiles tifffile encodes at once per worker thread: small, so that memory stays a few tiles.
_TILES_IN_FLIGHT = 4


def raw_bytes(pyramid: StreamingPyramid) -> int:
    item = pyramid.dtype.itemsize * pyramid.channels
    return sum(lv.height * lv.width * item for lv in pyramid.levels)


def needs_bigtiff(pyramid: StreamingPyramid) -> bool:
    return raw_bytes(pyramid) > BIGTIFF_RAW_BYTES


def workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def level_args(
    pyramid: StreamingPyramid,
    k: int,
    compression: Compression,
    pixel_size_um: float,
    channels: int | None = None,
) -> dict[str, Any]:
    """tifffile `write` arguments for level k (shape, tiling, compression, resolution), its
    tiles having `channels` samples (the pyramid's by default)."""
    lv = pyramid.levels[k]
    channels = pyramid.channels if channels is None else channels
    shape = (lv.height, lv.width, channels) if channels > 1 else (lv.height, lv.width)
    tile_bytes = pyramid.tile * pyramid.tile * channels * pyramid.dtype.itemsize
    n = workers()
    return {
        "shape": shape,
        "dtype": pyramid.dtype,
        "tile": (pyramid.tile, pyramid.tile),
        "maxworkers": n,
        "buffersize": tile_bytes * _TILES_IN_FLIGHT * n,
        "metadata": None,
        **resolution_args(pixel_size_um * lv.downsample),
        **compression.tiff_args(channels),
    }


def resolution_args(pixel_size_um: float) -> dict[str, Any]:
    """Pixels per centimetre, which TIFF readers (QuPath too) turn into a pixel size."""
    per_cm = 1e4 / pixel_size_um
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def level_tiles(pyramid: StreamingPyramid, k: int) -> Iterator[np.ndarray]:
    """Level k's tiles shaped as tifffile expects them ((T, T) for a grey slide)."""
    if pyramid.channels > 1:
        return pyramid.tiles(k)
    return (t[:, :, 0] for t in pyramid.tiles(k))


def ascii_text(text: str) -> str:
    """TIFF strings are 7-bit ASCII: anything else becomes '?'."""
    return text.encode("ascii", "replace").decode("ascii")
