"""OME-Zarr export (NGFF 0.4, Zarr format 2): the pyramid as a folder of chunk files, written
chunk by chunk with no Zarr library (the format is JSON and one file per chunk).

    SLIDE.ome.zarr/
      .zgroup               {"zarr_format": 2}
      .zattrs               multiscales (version 0.4): axes c, y, x (y and x in micrometer),
                            one dataset per level with its scale (1, p 2^k, p 2^k) and the
                            stage position of the corner as a translation; omero: channels
      0/ 1/ ... n-1/        level k: .zarray ((C, H_k, W_k), chunks (C, T, T), "/" separated),
        0/i/j               the chunk at tile row i, column j

Chunks are compressed with zstd or zlib (numcodecs ids "zstd" and "zlib", which every Zarr
reader has) or not at all; JPEG is not a portable Zarr codec, so it is refused here.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app import __version__
from slidescan.app.export.codec import Compression
from slidescan.app.export.errors import ExportError
from slidescan.app.export.objective import magnification, numerical_aperture
from slidescan.app.export.pyramid import StreamingPyramid, background
from slidescan.app.stitch.source import SlideInfo

NGFF_VERSION = "0.4"
_ZSTD_LEVEL = 3
_ZLIB_LEVEL = 6
_RGB = (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))


def check_zarr(compression: Compression) -> None:
    if compression.name == "jpeg":
        raise ExportError("OME-Zarr is written lossless: use --compression zstd, deflate or none")


def write_ome_zarr(
    path: Path, pyramid: StreamingPyramid, info: SlideInfo, compression: Compression
) -> None:
    """Write `pyramid` (every level consumed, in order) as an OME-Zarr folder at `path`."""
    check_zarr(compression)
    encode, compressor = _codec(compression)
    path.mkdir()
    _json(path / ".zgroup", {"zarr_format": 2})
    _json(path / ".zattrs", multiscales(pyramid, info))
    c = pyramid.channels
    t = pyramid.tile
    for lv in pyramid.levels:
        folder = path / str(lv.index)
        folder.mkdir()
        _json(
            folder / ".zarray",
            {
                "zarr_format": 2,
                "shape": [c, lv.height, lv.width],
                "chunks": [c, t, t],
                "dtype": pyramid.dtype.str,
                "compressor": compressor,
                "fill_value": _fill(pyramid.dtype),
                "order": "C",
                "filters": None,
                "dimension_separator": "/",
            },
        )
        tiles = pyramid.tiles(lv.index)
        for i in range(lv.tiles_y):
            row = folder / "0" / str(i)
            row.mkdir(parents=True)
            for j in range(lv.tiles_x):
                chunk = np.ascontiguousarray(next(tiles).transpose(2, 0, 1))
                (row / str(j)).write_bytes(encode(chunk.tobytes()))


def multiscales(pyramid: StreamingPyramid, info: SlideInfo) -> dict[str, Any]:
    """The group's NGFF 0.4 attributes."""
    px = float(info.pixel_size_um)
    x0, y0 = (float(v) for v in info.origin_um)
    datasets = [
        {
            "path": str(lv.index),
            "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, px * lv.downsample, px * lv.downsample]},
                {"type": "translation", "translation": [0.0, y0, x0]},
            ],
        }
        for lv in pyramid.levels
    ]
    top = float(np.iinfo(pyramid.dtype).max) if pyramid.dtype.kind == "u" else 1.0
    names = _RGB if pyramid.channels == 3 else (("grey", "FFFFFF"),)
    return {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": info.name or "slide",
                "axes": [
                    {"name": "c", "type": "channel"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": datasets,
                "type": "mean",
                "metadata": {
                    "description": "each level the 2 x 2 area mean of the one before "
                    "(exact mean of level 0, rounded half up)",
                    "software": f"slidescan {__version__}",
                    "objective": info.objective,
                    "magnification": magnification(info),
                    "na": numerical_aperture(info),
                },
            }
        ],
        "omero": {
            "name": info.name or "slide",
            "rdefs": {"model": "color" if pyramid.channels == 3 else "greyscale"},
            "channels": [
                {
                    "label": label,
                    "color": color,
                    "active": True,
                    "window": {"start": 0.0, "end": top, "min": 0.0, "max": top},
                }
                for label, color in names
            ],
        },
    }


def _codec(compression: Compression) -> tuple[Any, dict[str, Any] | None]:
    if compression.name == "zstd":
        import imagecodecs

        return (
            lambda data: imagecodecs.zstd_encode(data, level=_ZSTD_LEVEL),
            {"id": "zstd", "level": _ZSTD_LEVEL},
        )
    if compression.name == "deflate":
        return (lambda data: zlib.compress(data, _ZLIB_LEVEL), {"id": "zlib", "level": _ZLIB_LEVEL})
    return (lambda data: data), None


def _fill(dtype: np.dtype) -> float | int:
    value = background(dtype)
    return int(value) if np.dtype(dtype).kind == "u" else value


def _json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
