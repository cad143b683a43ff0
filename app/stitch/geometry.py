"""Where the tiles of a scan sit before registration: stage positions mapped to mosaic pixels,
and which tiles are grid neighbours.

Stage positions are tile centres in um. `StageToMosaic` maps stage um to mosaic pixel
coordinates; by default pixel = um / pixel_size_um along the same axes (image row 0 is the
smallest stage y, column 0 the smallest stage x: the simulator renders that way). A camera
mounted rotated or flipped gets a calibrated matrix in its place, and everything downstream
(expected overlaps, search windows, the stage prior of the placement, the truth comparison)
goes through it, so nothing else changes.

A tile's place is the mosaic coordinate of its top-left corner (pixel (0, 0)'s outer corner):
pixel (i, j) of a tile placed at (x, y) covers [x + j, x + j + 1) x [y + i, y + i + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StageToMosaic:
    """Linear map from stage um to mosaic pixels: (col, row) = matrix @ (x_um, y_um).

    The translation is left out on purpose: the mosaic's origin is chosen after placement
    (the top-left of everything placed)."""

    matrix: tuple[tuple[float, float], tuple[float, float]]

    @classmethod
    def from_pixel_size(cls, pixel_size_um: float) -> StageToMosaic:
        if not pixel_size_um > 0:
            raise ValueError(f"pixel size must be positive, got {pixel_size_um}")
        s = 1.0 / float(pixel_size_um)
        return cls(((s, 0.0), (0.0, s)))

    @property
    def m(self) -> np.ndarray:
        return np.asarray(self.matrix, np.float64)

    def to_px(self, xy_um: np.ndarray) -> np.ndarray:
        """(n, 2) stage um -> (n, 2) mosaic px (col, row)."""
        return np.asarray(xy_um, np.float64) @ self.m.T

    def to_um(self, xy_px: np.ndarray) -> np.ndarray:
        """(n, 2) mosaic px (col, row) -> (n, 2) stage um."""
        return np.asarray(xy_px, np.float64) @ np.linalg.inv(self.m).T

    def to_json(self) -> list[list[float]]:
        return [list(map(float, r)) for r in self.matrix]


@dataclass(frozen=True)
class TileLayout:
    """The tiles to stitch: the latest version of every planned tile that has an image.

    Arrays are aligned, one entry per tile: `rows` (row in /tiles), `index` (planned index),
    `grid` (planned row, col), `stage_px` (top-left from the stage's reported position),
    `true_px` (top-left from the simulator's true position; NaN on hardware), all (n, 2)
    as (x, y) in mosaic pixels before the origin shift."""

    rows: np.ndarray
    index: np.ndarray
    grid: np.ndarray
    stage_px: np.ndarray
    true_px: np.ndarray
    tile_shape: tuple[int, ...]
    transform: StageToMosaic

    @property
    def n(self) -> int:
        return int(self.rows.size)

    @property
    def size_px(self) -> np.ndarray:
        """(width, height) of a tile in pixels."""
        return np.array([self.tile_shape[1], self.tile_shape[0]], np.float64)

    @property
    def has_truth(self) -> bool:
        return self.n > 0 and bool(np.all(np.isfinite(self.true_px)))

    @classmethod
    def from_records(
        cls, records: np.ndarray, tile_shape: tuple[int, ...], transform: StageToMosaic
    ) -> TileLayout:
        """`records`: committed records with a `superseded` column (ScanReader.tiles), in file
        row order. Superseded and skipped (empty glass) tiles are left out."""
        rows = np.flatnonzero(~records["superseded"] & ~records["skipped"])
        rec = records[rows]
        stage = np.stack([rec["stage_x_um"], rec["stage_y_um"]], axis=1).astype(np.float64)
        planned = np.stack([rec["x_um"], rec["y_um"]], axis=1).astype(np.float64)
        stage = np.where(np.isfinite(stage), stage, planned)  # version 1 files
        true = np.stack([rec["true_x_um"], rec["true_y_um"]], axis=1).astype(np.float64)
        half = np.array([tile_shape[1], tile_shape[0]], np.float64) / 2.0
        return cls(
            rows=rows.astype(np.int64),
            index=rec["index"].astype(np.int64),
            grid=np.stack([rec["row"], rec["col"]], axis=1).astype(np.int64),
            stage_px=transform.to_px(stage) - half,
            true_px=transform.to_px(true) - half,
            tile_shape=tuple(int(s) for s in tile_shape),
            transform=transform,
        )

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """(i, j) positions in this layout of grid neighbours: j one column right of i or one
        row below it, in row-major order of i."""
        where = {(int(r), int(c)): k for k, (r, c) in enumerate(self.grid)}
        pairs = []
        for k in np.lexsort((self.grid[:, 1], self.grid[:, 0])):
            r, c = (int(v) for v in self.grid[k])
            for dr, dc in ((0, 1), (1, 0)):
                other = where.get((r + dr, c + dc))
                if other is not None:
                    pairs.append((int(k), other))
        return pairs
