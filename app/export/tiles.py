"""Exports from review: one tile as TIFF (tifffile) or PNG, the tile table as CSV. Qt-free."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile


def export_tile(
    image: np.ndarray, path: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write one tile. `.tif`/`.tiff`: lossless TIFF (any dtype) with the record as JSON in the
    image description and the pixel size as resolution; `.png`: 8- or 16-bit PNG."""
    path = Path(path)
    suffix = path.suffix.lower()
    meta = {k: _plain(v) for k, v in (metadata or {}).items()}
    if suffix in (".tif", ".tiff"):
        pixel = meta.get("pixel_size_um")
        kwargs: dict[str, Any] = {}
        if pixel:
            kwargs["resolution"] = (1e4 / float(pixel), 1e4 / float(pixel))
            kwargs["resolutionunit"] = "CENTIMETER"
        tifffile.imwrite(
            path,
            image,
            photometric="rgb" if image.ndim == 3 else "minisblack",
            description=json.dumps(meta),
            metadata=None,
            **kwargs,
        )
    elif suffix == ".png":
        if image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"PNG holds 8 or 16-bit images, not {image.dtype}; export TIFF")
        out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
        if not cv2.imwrite(str(path), out):
            raise OSError(f"could not write {path}")
    else:
        raise ValueError(f"unknown image format {suffix!r}: use .tif, .tiff or .png")
    return path


def export_table(
    tiles: np.ndarray, path: str | Path, extra: dict[str, np.ndarray] | None = None
) -> Path:
    """The tile records (a structured array) as CSV, one row per record, plus `extra` columns."""
    path = Path(path)
    names = list(tiles.dtype.names or ())
    extra = extra or {}
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(names + list(extra))
        for i, row in enumerate(tiles):
            w.writerow([_plain(row[n]) for n in names] + [_plain(v[i]) for v in extra.values()])
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, bytes | np.bytes_):
        return bytes(v).decode("utf-8", "replace").rstrip("\x00")
    if isinstance(v, np.generic):
        return v.item()
    return v
