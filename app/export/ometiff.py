"""OME-TIFF export: the slide as a tiled pyramid, reduced levels in SubIFDs, OME-XML in the
first IFD's ImageDescription.

Layout (what Bio-Formats, QuPath and tifffile read as one pyramidal image):

    IFD 0       level 0, tiled; ImageDescription = OME-XML (`omexml.ome_xml`); SubIFDs ->
      SubIFD k  level k (k = 1..n-1), tiled, NewSubfileType 1 (reduced), each half the last
    IFD 1       the overview ("macro" Image in the OME-XML), when the scan had one

Every level carries its pixel size as X/YResolution in pixels per centimetre as well.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import tifffile

from slidescan.app import __version__
from slidescan.app.export.codec import Compression
from slidescan.app.export.omexml import OmeImage, ome_xml
from slidescan.app.export.pyramid import StreamingPyramid
from slidescan.app.export.tiffwrite import (
    level_args,
    level_tiles,
    needs_bigtiff,
    resolution_args,
)
from slidescan.app.records import Overview
from slidescan.app.stitch.source import SlideInfo

CREATOR = f"slidescan {__version__}"


def write_ome_tiff(
    path: Path,
    pyramid: StreamingPyramid,
    info: SlideInfo,
    compression: Compression,
    overview: Overview | None = None,
) -> None:
    """Write `pyramid` (every level consumed, in order) and `overview` to `path`."""
    lv0 = pyramid.levels[0]
    images = [
        OmeImage(
            name=info.name or "slide",
            height=lv0.height,
            width=lv0.width,
            channels=pyramid.channels,
            dtype=pyramid.dtype,
            ifd=0,
            pixel_size_um=info.pixel_size_um,
            position_um=info.origin_um,
        )
    ]
    if overview is not None:
        oh, ow = overview.image.shape[:2]
        images.append(
            OmeImage(
                name="macro",
                height=oh,
                width=ow,
                channels=3,
                dtype=overview.image.dtype,
                ifd=1,
                pixel_size_um=overview.pixel_size_um,
                position_um=(overview.x0_um, overview.y0_um),
            )
        )
    xml = ome_xml(images, info, CREATOR, acquired=_dt.datetime.now(_dt.UTC))
    n = len(pyramid.levels)
    with tifffile.TiffWriter(path, bigtiff=needs_bigtiff(pyramid)) as tw:
        tw.write(
            level_tiles(pyramid, 0),
            subifds=n - 1,
            description=xml.encode("utf-8"),
            software=CREATOR,
            **level_args(pyramid, 0, compression, info.pixel_size_um),
        )
        for k in range(1, n):
            tw.write(
                level_tiles(pyramid, k),
                subfiletype=1,
                software=CREATOR,
                **level_args(pyramid, k, compression, info.pixel_size_um),
            )
        if overview is not None:
            tw.write(
                overview.image,
                software=CREATOR,
                metadata=None,
                **resolution_args(overview.pixel_size_um),
                **compression.tiff_args(3),
            )
