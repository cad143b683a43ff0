"""Export a whole slide (any `MosaicSource`) as a pyramid file: OME-TIFF, Aperio SVS or
OME-Zarr. The one entry point the CLI and the GUI call.

The file is written under a temporary name beside the target (`.NAME.partial`) and renamed
into place only once complete and flushed, so a cancelled or failed export leaves nothing
half-written; one killed outright leaves the hidden partial file (removed by the next export
of that name) and its scratch folder (`.slidescan-pyramid-*`). The pyramid's scratch files go
in the output folder, not the system temp (often a RAM disk): one filesystem, one free-space
check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.export.codec import DEFAULT_QUALITY, Compression
from slidescan.app.export.errors import ExportError
from slidescan.app.export.pyramid import (
    TILE,
    TOP_MAX,
    Cancelled,
    Progress,
    StreamingPyramid,
)
from slidescan.app.export.tiffwrite import raw_bytes
from slidescan.app.records import Overview
from slidescan.app.stitch.source import MosaicSource

FORMATS = ("ome-tiff", "svs", "ome-zarr")
#: Longest suffix first: ".ome.tif" before ".tif".
SUFFIXES = {
    ".ome.tiff": "ome-tiff",
    ".ome.tif": "ome-tiff",
    ".ome.zarr": "ome-zarr",
    ".svs": "svs",
}
DEFAULT_COMPRESSION = {"ome-tiff": "jpeg", "svs": "jpeg", "ome-zarr": "zstd"}
#: Rough output size per raw byte, to refuse up front an export that cannot fit (low: the
#: check must never refuse one that would; a disk that fills later still ends cleanly).
_SIZE_FACTOR = {"jpeg": 0.03, "zstd": 0.2, "deflate": 0.25, "none": 1.0}


@dataclass
class ExportResult:
    """What an export wrote (for --json and the GUI)."""

    path: str
    format: str
    compression: str
    levels: list[list[int]]  # [height, width] per level
    tile: int
    file_bytes: int
    seconds: float
    pixel_size_um: float
    scratch_bytes: int
    associated: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The format named, or the one the file name's suffix says."""
    if fmt:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    name = Path(path).name.lower()
    for suffix, found in SUFFIXES.items():
        if name.endswith(suffix):
            return found
    raise ExportError(
        f"cannot tell the format from {Path(path).name!r}: name it .ome.tif, .svs or "
        ".ome.zarr, or give --format"
    )


def export_slide(
    source: MosaicSource,
    out: str | Path,
    *,
    fmt: str | None = None,
    compression: Compression | str | None = None,
    quality: int | None = None,
    overview: Overview | None = None,
    overwrite: bool = False,
    tile: int = TILE,
    top_max: int = TOP_MAX,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> ExportResult:
    """Write `source` as a pyramid to `out` (format from `fmt` or the suffix); `overview`
    becomes the macro image (SVS, OME-TIFF). `compression` defaults to JPEG for the TIFFs
    and zstd for OME-Zarr (`DEFAULT_COMPRESSION`). Raises `ExportError` (one line) or
    `ExportCancelled`; in either case nothing is left at `out` or beside it."""
    started = time.perf_counter()
    out = Path(out)
    fmt = format_for(out, fmt)
    if compression is None:
        compression = DEFAULT_COMPRESSION[fmt]
    if isinstance(compression, str):
        compression = Compression(compression, DEFAULT_QUALITY if quality is None else quality)
    elif quality is not None:
        compression = Compression(compression.name, quality)
    shape = tuple(source.shape)
    channels = shape[2] if len(shape) == 3 else 1
    compression.check(source.dtype, channels)
    if fmt == "svs":
        from slidescan.app.export.svs import check_svs

        check_svs(source.dtype)
    if fmt == "ome-zarr":
        from slidescan.app.export.omezarr import check_zarr

        check_zarr(compression)
    folder = _check_target(out, overwrite)
    partial = folder / f".{out.name}.partial"
    _remove(partial)
    info = source.info
    try:
        with StreamingPyramid(
            source, tile, top_max, scratch_dir=folder, progress=progress, cancelled=cancelled
        ) as pyramid:
            _check_space(folder, pyramid, compression)
            associated = _write(fmt, partial, pyramid, source, compression, overview)
        _publish(partial, out)
    except OSError as exc:
        _remove(partial)
        disk = _disk_error(exc, folder)
        if disk is None:
            raise
        raise disk from exc
    except BaseException:
        _remove(partial)
        raise
    return ExportResult(
        path=str(out),
        format=fmt,
        compression=compression.describe(),
        levels=[[lv.height, lv.width] for lv in pyramid.levels],
        tile=tile,
        file_bytes=_size(out),
        seconds=time.perf_counter() - started,
        pixel_size_um=info.pixel_size_um,
        scratch_bytes=pyramid.scratch_bytes,
        associated=associated,
    )


def _write(
    fmt: str,
    path: Path,
    pyramid: StreamingPyramid,
    source: MosaicSource,
    compression: Compression,
    overview: Overview | None,
) -> list[str]:
    """Write the file; returns the associated images it holds."""
    macro = None if overview is None else np.asarray(overview.image)
    if fmt == "svs":
        from slidescan.app.export.svs import write_svs

        write_svs(path, pyramid, source.info, compression, macro=macro)
        return ["thumbnail"] + ([] if macro is None else ["macro"])
    if fmt == "ome-tiff":
        from slidescan.app.export.ometiff import write_ome_tiff

        write_ome_tiff(path, pyramid, source.info, compression, overview)
        return [] if macro is None else ["macro"]
    from slidescan.app.export.omezarr import write_ome_zarr

    write_ome_zarr(path, pyramid, source.info, compression)
    return []


def _check_target(out: Path, overwrite: bool) -> Path:
    folder = out.resolve().parent
    if not folder.is_dir():
        raise ExportError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ExportError(f"output folder {folder} is not writable")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists (use --overwrite to replace it)")
    return folder


def _check_space(folder: Path, pyramid: StreamingPyramid, compression: Compression) -> None:
    need = pyramid.scratch_bytes + int(raw_bytes(pyramid) * _SIZE_FACTOR[compression.name])
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ExportError(
            f"not enough free space in {folder}: the export needs about {need / 1e9:.2f} GB "
            f"(file and scratch), {free / 1e9:.2f} GB free"
        )


def _disk_error(exc: OSError, folder: Path) -> ExportError | None:
    """The one-line error for a full or read-only disk; None for any other OSError."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExportError(f"{folder} is full: the export stopped and nothing was written")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError(f"cannot write in {folder}: {exc.strerror}")
    return None


def _publish(partial: Path, out: Path) -> None:
    """Flush `partial` and move it to `out` (a file atomically; a folder replaces an older
    one)."""
    # (app.store.publish does the same for scan files; importing it would pull in the scan
    # plan's scipy, 80 MB, into every export)
    if partial.is_dir():
        if out.exists():
            _remove(out)
        os.replace(partial, out)
    else:
        with open(partial, "r+b") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, out)
    with contextlib.suppress(OSError):  # the rename itself, where the platform allows it
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
