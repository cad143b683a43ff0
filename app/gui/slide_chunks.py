"""The slide viewer's pieces of the pyramid: which level a zoom needs, which chunks of it are
on screen, and the cache of chunks read (Qt-free).

Level `f` (a power of two) is the mosaic downsampled f times: its pixel (i, j) covers level-0
pixels [i f, (i + 1) f) x [j f, (j + 1) f), what `ScanMosaic.read_scaled(.., f)` returns. Each
level is cut into square chunks of `CHUNK` level pixels; a chunk is read once and kept in a
cache bounded in bytes. The level shown is the coarsest whose pixels are still no larger than
a screen pixel, so the screen never shows fewer pixels than it has, and reading a screenful
costs about the same at every zoom.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Side of a chunk, in pixels of its level.
CHUNK = 512
#: Default cache budget (chunks of 512 x 512 RGB are 0.75 MB: about 15 screenfuls).
CACHE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, order=True)
class ChunkKey:
    factor: int
    row: int
    col: int

    def level_rect(self, shape: tuple[int, ...], chunk: int = CHUNK) -> tuple[int, int, int, int]:
        """(y0, x0, height, width) in pixels of the chunk's level, clipped to the level."""
        lh, lw = level_shape(shape, self.factor)
        y0, x0 = self.row * chunk, self.col * chunk
        return y0, x0, max(0, min(chunk, lh - y0)), max(0, min(chunk, lw - x0))

    def rect(self, shape: tuple[int, ...], chunk: int = CHUNK) -> tuple[int, int, int, int]:
        """(x, y, width, height) in level-0 pixels: where the chunk is drawn."""
        y0, x0, h, w = self.level_rect(shape, chunk)
        f = self.factor
        return x0 * f, y0 * f, w * f, h * f


def level_shape(shape: tuple[int, ...], factor: int) -> tuple[int, int]:
    """(height, width) of level `factor` (partial pixels at the far edges count)."""
    return math.ceil(shape[0] / factor), math.ceil(shape[1] / factor)


def coarsest_factor(shape: tuple[int, ...], chunk: int = CHUNK) -> int:
    """The smallest power of two at which the whole slide fits one chunk."""
    f = 1
    while max(level_shape(shape, f)) > chunk:
        f *= 2
    return f


def factor_for(level0_per_screen_px: float, coarsest: int) -> int:
    """The level for a zoom where one screen pixel spans `level0_per_screen_px` level-0
    pixels: the largest power of two not above it, within [1, coarsest]."""
    if not level0_per_screen_px > 1.0:
        return 1
    f = 2 ** int(math.floor(math.log2(level0_per_screen_px) + 1e-9))
    return int(min(max(f, 1), coarsest))


def visible_chunks(
    view: tuple[float, float, float, float],
    factor: int,
    shape: tuple[int, ...],
    chunk: int = CHUNK,
) -> list[ChunkKey]:
    """The chunks of level `factor` that meet `view` (x0, y0, x1, y1 in level-0 pixels),
    nearest the view's centre first (read first)."""
    lh, lw = level_shape(shape, factor)
    span = chunk * factor
    x0, y0, x1, y1 = view
    c0, c1 = max(0, int(x0 // span)), min(math.ceil(lw / chunk) - 1, int(x1 // span))
    r0, r1 = max(0, int(y0 // span)), min(math.ceil(lh / chunk) - 1, int(y1 // span))
    if c1 < c0 or r1 < r0:
        return []
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    keys = [ChunkKey(factor, r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
    return sorted(
        keys, key=lambda k: ((k.col + 0.5) * span - cx) ** 2 + ((k.row + 0.5) * span - cy) ** 2
    )


class ChunkCache:
    """Chunks read, least recently used dropped first once over `max_bytes`."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[ChunkKey, np.ndarray] = OrderedDict()
        self.bytes = 0

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ChunkKey]:
        return iter(list(self._items))

    def get(self, key: ChunkKey) -> np.ndarray | None:
        image = self._items.get(key)
        if image is not None:
            self._items.move_to_end(key)
        return image

    def put(self, key: ChunkKey, image: np.ndarray) -> list[ChunkKey]:
        """Keep `image`; returns the keys dropped to stay within the budget."""
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes
        self._items[key] = image
        self.bytes += image.nbytes
        dropped = []
        while self.bytes > self.max_bytes and len(self._items) > 1:
            k, v = self._items.popitem(last=False)
            self.bytes -= v.nbytes
            dropped.append(k)
        return dropped

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
