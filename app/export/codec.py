"""How a slide export compresses its tiles, as tifffile arguments.

- `jpeg` (default): what Aperio files and their readers expect; 8-bit only. RGB tiles are
  stored as YCbCr with 2 x 2 chroma subsampling (the usual TIFF JPEG, half the size of RGB
  JPEG at the same quality).
- `zstd`, `deflate`: lossless, with horizontal differencing (TIFF predictor 2).
- `none`: raw tiles.

JPEG and zstd encoding are imagecodecs' (tifffile uses it); deflate and none need nothing
beyond tifffile.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

from slidescan.app.export.errors import ExportError

COMPRESSIONS = ("jpeg", "zstd", "deflate", "none")
DEFAULT_QUALITY = 90
_TIFF_NAMES = {"jpeg": "jpeg", "zstd": "zstd", "deflate": "zlib", "none": None}
_NEEDS_IMAGECODECS = ("jpeg", "zstd")


@dataclass(frozen=True)
class Compression:
    """A compression choice: `name` in COMPRESSIONS, `quality` 1-100 for JPEG."""

    name: str = "jpeg"
    quality: int = DEFAULT_QUALITY

    def __post_init__(self) -> None:
        if self.name not in COMPRESSIONS:
            raise ExportError(
                f"unknown compression {self.name!r}: use one of {', '.join(COMPRESSIONS)}"
            )
        if not 1 <= int(self.quality) <= 100:
            raise ExportError(f"JPEG quality {self.quality} is not between 1 and 100")

    @property
    def lossless(self) -> bool:
        return self.name != "jpeg"

    def check(self, dtype: np.dtype, channels: int) -> None:
        """Refuse (one line) what this compression cannot hold or this install cannot write."""
        if self.name == "jpeg" and np.dtype(dtype) != np.uint8:
            raise ExportError(
                f"JPEG holds 8-bit images and this slide is {np.dtype(dtype)}: use "
                "--compression zstd, deflate or none"
            )
        if channels not in (1, 3):
            raise ExportError(f"a slide has 1 (grey) or 3 (RGB) channels, not {channels}")
        if self.name in _NEEDS_IMAGECODECS and importlib.util.find_spec("imagecodecs") is None:
            raise ExportError(
                f"{self.name} compression needs the imagecodecs package (pip install "
                "imagecodecs), or use --compression deflate or none"
            )

    def tiff_args(self, channels: int) -> dict[str, Any]:
        """tifffile `write` arguments for tiles of `channels` samples."""
        rgb = channels == 3
        args: dict[str, Any] = {"photometric": "rgb" if rgb else "minisblack"}
        name = _TIFF_NAMES[self.name]
        if name is None:
            return args
        args["compression"] = name
        if self.name == "jpeg":
            args["compressionargs"] = {"level": int(self.quality)}
            if rgb:  # the pixels given are RGB; tifffile stores them as subsampled YCbCr
                args["subsampling"] = (2, 2)
        else:
            args["predictor"] = True
        return args

    def describe(self) -> str:
        return f"jpeg Q={self.quality}" if self.name == "jpeg" else self.name
