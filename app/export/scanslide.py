"""A scan file as an exportable slide: its stitched mosaic (a `MosaicSource`) and overview.

An unstitched file is refused with the command that stitches it, rather than stitched from
the stage positions on the fly: stage positions are off by the stage's repeatability and play
(micrometres, so several pixels at 0.3 um/px), and a pyramid made from them shows doubled
nuclei at every seam, the very thing a pathologist must not be shown as the scan. `slidescan
stitch` registers the overlaps once, stores the placement in the file (its own fall-back to
stage positions, where overlaps are glass, included), and export and viewer reuse it.

The mosaic gives each tile's image as the scan file holds it: for a tile whose focus method
made its image (record `image_source == "made"`, e.g. two shots fused) that is the made
image, never one of its raw shots; nothing here reads the shots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slidescan.app.export.errors import ExportError
from slidescan.app.records import Overview
from slidescan.app.stitch.source import MosaicSource

MosaicFactory = Callable[[Any], MosaicSource]


@dataclass
class ScanSlide:
    """What `export_slide` needs from a scan file."""

    source: MosaicSource
    overview: Overview | None
    path: Path


@contextmanager
def open_scan_slide(path: str | Path, mosaic: MosaicFactory | None = None) -> Iterator[ScanSlide]:
    """Open `path` and compose its stitched mosaic with `mosaic(reader)` (`default_mosaic`
    unless given). One-line `ExportError`s for a file that is not a
    scan, is damaged, or was never stitched."""
    from slidescan.app.store import ScanFileError, ScanReader

    path = Path(path)
    try:
        reader = ScanReader(path)
    except ScanFileError as exc:
        raise ExportError(str(exc)) from None
    try:
        if reader.damage is not None:
            raise ExportError(
                f"{path} is damaged ({reader.damage}): `slidescan scan --resume {path}` "
                "salvages its tiles into a new file"
            )
        if reader.n_tiles == 0:
            raise ExportError(f"{path} holds no tiles")
        if reader.stitch_generation == 0:
            raise ExportError(
                f"{path} is not stitched yet: run `slidescan stitch {path}` first, then export"
            )
        source = (mosaic or default_mosaic)(reader)
        yield ScanSlide(source=source, overview=reader.overview(), path=path)
    finally:
        reader.close()


def default_mosaic(reader: Any) -> MosaicSource:
    """The stitched mosaic of an open `ScanReader` (app/stitch's `ScanMosaic`: the latest
    stitching run's placement, flat-field, white balance and feathered overlaps)."""
    from slidescan.app.stitch.mosaic import ScanMosaic

    return ScanMosaic(reader)
