"""A scan file's stitched slide as the slide viewer sees it: the mosaic to read chunks from,
where each tile lies on it and what its record says (planned index, focus z, focus error).

The mosaic (`ScanMosaic`: the latest stitching run's placement, flat-field and white balance;
a file never stitched shows its tiles at their stage positions, uncorrected) reads tiles
through the review window's open `ScanReader`, from the viewer's loader thread.

The levels are composed like `ScanMosaic.read_scaled` (the same placement, flat-field and
white balance; tiles decimated by area averaging) but cheaper, because a viewer must show
a zoomed-out slide at once:
- zoomed far out, from the tile thumbnails the scan file keeps (a 1024 px tile has a 64 px
  one: the means of its 16 x 16 blocks, each over a sub-grid of its pixels) instead of the
  full tiles, so the whole slide appears in a fraction of a second (8-bit tiles whose
  thumbnail scale is a power of two: 512, 1024 and 2048 px tiles);
- at the levels between, from full tiles reduced as they are read, then corrected (the
  flat-field reduced alike): a tenth of the work of correcting every full-resolution pixel;
- level 1 is the full mosaic itself.
Correcting after averaging instead of before differs by a grey level at most (the flat-field
is smooth; tests/test_gui_slide.py compares every level with the mosaic's own). The review
must be able to close that reader at any moment (a reload, a scan or a stitch claiming the
file), so the mosaic reads through a guard: `ViewerSlide.close()` waits for the tile read in
progress, if any (milliseconds), and makes every later read fail, which the loader reports
and the viewer ignores.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.gui.slide_loader import ScaledSource


class SlideClosed(RuntimeError):
    """The slide was closed while a chunk was being read."""


class _GuardedReader:
    """A `ScanReader` whose `image` fails once `close()` has been called (see the module)."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._lock = threading.Lock()
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def image(self, i: int) -> np.ndarray | None:
        with self._lock:
            if self._closed:
                raise SlideClosed("the slide was closed")
            image = self._reader.image(i)
            return None if image is None else np.asarray(image)

    def thumbnail(self, i: int, flipped: bool = False) -> np.ndarray:
        """Row `i`'s thumbnail, mirrored back for a mirrored camera."""
        with self._lock:
            if self._closed:
                raise SlideClosed("the slide was closed")
            thumb = np.asarray(self._reader.thumbnail(i))
        return np.ascontiguousarray(thumb[:, ::-1]) if flipped else thumb

    def close(self) -> None:
        with self._lock:
            self._closed = True

    @contextlib.contextmanager
    def swapping(self) -> Iterator[Callable[[Any], None]]:
        """Hold off reads (waiting for the one in progress) while the owner replaces the
        reader; `swap(new_reader)` inside the block installs the new one. Left without a
        swap (the new reader could not be opened), the guard stays closed."""
        swapped = []

        def swap(reader: Any) -> None:
            self._reader = reader
            swapped.append(reader)

        with self._lock:
            self._closed = True
            yield swap
            self._closed = not swapped


class Pyramid:
    """`read_scaled` at any power-of-two factor (see the module): level 1 from the full
    mosaic, levels from the thumbnails' scale up from the thumbnail mosaic, the levels between
    from mosaics of tiles reduced as they are read (`reduced(factor)`, made when first
    needed). Used from one thread (the viewer's loader)."""

    def __init__(
        self,
        full: Any,
        reduced: Callable[[int], Any] | None = None,
        thumbs: Any | None = None,
        thumb_scale: int = 0,
    ) -> None:
        self.full = full
        self.thumbs = thumbs
        self.thumb_scale = int(thumb_scale) if thumbs is not None else 0
        self._reduced = reduced
        self._levels: dict[int, Any] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.full.shape)

    def read_scaled(self, y0: int, x0: int, height: int, width: int, factor: int) -> np.ndarray:
        s = self.thumb_scale
        if s and factor >= s and factor % s == 0:
            return self.thumbs.read_scaled(y0, x0, height, width, factor // s)
        if factor > 1 and self._reduced is not None:
            level = self._levels.get(factor)
            if level is None:
                level = self._levels[factor] = self._reduced(factor)
            if level is not None:
                return level.read_scaled(y0, x0, height, width, 1)
        return self.full.read_scaled(y0, x0, height, width, factor)


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def small_mosaic(
    load: Callable[[int], np.ndarray],
    inputs: Any,
    tile_shape: tuple[int, ...],
    dtype: np.dtype,
    scale: int,
    pixel_size_um: float,
    cache_bytes: int = 32 * 1024 * 1024,
) -> Any:
    """A `TileMosaic` of tiles reduced `scale` times by `load(row)` (the flat-field reduced
    alike, the same white balance): level `scale` of the full mosaic."""
    import cv2

    from slidescan.app.stitch.flatfield import FlatField, WhiteBalance
    from slidescan.app.stitch.mosaic import TileMosaic
    from slidescan.app.stitch.source import SlideInfo

    h, w = tile_shape[:2]
    channels = tile_shape[2] if len(tile_shape) == 3 else 1
    small = (h // scale, w // scale, channels)
    flat = gains = None
    if inputs.flatfield is not None:
        full_flat = FlatField.from_json(inputs.flatfield).image()
        if full_flat.shape[2] == channels:
            cut = np.ascontiguousarray(full_flat[: small[0] * scale, : small[1] * scale])
            flat = cv2.resize(cut, (small[1], small[0]), interpolation=cv2.INTER_AREA)
            flat = flat.reshape(small)
    if inputs.white_balance is not None:
        gains = WhiteBalance.from_json(inputs.white_balance).gains
    return TileMosaic(
        np.asarray(inputs.xy, float) / scale,
        inputs.rows,
        load,
        small if len(tile_shape) == 3 else small[:2],
        dtype,
        SlideInfo(pixel_size_um=pixel_size_um * scale),
        flatfield=flat,
        gains=gains,
        cache_bytes=cache_bytes,
    )


def reduced_levels(
    guard: Any, inputs: Any, tile_shape: tuple[int, ...]
) -> Callable[[int], Any] | None:
    """Makes the mosaic of level `factor` from full tiles reduced by area averaging as they
    are read (a tile read once per level, 1/factor^2 of its pixels corrected and placed);
    None where the tile size does not divide (the full mosaic's own `read_scaled` then)."""
    import cv2

    from slidescan.app.stitch.camera import tile_images

    h, w = tile_shape[:2]
    dtype = np.dtype(guard.attrs.get("tile_dtype", "|u1"))
    images = tile_images(guard)  # a mirrored camera's tiles mirrored back
    if not len(inputs.rows):
        return None

    def level(factor: int) -> Any:
        if h % factor or w % factor:
            return None
        size = (w // factor, h // factor)

        def load(row: int) -> np.ndarray | None:
            image = images(row)
            if image is None:
                return None
            small = cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA)
            return small.reshape(size[1], size[0], *image.shape[2:])

        return small_mosaic(load, inputs, tile_shape, dtype, factor, guard.pixel_size_um)

    return level


def thumbnail_mosaic(guard: Any, inputs: Any, tile_shape: tuple[int, ...]) -> tuple[Any, int]:
    """A `TileMosaic` of the scan's thumbnails standing for level `scale` of the full one,
    and `scale`; (None, 0) where thumbnails cannot stand in exactly (see the module)."""
    from slidescan.app.stitch.camera import mount_of
    from slidescan.app.tissue import LOOK_SIZE

    if np.dtype(guard.attrs.get("tile_dtype", "|u1")) != np.uint8 or not len(inputs.rows):
        return None, 0
    h, w = tile_shape[:2]
    scale = math.ceil(max(h, w) / LOOK_SIZE)  # the thumbnail's block size (app/tissue.py)
    if scale < 2 or not _power_of_two(scale):
        return None, 0
    flipped = mount_of(guard.profile)[1]

    def load(row: int) -> np.ndarray:
        return guard.thumbnail(row, flipped)

    mosaic = small_mosaic(load, inputs, tile_shape, np.dtype(np.uint8), scale, guard.pixel_size_um)
    return mosaic, scale


@dataclass
class ViewerSlide:
    """See the module docstring. Positions are tile top-left corners in level-0 mosaic
    pixels; per tile also its file row, planned index, focus z and focus error (z minus the
    true focus, NaN where unknown)."""

    source: ScaledSource
    tile_shape: tuple[int, int]
    positions: np.ndarray
    rows: np.ndarray
    indices: np.ndarray
    z_um: np.ndarray
    error_um: np.ndarray
    pixel_size_um: float
    generation: int
    name: str
    _guard: _GuardedReader | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.source.shape)

    @property
    def quick_factor(self) -> int:
        """The level read from the thumbnails (fast), 0 when there is none."""
        return int(getattr(self.source, "thumb_scale", 0) or 0)

    @property
    def stitched(self) -> bool:
        return self.generation > 0

    @property
    def has_truth(self) -> bool:
        return bool(np.isfinite(self.error_um).any())

    def tile_rects(self) -> np.ndarray:
        """(n, 4) x, y, width, height of every tile, level-0 pixels."""
        h, w = self.tile_shape
        n = len(self.positions)
        return np.column_stack([self.positions, np.full(n, float(w)), np.full(n, float(h))])

    def cells(self) -> np.ndarray:
        """(n, 4) x, y, width, height of the part of the slide each tile stands for: its
        footprint less half the overlap with its neighbours on every side (what a per-tile
        colour fills, so overlaps are not coloured twice)."""
        h, w = self.tile_shape
        step_x, step_y = self._steps()
        cx = self.positions[:, 0] + w / 2
        cy = self.positions[:, 1] + h / 2
        n = len(self.positions)
        return np.column_stack(
            [cx - step_x / 2, cy - step_y / 2, np.full(n, step_x), np.full(n, step_y)]
        )

    def _steps(self) -> tuple[float, float]:
        """The typical distance between neighbouring tiles along x and y (the tile size
        when there is no neighbour)."""
        h, w = self.tile_shape
        out = []
        for axis, size in ((0, w), (1, h)):
            c = np.sort(self.positions[:, axis])
            gaps = np.diff(c)
            gaps = gaps[gaps > 0.3 * size]  # tiles of one column (row) differ by jitter only
            out.append(float(np.clip(np.median(gaps), 0.3 * size, size)) if gaps.size else size)
        return out[0], out[1]

    def tile_at(self, x: float, y: float) -> int | None:
        """The position in the tile arrays of the tile under level-0 point (x, y); where tiles
        overlap, the one whose centre is nearest."""
        if not len(self.positions):
            return None
        h, w = self.tile_shape
        px, py = self.positions[:, 0], self.positions[:, 1]
        hit = np.flatnonzero((px <= x) & (x < px + w) & (py <= y) & (y < py + h))
        if not hit.size:
            return None
        d = (px[hit] + w / 2 - x) ** 2 + (py[hit] + h / 2 - y) ** 2
        return int(hit[np.argmin(d)])

    def position_of(self, index: int) -> int | None:
        """The position in the tile arrays of planned tile `index` (None: not on the slide)."""
        found = np.flatnonzero(self.indices == index)
        return int(found[0]) if found.size else None

    def close(self) -> None:
        """Stop reading from the scan file (see the module docstring)."""
        if self._guard is not None:
            self._guard.close()

    def reader_swap(self) -> contextlib.AbstractContextManager[Callable[[Any], None]]:
        """`with slide.reader_swap() as swap:` close the old reader, open a new one of the
        same file, `swap(new)`: the slide reads on from the new reader (same content: the
        caller checks the file has not changed)."""
        if self._guard is None:
            return contextlib.nullcontext(lambda reader: None)
        return self._guard.swapping()


def open_viewer_slide(reader: Any) -> ViewerSlide:
    """The stitched slide of the scan an open `ScanReader` reads."""
    from slidescan.app.stitch.mosaic import ScanMosaic
    from slidescan.app.stitch.stored import mosaic_inputs

    guard = _GuardedReader(reader)
    mosaic = ScanMosaic(guard, cache_bytes=96 * 1024 * 1024)
    inputs = mosaic_inputs(reader)
    tile_shape = tuple(reader.tile_shape)
    thumbs, scale = thumbnail_mosaic(guard, inputs, tile_shape)
    pyramid = Pyramid(mosaic, reduced_levels(guard, inputs, tile_shape), thumbs, scale)
    rows = np.asarray(inputs.rows, np.int64)
    records = reader.tiles
    picked = records[rows] if len(rows) else records[:0]
    z = picked["z_um"].astype(float)
    truth = picked["true_focus_um"].astype(float)
    return ViewerSlide(
        source=pyramid,
        tile_shape=(int(reader.tile_shape[0]), int(reader.tile_shape[1])),
        positions=np.asarray(mosaic.positions, float).reshape(-1, 2),
        rows=rows,
        indices=picked["index"].astype(np.int64),
        z_um=z,
        error_um=z - truth,
        pixel_size_um=float(reader.pixel_size_um),
        generation=int(inputs.generation),
        name=Path(reader.path).name,
        _guard=guard,
    )
