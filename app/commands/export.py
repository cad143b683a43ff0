"""`slidescan export SCAN.h5 --out FILE`: the stitched slide as a pyramid file that QuPath,
OpenSlide and Bio-Formats open (app/export/slide.py does the work)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from slidescan.app.cli import CliError, print_json

_SUFFIX_HELP = ".ome.tif/.ome.tiff -> ome-tiff, .svs -> svs, .ome.zarr -> ome-zarr"


def register(subparsers: argparse._SubParsersAction) -> None:
    from slidescan.app.export.codec import COMPRESSIONS, DEFAULT_QUALITY
    from slidescan.app.export.slide import FORMATS

    p = subparsers.add_parser(
        "export",
        help="export the stitched slide as a pyramid (OME-TIFF, Aperio SVS, OME-Zarr)",
        description=(
            "Write a stitched scan as a tiled pyramid file: OME-TIFF (levels in SubIFDs, "
            "OME-XML with pixel size and objective), Aperio-compatible SVS (OpenSlide, QuPath) "
            "or OME-Zarr (NGFF 0.4). Memory stays flat however large the slide; the file "
            "appears only when complete. Run `slidescan stitch` on the scan first."
        ),
    )
    p.add_argument("file", help="scan file (.h5), stitched")
    p.add_argument("--out", required=True, help=f"file to write ({_SUFFIX_HELP})")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from --out)")
    p.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        help="tile compression (default: jpeg for the TIFFs, zstd for OME-Zarr; zstd, "
        "deflate and none are lossless)",
    )
    p.add_argument(
        "--quality",
        type=int,
        default=DEFAULT_QUALITY,
        help=f"JPEG quality 1-100 (default {DEFAULT_QUALITY})",
    )
    p.add_argument("--tile", type=int, default=512, help="tile size in pixels (default 512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slidescan.app.export.errors import ExportError
    from slidescan.app.export.scanslide import open_scan_slide
    from slidescan.app.export.slide import export_slide, format_for

    try:
        fmt = format_for(args.out, args.format)
        with open_scan_slide(args.file) as slide, _ProgressBar(not args.quiet) as bar:
            result = export_slide(
                slide.source,
                args.out,
                fmt=fmt,
                compression=args.compression,
                quality=args.quality,
                overview=slide.overview,
                overwrite=args.overwrite,
                tile=args.tile,
                progress=bar.update,
            )
    except ExportError as exc:
        raise CliError(f"export: {exc}", code=1) from None
    except ValueError as exc:  # a bad --tile and the like
        raise CliError(f"export: {exc}") from None
    if args.json:
        print_json(result.as_dict())
        return 0
    n = len(result.levels)
    levels = ", ".join(f"{w}x{h}" for h, w in result.levels)
    extra = f"; {', '.join(result.associated)}" if result.associated else ""
    print(
        f"wrote {result.path}: {result.format}, {result.compression}, "
        f"{n} level{'s' if n != 1 else ''} ({levels}){extra}, "
        f"{result.file_bytes / 1e6:.1f} MB in {result.seconds:.1f} s"
    )
    return 0


class _ProgressBar:
    """tqdm on stderr, fed by the exporter's progress(done, total)."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def update(self, done: int, total: int) -> None:
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="export", unit="tile", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
