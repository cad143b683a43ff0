"""A pyramid level's pixel sums kept on disk while the level above it is written.

A TIFF writes level 0 first, and level 1 can only be made once level 0 has been read, so the
reduced levels wait somewhere. Holding them in memory would grow with the slide; a raw file
on disk does not. The file is a grid of square blocks, one block per tile of the level above
(the 2 x 2 sums of that tile), each block contiguous, so a block is one seek and one write and
a tile of this level is four reads. Plain file reads and writes, not a memory map: the pages
stay in the operating system's cache and never count towards the process's memory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np


class BlockGrid:
    """`rows` x `cols` blocks of (`block`, `block`, `channels`) `dtype` values in one file.

    Blocks outside the grid read as `fill` (the sums of background), so a tile at the slide's
    bottom or right edge is padded with glass, as the level-0 source is.
    """

    def __init__(
        self,
        path: Path,
        rows: int,
        cols: int,
        block: int,
        channels: int,
        dtype: np.dtype,
        fill: float,
    ) -> None:
        self.path = path
        self.rows, self.cols, self.block, self.channels = rows, cols, block, channels
        self.dtype = np.dtype(dtype)
        self.shape = (block, block, channels)
        self.block_bytes = block * block * channels * self.dtype.itemsize
        self._fill = np.full(self.shape, fill, self.dtype)
        self._fh = path.open("w+b")
        self._fh.truncate(rows * cols * self.block_bytes)

    def put(self, i: int, j: int, values: np.ndarray) -> None:
        """Store block (i, j)."""
        if values.shape != self.shape or values.dtype != self.dtype:
            raise ValueError(f"block {values.dtype} {values.shape} != {self.dtype} {self.shape}")
        self._fh.seek(self._offset(i, j))
        self._fh.write(np.ascontiguousarray(values).data)

    def get(self, i: int, j: int) -> np.ndarray:
        """Block (i, j), or the fill outside the grid."""
        if not (0 <= i < self.rows and 0 <= j < self.cols):
            return self._fill
        self._fh.seek(self._offset(i, j))
        out = np.empty(self.shape, self.dtype)
        if self._fh.readinto(out.data) != self.block_bytes:
            raise OSError(f"{self.path}: scratch block ({i}, {j}) is short")
        return out

    def square(self, i: int, j: int) -> np.ndarray:
        """The 2 x 2 blocks (2i..2i+1, 2j..2j+1) as one (2 block, 2 block, channels) array."""
        b = self.block
        out = np.empty((2 * b, 2 * b, self.channels), self.dtype)
        for di in (0, 1):
            for dj in (0, 1):
                out[di * b : (di + 1) * b, dj * b : (dj + 1) * b] = self.get(2 * i + di, 2 * j + dj)
        return out

    @property
    def nbytes(self) -> int:
        return self.rows * self.cols * self.block_bytes

    def close(self) -> None:
        """Close and delete the file."""
        if not self._fh.closed:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _offset(self, i: int, j: int) -> int:
        if not (0 <= i < self.rows and 0 <= j < self.cols):
            raise IndexError(f"block ({i}, {j}) outside {self.rows} x {self.cols}")
        return (i * self.cols + j) * self.block_bytes
