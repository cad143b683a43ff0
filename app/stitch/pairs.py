"""Registering every pair of grid neighbours of a scan, reading each tile about once.

Pairs go in row-major order of their first tile (right neighbour, then the one below), and the
grey images live in a small least-recently-used cache of about two grid rows, as float16
(a 1024 x 1024 tile is 2 MB; its 0.125 steps at 255 are far below the camera's noise), so
memory stays flat however many rows the scan has.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slidescan.app.stitch.geometry import TileLayout
from slidescan.app.stitch.register import PairShift, RegistrationParams, grey, register_pair

#: progress(done, total)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RegisteredPairs:
    """Aligned per pair: `pairs` (p, 2) layout positions (i, j); `shifts` (p, 2) dx, dy of
    j's top-left minus i's (NaN when refused); `ncc`, `reason` ("" when registered)."""

    pairs: np.ndarray
    shifts: np.ndarray
    ncc: np.ndarray
    reason: np.ndarray
    seconds: float

    @property
    def registered(self) -> np.ndarray:
        return np.all(np.isfinite(self.shifts), axis=1)

    def refusals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.reason[~self.registered]:
            out[str(r)] = out.get(str(r), 0) + 1
        return out


class GreyCache:
    """Grey tiles by file row, read through `load(row)`, made grey by `prepare`, and kept
    least recently used."""

    def __init__(
        self,
        load: Callable[[int], np.ndarray],
        capacity: int,
        prepare: Callable[[np.ndarray], np.ndarray] = grey,
    ) -> None:
        self._load = load
        self._prepare = prepare
        self._capacity = max(2, capacity)
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self.reads = 0

    def get(self, row: int) -> np.ndarray:
        if row in self._items:
            self._items.move_to_end(row)
            return self._items[row]
        image = self._prepare(self._load(row)).astype(np.float16)
        self.reads += 1
        self._items[row] = image
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return image


def register_layout(
    layout: TileLayout,
    load: Callable[[int], np.ndarray],
    radius_px: float,
    params: RegistrationParams | None = None,
    progress: Progress | None = None,
    prepare: Callable[[np.ndarray], np.ndarray] = grey,
) -> RegisteredPairs:
    """Register every grid-neighbour pair of `layout`; `load(file_row)` gives a tile's image
    and `prepare` what registration looks at (grey, flat-field corrected)."""
    t0 = time.perf_counter()
    pairs = layout.neighbour_pairs()
    cols = int(np.ptp(layout.grid[:, 1])) + 1 if layout.n else 1
    cache = GreyCache(load, 2 * cols + 4, prepare)
    shifts = np.full((len(pairs), 2), np.nan)
    nccs = np.zeros(len(pairs), np.float32)
    reasons = np.full(len(pairs), "", dtype=object)
    for k, (i, j) in enumerate(pairs):
        expected = layout.stage_px[j] - layout.stage_px[i]
        a = cache.get(int(layout.rows[i]))
        b = cache.get(int(layout.rows[j]))
        result: PairShift = register_pair(a, b, (expected[0], expected[1]), radius_px, params)
        if result.ok:
            shifts[k] = (result.dx, result.dy)
        nccs[k] = result.ncc
        reasons[k] = result.reason
        if progress is not None:
            progress(k + 1, len(pairs))
    return RegisteredPairs(
        pairs=np.asarray(pairs, np.int64).reshape(-1, 2),
        shifts=shifts,
        ncc=nccs,
        reason=reasons.astype(str),
        seconds=time.perf_counter() - t0,
    )
