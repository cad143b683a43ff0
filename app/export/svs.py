"""Aperio-SVS-compatible export: a TIFF that OpenSlide's and Bio-Formats' Aperio readers open.

Layout, in the order OpenSlide's Aperio reader expects (tiled directories are levels, the
untiled directory 1 is the thumbnail, later untiled ones are named by their description's
second line's first word):

    IFD 0        level 0, tiled, NewSubfileType 0
    IFD 1        thumbnail, stripped, longest side <= 1024 px, NewSubfileType 0
    IFD 2..n     levels 1..n-1, tiled, NewSubfileType 0, each half the last
    IFD n+1      label, stripped, NewSubfileType 1 (when there is one)
    IFD n+2      macro (the scan's overview), stripped, NewSubfileType 9

NewSubfileType 0 is written out, not left to its default: Bio-Formats reads a missing tag as
-1 and takes every such directory after the first for the label or the macro, so the pyramid
fell apart into three unrelated images.

Every IFD's ImageDescription starts "Aperio Image Library" (OpenSlide's and Bio-Formats'
test for the format). Level 0's second line carries the `|key = value` pairs: `MPP` (um per
pixel; OpenSlide's `openslide.mpp-x/y`) and `AppMag` (`openslide.objective-power`).
The slide must be 8-bit; a grey slide is written as RGB.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

from slidescan.app import __version__
from slidescan.app.export.codec import Compression
from slidescan.app.export.errors import ExportError
from slidescan.app.export.objective import magnification, numerical_aperture
from slidescan.app.export.pyramid import StreamingPyramid
from slidescan.app.export.tiffwrite import ascii_text, level_args, needs_bigtiff
from slidescan.app.stitch.source import SlideInfo

HEADER = f"Aperio Image Library (compatible; slidescan {__version__})"
THUMBNAIL_MAX = 1024
#: NewSubfileType of Aperio's label and macro images.
LABEL_SUBFILETYPE, MACRO_SUBFILETYPE = 1, 9


def check_svs(dtype: np.dtype) -> None:
    if np.dtype(dtype) != np.uint8:
        raise ExportError(
            f"SVS holds 8-bit RGB images and this slide is {np.dtype(dtype)}: export OME-TIFF"
        )


def aperio_description(
    pyramid: StreamingPyramid,
    info: SlideInfo,
    compression: Compression,
    when: _dt.datetime,
) -> str:
    """Level 0's ImageDescription."""
    lv = pyramid.levels[0]
    t = pyramid.tile
    codec = {"jpeg": f"JPEG/YCC Q={compression.quality}", "none": "RAW"}.get(
        compression.name, compression.name.upper()
    )
    pairs: list[tuple[str, Any]] = []
    mag, na = magnification(info), numerical_aperture(info)
    if mag is not None:
        pairs.append(("AppMag", _num(mag)))
    pairs += [
        ("MPP", f"{info.pixel_size_um:.6f}"),
        ("Filename", info.name or "slide"),
        ("Date", when.strftime("%m/%d/%y")),
        ("Time", when.strftime("%H:%M:%S")),
        ("Time Zone", "GMT+0000"),
        ("ScannerType", "slidescan"),
    ]
    if info.objective:
        pairs.append(("Objective", info.objective))
    if na is not None:
        pairs.append(("NA", _num(na)))
    pairs += [("OriginX um", _num(info.origin_um[0])), ("OriginY um", _num(info.origin_um[1]))]
    head = f"{HEADER}\r\n{lv.width}x{lv.height} [0,0 {lv.width}x{lv.height}] ({t}x{t}) {codec}"
    body = "|".join(f"{k} = {str(v).replace('|', '/')}" for k, v in pairs)
    return ascii_text(f"{head}|{body}")


def write_svs(
    path: Path,
    pyramid: StreamingPyramid,
    info: SlideInfo,
    compression: Compression,
    macro: np.ndarray | None = None,
    label: np.ndarray | None = None,
) -> None:
    """Write `pyramid` (every level consumed, in order), a thumbnail made from its smallest
    level, and the `label` and `macro` images (RGB uint8) to `path`."""
    check_svs(pyramid.dtype)
    lv0 = pyramid.levels[0]
    size0 = f"{lv0.width}x{lv0.height}"
    when = _dt.datetime.now(_dt.UTC)
    stripped = compression.tiff_args(3)
    with tifffile.TiffWriter(path, bigtiff=needs_bigtiff(pyramid)) as tw:
        tw.write(
            _rgb(pyramid, 0),
            description=aperio_description(pyramid, info, compression, when),
            subfiletype=0,
            **level_args(pyramid, 0, compression, info.pixel_size_um, channels=3),
        )
        thumb = _as_rgb(downsample_to(pyramid.image(len(pyramid.levels) - 1), THUMBNAIL_MAX))
        tw.write(
            thumb,
            description=f"{HEADER}\r\n{size0} -> {thumb.shape[1]}x{thumb.shape[0]} - ",
            subfiletype=0,
            metadata=None,
            **stripped,
        )
        for k in range(1, len(pyramid.levels)):
            lv = pyramid.levels[k]
            tw.write(
                _rgb(pyramid, k),
                description=f"{HEADER}\r\n{size0} -> {lv.width}x{lv.height} - ",
                subfiletype=0,
                **level_args(pyramid, k, compression, info.pixel_size_um, channels=3),
            )
        for name, image, kind in (
            ("label", label, LABEL_SUBFILETYPE),
            ("macro", macro, MACRO_SUBFILETYPE),
        ):
            if image is None:
                continue
            image = _as_rgb(np.asarray(image))
            tw.write(
                image,
                subfiletype=kind,
                description=f"{HEADER}\r\n{name} {image.shape[1]}x{image.shape[0]}",
                metadata=None,
                **stripped,
            )


def _rgb(pyramid: StreamingPyramid, k: int) -> Iterator[np.ndarray]:
    tiles = pyramid.tiles(k)
    if pyramid.channels == 3:
        return tiles
    return (np.repeat(t, 3, axis=2) for t in tiles)


def downsample_to(image: np.ndarray, longest: int) -> np.ndarray:
    """`image` shrunk (area mean) so that its longest side is at most `longest`."""
    h, w = image.shape[:2]
    scale = longest / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return out if out.ndim == image.ndim else out[:, :, None]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ExportError(f"an SVS associated image is RGB uint8, not {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.shape[2] != 3:
        raise ExportError(f"an SVS associated image is RGB, not {image.shape[2]} channels")
    return np.ascontiguousarray(image)


def _num(value: float) -> str:
    return f"{float(value):g}"
