"""The slide as a tiled pyramid, streamed: level 0 read tile by tile from a `MosaicSource`,
each next level the 2 x 2 area mean of the one before, memory independent of the slide's size.

A TIFF is written level after level, level 0 first. While level 0's tiles go by, each is
reduced to the 2 x 2 sums of its pixels and parked on disk (`scratch.BlockGrid`); once level 0
is through, `complete()` reduces level 1's sums to level 2's and so on, and each reduced level
is then served tile by tile from its sums. What is held in memory at any time is a few tiles.

Sums, not rounded means, are kept, so that every level is exact: level k's pixel is the mean
of the 2^k x 2^k level-0 pixels under it, rounded half up (for integer images), however many
halvings made it. Rounding at every halving would drift by up to half a grey level per level.
Beyond the slide's bottom and right edges level 0 is background (the source's glass), so an
edge pixel of a reduced level averages glass in, as the padded tiles of level 0 show it.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slidescan.app.export.errors import ExportCancelled
from slidescan.app.export.scratch import BlockGrid
from slidescan.app.stitch.source import MosaicSource

#: Levels are added until the smallest one's longest side is at most this.
TOP_MAX = 2048
TILE = 512
#: Level-0 tiles read ahead of the one being written.
READ_AHEAD = 3

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]


@dataclass(frozen=True)
class Level:
    """One pyramid level: its size in pixels and its grid of `tile` x `tile` tiles."""

    index: int
    height: int
    width: int
    tile: int

    @property
    def downsample(self) -> int:
        return 2**self.index

    @property
    def tiles_y(self) -> int:
        return -(-self.height // self.tile)

    @property
    def tiles_x(self) -> int:
        return -(-self.width // self.tile)

    @property
    def n_tiles(self) -> int:
        return self.tiles_y * self.tiles_x


def plan_levels(height: int, width: int, tile: int = TILE, top_max: int = TOP_MAX) -> list[Level]:
    """Level 0 at (height, width), each next one half the size (rounded up), until the
    longest side is at most `top_max`."""
    if tile < 16 or tile % 16:
        raise ValueError(f"tile size {tile} is not a positive multiple of 16 (TIFF needs that)")
    if height < 1 or width < 1:
        raise ValueError(f"the slide is empty ({width} x {height} px)")
    levels = [Level(0, height, width, tile)]
    while max(levels[-1].height, levels[-1].width) > top_max:
        last = levels[-1]
        levels.append(Level(last.index + 1, -(-last.height // 2), -(-last.width // 2), tile))
    return levels


def background(dtype: np.dtype) -> float:
    """Bare glass: full scale."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def sum_dtype(dtype: np.dtype, k: int) -> np.dtype:
    """The narrowest type that holds the sum of 4^k pixels of `dtype` plus half of 4^k (the
    rounding offset) without overflow."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float64)
    if dtype.kind != "u":
        raise ValueError(f"cannot build a pyramid of {dtype} pixels (unsigned or float only)")
    top = (float(np.iinfo(dtype).max) + 0.5) * 4**k
    for candidate in (np.uint16, np.uint32, np.uint64):
        if np.iinfo(candidate).max >= top and np.dtype(candidate).itemsize >= dtype.itemsize:
            return np.dtype(candidate)
    raise ValueError(f"{dtype} pixels summed over 4^{k} overflow 64 bits")


def sum2x2(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(2h, 2w, C) -> (h, w, C): each 2 x 2 block summed in `dtype` (strided adds: several
    times faster than a reshaped `sum` over the small axes)."""
    rows = np.add(values[0::2], values[1::2], dtype=dtype)
    return np.add(rows[:, 0::2], rows[:, 1::2], dtype=dtype)


def mean_from_sums(sums: np.ndarray, k: int, dtype: np.dtype) -> np.ndarray:
    """Level-k pixels from their sums over 4^k level-0 pixels: the mean, rounded half up for
    integer images."""
    n = 4**k
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (sums / n).astype(dtype)
    return ((sums + n // 2) // n).astype(dtype)


class StreamingPyramid:
    """The pyramid of `source`, level by level, tile by tile (row-major within a level).

    Use: consume `tiles(0)` completely, then `tiles(1)`, `tiles(2)`, ... in order (each
    level may be read once); `image(k)` gives a whole small level (for a thumbnail) once
    level 0 is through. `progress(done, total)` is called after every step (a tile written
    or reduced), `cancelled()` is asked before every step and raises `ExportCancelled`.
    Scratch files live in `scratch_dir` (a temporary folder by default) and go on `close()`.
    The source is read a few tiles ahead on one worker thread: one read at a time, but not
    on the caller's thread.
    """

    def __init__(
        self,
        source: MosaicSource,
        tile: int = TILE,
        top_max: int = TOP_MAX,
        scratch_dir: str | Path | None = None,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
    ) -> None:
        shape = tuple(int(s) for s in source.shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"a slide is (H, W) or (H, W, C), not {shape}")
        self.source = source
        self.height, self.width = shape[:2]
        self.channels = shape[2] if len(shape) == 3 else 1
        self.dtype = np.dtype(source.dtype)
        self.tile = tile
        self.levels = plan_levels(self.height, self.width, tile, top_max)
        self._progress = progress
        self._cancelled = cancelled
        self._tmp = tempfile.TemporaryDirectory(
            prefix=".slidescan-pyramid-", dir=None if scratch_dir is None else str(scratch_dir)
        )
        self._sums: dict[int, BlockGrid] = {}
        self._next = 0  # the level tiles() may serve next
        self._level0_read = False
        self._completed = len(self.levels) <= 2  # nothing to reduce past level 1
        self.done = 0
        n = [lv.n_tiles for lv in self.levels]
        self.total = sum(n) + sum(n[1:-1])  # every tile written, every reduced level's tiles

    # --- scratch ---

    @property
    def scratch_bytes(self) -> int:
        """Disk the scratch files take at most (all reduced levels' sums at once)."""
        return sum(self._grid_bytes(k) for k in range(1, len(self.levels)))

    def _grid_bytes(self, k: int) -> int:
        above = self.levels[k - 1]
        half = self.tile // 2
        item = sum_dtype(self.dtype, k).itemsize
        return above.n_tiles * half * half * self.channels * item

    def _grid(self, k: int) -> BlockGrid:
        """Level k's sums: one (tile/2)^2 block per tile of level k - 1."""
        if k not in self._sums:
            above = self.levels[k - 1]
            self._sums[k] = BlockGrid(
                Path(self._tmp.name) / f"level{k}.sums",
                above.tiles_y,
                above.tiles_x,
                self.tile // 2,
                self.channels,
                sum_dtype(self.dtype, k),
                background(self.dtype) * 4**k,
            )
        return self._sums[k]

    # --- steps ---

    def _step(self) -> None:
        if self._cancelled is not None and self._cancelled():
            raise ExportCancelled()

    def _stepped(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress(self.done, self.total)

    # --- levels ---

    def tiles(self, k: int) -> Iterator[np.ndarray]:
        """Level k's tiles, (tile, tile, channels) in the source's dtype, row-major; edge
        tiles padded with background."""
        if k != self._next:
            raise RuntimeError(f"pyramid levels are read in order: level {self._next} is next")
        if k >= len(self.levels):
            raise IndexError(f"the pyramid has {len(self.levels)} levels")
        self._next += 1
        if k == 0:
            return self._level0()
        self.complete()
        return self._reduced(k)

    def _level0(self) -> Iterator[np.ndarray]:
        # The next few tiles are read from the source on a worker thread while this one is
        # reduced, encoded and written (composing a mosaic region and JPEG encoding both
        # release the GIL). Bookkeeping happens before each yield: a writer that takes
        # exactly n_tiles items (tifffile does) never resumes the generator after the last.
        t = self.tile
        lv = self.levels[0]
        grid = self._grid(1) if len(self.levels) > 1 else None
        positions = list(_positions(lv))
        queued = iter(positions)
        ahead: deque[Future[np.ndarray]] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix="slide-read") as pool:
            try:
                for i, j in positions:
                    self._step()
                    while len(ahead) < READ_AHEAD and (pos := next(queued, None)) is not None:
                        ahead.append(pool.submit(self._read_source, pos[0] * t, pos[1] * t))
                    block = ahead.popleft().result()
                    if grid is not None:
                        grid.put(i, j, sum2x2(block, grid.dtype))
                    self._stepped()
                    self._level0_read = (i, j) == (lv.tiles_y - 1, lv.tiles_x - 1)
                    yield block
            finally:
                for future in ahead:
                    future.cancel()

    def _reduced(self, k: int) -> Iterator[np.ndarray]:
        grid = self._sums[k]
        lv = self.levels[k]
        for i, j in _positions(lv):
            self._step()
            block = mean_from_sums(grid.square(i, j), k, self.dtype)
            self._stepped()
            if (i, j) == (lv.tiles_y - 1, lv.tiles_x - 1):
                grid.close()  # the levels above it were reduced in complete()
                del self._sums[k]
            yield block

    def complete(self) -> None:
        """After level 0: reduce level 1's sums to level 2's, and so on to the top."""
        if not self._level0_read:
            raise RuntimeError("level 0 must be read through before the reduced levels")
        if self._completed:
            return
        for k in range(1, len(self.levels) - 1):
            grid, lv, below = self._sums[k], self.levels[k], self._grid(k + 1)
            for i in range(lv.tiles_y):
                for j in range(lv.tiles_x):
                    self._step()
                    below.put(i, j, sum2x2(grid.square(i, j), below.dtype))
                    self._stepped()
        self._completed = True

    def image(self, k: int) -> np.ndarray:
        """All of level k, (H_k, W_k, C): only for small levels (thumbnails). Level k >= 1 is
        available once level 0 has been read."""
        lv = self.levels[k]
        if k == 0:
            return self._read_source(0, 0, lv.height, lv.width)
        self.complete()
        grid = self._sums.get(k)
        if grid is None:
            raise RuntimeError(f"level {k} has been written and its sums are gone")
        t = self.tile
        out = np.empty((lv.tiles_y * t, lv.tiles_x * t, self.channels), self.dtype)
        for i in range(lv.tiles_y):
            for j in range(lv.tiles_x):
                square = grid.square(i, j)
                out[i * t : (i + 1) * t, j * t : (j + 1) * t] = mean_from_sums(
                    square, k, self.dtype
                )
        return out[: lv.height, : lv.width]

    def _read_source(
        self, y0: int, x0: int, h: int | None = None, w: int | None = None
    ) -> np.ndarray:
        h = self.tile if h is None else h
        w = self.tile if w is None else w
        block = np.asarray(self.source.read(y0, x0, h, w))
        if block.ndim == 2:
            block = block[:, :, None]
        if block.shape != (h, w, self.channels) or block.dtype != self.dtype:
            raise ValueError(
                f"the slide source returned {block.dtype} {block.shape} for a {h} x {w} region, "
                f"expected {self.dtype} {(h, w, self.channels)}"
            )
        return block

    def close(self) -> None:
        """Delete the scratch files (also when the export stopped half way)."""
        for grid in self._sums.values():
            grid.close()
        self._sums.clear()
        self._tmp.cleanup()

    def __enter__(self) -> StreamingPyramid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _positions(level: Level) -> Iterator[tuple[int, int]]:
    for i in range(level.tiles_y):
        for j in range(level.tiles_x):
            yield i, j
