"""The stitched slide, read region by region: a `MosaicSource` over the tiles of a scan.

A region is composed from the tiles that overlap it and nothing else: each is corrected for
the flat-field and white balance (in its own pixel grid, where the vignetting lives), shifted
by its fractional placement (cubic interpolation; an integer placement is copied as is), and
added with its feather weight; the sum is divided by the weights. Pixels no tile covers are
background: white on the image's scale, which is where the white balance puts bare glass.

Tiles are read through a small cache of raw images bounded in bytes, so reading a slide in
strips or blocks reads each tile about once and memory does not grow with the slide.

`read_scaled` serves a viewer: the same composition from tiles decimated by an integer factor
(area averaging, cached per tile), so a zoomed-out view never touches full-resolution pixels
more than once per tile. Its geometry is exact to within a pixel of the coarse level (tile
sizes are rounded there).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from slidescan.app.stitch.blend import FEATHER, HARD, edge_distance
from slidescan.app.stitch.flatfield import FlatField, WhiteBalance, full_scale
from slidescan.app.stitch.source import SlideInfo

#: Default budget of the raw-tile cache.
CACHE_BYTES = 256 * 1024 * 1024


class TileMosaic:
    """Tiles of one shape placed at (x, y) (top-left, mosaic pixels, >= 0), read through
    `load(key)` (None: no image, never composed). `flatfield` (H, W, C) divides each tile and
    `gains` (C,) scale the result; `background` fills what no tile covers."""

    def __init__(
        self,
        xy: np.ndarray,
        keys: np.ndarray,
        load: Callable[[int], np.ndarray | None],
        tile_shape: tuple[int, ...],
        dtype: np.dtype,
        info: SlideInfo,
        *,
        flatfield: np.ndarray | None = None,
        gains: np.ndarray | None = None,
        background: float | None = None,
        blend: str = FEATHER,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        if blend not in (FEATHER, HARD):
            raise ValueError(f"blend must be {FEATHER!r} or {HARD!r}, got {blend!r}")
        self._xy = np.asarray(xy, np.float64).reshape(-1, 2)
        self._keys = np.asarray(keys, np.int64).reshape(-1)
        if len(self._xy) != len(self._keys):
            raise ValueError("one position per tile is needed")
        self._load = load
        self.tile_shape = tuple(int(s) for s in tile_shape)
        self._h, self._w = self.tile_shape[:2]
        self._channels = self.tile_shape[2] if len(self.tile_shape) == 3 else 1
        self._dtype = np.dtype(dtype)
        self._info = info
        self._flat = None if flatfield is None else np.asarray(flatfield, np.float32)
        if self._flat is not None and self._flat.shape[:2] != (self._h, self._w):
            raise ValueError(f"flat-field {self._flat.shape} does not fit tiles {self.tile_shape}")
        self._gains = (
            None if gains is None else np.asarray(gains, np.float32).reshape(self._channels)
        )
        self._background = full_scale(self._dtype) if background is None else float(background)
        self.blend = blend
        self._cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = int(cache_bytes)
        self._lock = threading.RLock()
        self.loads = 0  # tile images read from the source (for tests and benchmarks)
        if len(self._xy):
            far = self._xy + [self._w, self._h]
            self._shape2d = (int(math.ceil(far[:, 1].max())), int(math.ceil(far[:, 0].max())))
        else:
            self._shape2d = (0, 0)

    # -- MosaicSource --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        h, w = self._shape2d
        return (h, w, self._channels) if len(self.tile_shape) == 3 else (h, w)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def info(self) -> SlideInfo:
        return self._info

    @property
    def positions(self) -> np.ndarray:
        """(n, 2) top-left x, y of every tile, mosaic pixels."""
        return self._xy.copy()

    def read(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        return self._compose(int(y0), int(x0), int(height), int(width), 1)

    def read_scaled(self, y0: int, x0: int, height: int, width: int, factor: int) -> np.ndarray:
        """A region of the mosaic downsampled by the integer `factor`: pixel (i, j) of level
        `factor` covers level-0 pixels [i * factor, (i + 1) * factor) and likewise in x."""
        factor = int(factor)
        if factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        return self._compose(int(y0), int(x0), int(height), int(width), factor)

    def tiles_in(self, y0: float, x0: float, height: float, width: float, factor: int = 1):
        """Indices of the tiles that overlap the region (level `factor` coordinates)."""
        f = float(factor)
        x, y = self._xy[:, 0] / f, self._xy[:, 1] / f
        w, h = self._w / f, self._h / f
        hit = (x < x0 + width) & (x + w > x0) & (y < y0 + height) & (y + h > y0)
        return np.flatnonzero(hit)

    # -- composition ---------------------------------------------------------------------------
    def _compose(self, y0: int, x0: int, height: int, width: int, factor: int) -> np.ndarray:
        if height < 0 or width < 0:
            raise ValueError(f"region size must not be negative, got {height} x {width}")
        c = self._channels
        acc = np.zeros((height, width, c), np.float32)
        wsum = np.zeros((height, width), np.float32)
        for t in self.tiles_in(y0, x0, height, width, factor):
            tile = self._corrected(int(t), factor)
            if tile is None:
                continue
            th, tw = tile.shape[:2]
            x, y = self._xy[t, 0] / factor, self._xy[t, 1] / factor
            ix, iy = math.floor(x), math.floor(y)
            fx, fy = x - ix, y - iy
            # Mosaic pixels ix + k (k = 0 .. tw, one more when the placement is fractional).
            kx0, kx1 = max(0, x0 - ix), min(tw + (fx > 0), x0 + width - ix)
            ky0, ky1 = max(0, y0 - iy), min(th + (fy > 0), y0 + height - iy)
            if kx1 <= kx0 or ky1 <= ky0:
                continue
            wy = np.maximum(edge_distance(np.arange(ky0, ky1) + 0.5 - fy, th), 0.0)
            wx = np.maximum(edge_distance(np.arange(kx0, kx1) + 0.5 - fx, tw), 0.0)
            if not (wy.any() and wx.any()):
                continue
            weight = (wy[:, None] * wx[None, :]).astype(np.float32)
            values = _shifted(tile, ky0, ky1, kx0, kx1, fy, fx)
            oy, ox = iy + ky0 - y0, ix + kx0 - x0
            region = (slice(oy, oy + ky1 - ky0), slice(ox, ox + kx1 - kx0))
            if self.blend == FEATHER:
                acc[region] += values * weight[:, :, None]
                wsum[region] += weight
            else:  # pasted in order: this tile covers what came before it
                take = weight > 0
                acc[region][take] = values[take]
                wsum[region][take] = 1.0
        covered = wsum > 0
        if self.blend == FEATHER:
            acc[covered] /= wsum[covered][:, None]
        acc[~covered] = self._background
        out = _to_dtype(acc, self._dtype)
        return out if len(self.tile_shape) == 3 else out[:, :, 0]

    def _corrected(self, t: int, factor: int) -> np.ndarray | None:
        """Tile t flat-field corrected and white balanced, float32 (h, w, C), decimated by
        `factor` (cached raw at factor 1, corrected at coarser factors)."""
        if factor == 1:
            raw = self._cached((t, 1), lambda: self._raw(t))
            return None if raw is None else self._correct(raw, self._flat)
        return self._cached((t, factor), lambda: self._decimated(t, factor))

    def _decimated(self, t: int, factor: int) -> np.ndarray | None:
        raw = self._cached((t, 1), lambda: self._raw(t))
        if raw is None:
            return None
        size = (max(1, round(self._w / factor)), max(1, round(self._h / factor)))
        corrected = self._correct(raw, self._flat)
        small = cv2.resize(corrected, size, interpolation=cv2.INTER_AREA)
        return small.reshape(size[1], size[0], self._channels)

    def _raw(self, t: int) -> np.ndarray | None:
        image = self._load(int(self._keys[t]))
        self.loads += 1
        if image is None:
            return None
        image = np.asarray(image)
        return image[:, :, None] if image.ndim == 2 else image

    def _correct(self, raw: np.ndarray, flat: np.ndarray | None) -> np.ndarray:
        out = raw.astype(np.float32)
        if flat is not None:
            out /= flat
        if self._gains is not None:
            out *= self._gains
        return out

    def _cached(self, key: tuple[int, int], make: Callable[[], np.ndarray | None]):
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            value = make()
            self._cache[key] = value
            self._cache_bytes += 0 if value is None else value.nbytes
            while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= 0 if old is None else old.nbytes
            return value


def _shifted(
    tile: np.ndarray, ky0: int, ky1: int, kx0: int, kx1: int, fy: float, fx: float
) -> np.ndarray:
    """Values at mosaic pixels k (rows ky0..ky1, cols kx0..kx1) of a tile placed with
    fractional offset (fy, fx): the tile sampled at k - f (cubic; edges replicated)."""
    th, tw = tile.shape[:2]
    if fx == 0 and fy == 0:
        return tile[ky0:ky1, kx0:kx1]
    sy0, sy1 = max(0, ky0 - 2), min(th, ky1 + 2)
    sx0, sx1 = max(0, kx0 - 2), min(tw, kx1 + 2)
    src = np.ascontiguousarray(tile[sy0:sy1, sx0:sx1])
    m = np.float32([[1, 0, kx0 - fx - sx0], [0, 1, ky0 - fy - sy0]])
    out = cv2.warpAffine(
        src,
        m,
        (kx1 - kx0, ky1 - ky0),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(ky1 - ky0, kx1 - kx0, tile.shape[2])


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


class ScanMosaic(TileMosaic):
    """The stitched slide of a scan file: the latest stitching run's placement, flat-field
    and white balance (`corrected=False`: the raw tiles). A file never stitched is shown at
    its stage positions, uncorrected."""

    def __init__(
        self,
        reader,
        *,
        corrected: bool = True,
        blend: str = FEATHER,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        from slidescan.app.stitch.camera import tile_images
        from slidescan.app.stitch.stored import mosaic_inputs

        inputs = mosaic_inputs(reader)
        flat: np.ndarray | None = None
        gains: np.ndarray | None = None
        if corrected and inputs.flatfield is not None:
            flat = FlatField.from_json(inputs.flatfield).image()
        if corrected and inputs.white_balance is not None:
            gains = WhiteBalance.from_json(inputs.white_balance).gains
        tile_shape = tuple(reader.tile_shape)
        channels = tile_shape[2] if len(tile_shape) == 3 else 1
        if flat is not None and flat.shape[2] != channels:
            flat = None
        info = SlideInfo(
            pixel_size_um=reader.pixel_size_um,
            objective=reader.plan.objective,
            magnification=inputs.magnification,
            na=inputs.na,
            origin_um=inputs.origin_um,
            name=Path(reader.path).stem,
        )
        super().__init__(
            inputs.xy,
            inputs.rows,
            tile_images(reader),
            tile_shape,
            np.dtype(reader.attrs.get("tile_dtype", "|u1")),
            info,
            flatfield=flat,
            gains=gains,
            blend=blend,
            cache_bytes=cache_bytes,
        )
        self.generation = inputs.generation
