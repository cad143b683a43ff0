"""The mosaic read region by region: feathering, what a region equals, what it touches."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from slidescan.app.stitch.blend import HARD, feather_weights, normalise
from slidescan.app.stitch.mosaic import TileMosaic
from slidescan.app.stitch.seams import paste_labels, seam_visibility
from slidescan.app.stitch.source import MosaicSource, SlideInfo

INFO = SlideInfo(pixel_size_um=0.5)


def _tile(key: int, shape=(40, 50, 3)) -> np.ndarray:
    return np.random.default_rng(key).integers(0, 200, shape, dtype=np.uint8)


def _mosaic(xy, shape=(40, 50, 3), **kw) -> TileMosaic:
    keys = np.arange(len(xy))
    return TileMosaic(np.asarray(xy, float), keys, lambda k: _tile(int(k), shape), shape,
                      np.uint8, INFO, **kw)  # fmt: skip


def test_feather_weights_of_overlapping_tiles_sum_to_one():
    canvas = (100, 120)
    places = [(0.0, 0.0), (0.0, 41.3), (33.6, 2.2), (35.1, 44.8)]  # (y, x), fractional
    shape = (45, 55)
    weights = []
    for y, x in places:
        full = np.zeros(canvas, np.float32)
        iy, ix = int(np.floor(y)), int(np.floor(x))
        w = feather_weights(shape, (y - iy, x - ix), (shape[0] + 1, shape[1] + 1))
        h, wd = min(w.shape[0], canvas[0] - iy), min(w.shape[1], canvas[1] - ix)
        full[iy : iy + h, ix : ix + wd] = w[:h, :wd]
        weights.append(full)
    total = np.sum(normalise(weights), axis=0)
    covered = np.sum(weights, axis=0) > 0
    assert covered.mean() > 0.5
    np.testing.assert_allclose(total[covered], 1.0, atol=1e-6)
    assert (total[~covered] == 0).all()


def test_feathered_mosaic_of_one_flat_field_is_flat():
    """Tiles of one constant value placed at fractional positions compose to that value
    everywhere they cover: the weights are a partition of unity, resampling keeps a constant."""
    xy = [(0.0, 0.0), (41.3, 0.4), (0.7, 33.2), (40.9, 34.6)]
    m = TileMosaic(np.asarray(xy), np.arange(4), lambda k: np.full((40, 50, 3), 120, np.uint8),
                   (40, 50, 3), np.uint8, INFO)  # fmt: skip
    out = m.read(0, 0, *m.shape[:2])
    covered = out[:, :, 0] != 255
    assert covered.mean() > 0.9
    assert (out[covered] == 120).all()


def test_read_equals_the_tiles_where_they_do_not_overlap():
    xy = [(0, 0), (45, 0), (0, 36), (45, 36)]  # 5 px and 4 px overlaps
    m = _mosaic(xy)
    assert isinstance(m, MosaicSource)
    assert m.shape == (76, 95, 3) and m.dtype == np.uint8
    out = m.read(0, 0, 76, 95)
    np.testing.assert_array_equal(out[:36, :45], _tile(0)[:36, :45])
    np.testing.assert_array_equal(out[:36, 50:], _tile(1)[:36, 5:])
    np.testing.assert_array_equal(out[40:, :45], _tile(2)[4:, :45])
    np.testing.assert_array_equal(out[40:, 50:], _tile(3)[4:, 5:])
    # an off-centre window reads the same pixels as the whole
    np.testing.assert_array_equal(m.read(10, 20, 50, 60), out[10:60, 20:80])
    # in the overlaps: between the two tiles
    lo = np.minimum(_tile(0)[:36, 45:], _tile(1)[:36, :5])
    hi = np.maximum(_tile(0)[:36, 45:], _tile(1)[:36, :5])
    assert ((out[:36, 45:50] >= lo) & (out[:36, 45:50] <= hi)).all()


def test_flatfield_and_white_balance_are_applied_per_tile():
    flat = np.linspace(0.8, 1.2, 50, dtype=np.float32)[None, :, None] * np.ones((40, 1, 3))
    flat = flat.astype(np.float32)
    gains = np.array([1.1, 1.0, 0.9], np.float32)
    m = _mosaic([(0, 0)], flatfield=flat, gains=gains)
    expected = _tile(0).astype(np.float32) / flat * gains
    expected = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(m.read(0, 0, 40, 50), expected)


def test_background_is_white_and_regions_may_lie_outside():
    m = _mosaic([(0, 0), (100, 0)])  # a gap between the tiles
    out = m.read(-5, 40, 20, 80)
    assert (out[:5] == 255).all()  # above the mosaic
    assert (out[5:, 15:55] == 255).all()  # between the tiles
    np.testing.assert_array_equal(out[5:, :10], _tile(0)[:15, 40:50])


def test_fractional_placement_moves_the_tile_by_that_much():
    smooth = np.tile(np.linspace(0, 200, 50, dtype=np.float32), (40, 1))
    img = np.repeat(smooth[:, :, None], 3, axis=2).astype(np.uint8)
    m = TileMosaic(np.array([[10.25, 0.0]]), np.arange(1), lambda k: img, (40, 50, 3),
                   np.uint8, INFO)  # fmt: skip
    out = m.read(0, 10, 40, 51).astype(float)
    # column j of the mosaic (from 10) samples the tile at j - 0.25: a ramp of 200/49 per px
    ramp = img[0, :, 0].astype(float)
    expected = np.interp(np.arange(5, 45) - 0.25, np.arange(50), ramp)
    np.testing.assert_allclose(out[20, 5:45, 0], expected, atol=0.6)


def test_reading_a_region_of_a_huge_slide_touches_only_the_tiles_there():
    """A 300 x 300-tile slide (about 13k x 13k px of 48 px tiles): memory for a region does
    not depend on the slide, and far tiles are never read."""
    n, step, size = 300, 44, (48, 48, 3)
    grid = np.array([(c * step, r * step) for r in range(n) for c in range(n)], float)
    asked: list[int] = []

    def load(key: int) -> np.ndarray:
        asked.append(int(key))
        return _tile(int(key) % 997, size)

    small = TileMosaic(grid[:100], np.arange(100), load, size, np.uint8, INFO)
    huge = TileMosaic(grid, np.arange(len(grid)), load, size, np.uint8, INFO)
    assert huge.shape[:2] == ((n - 1) * step + 48, (n - 1) * step + 48)

    def peak(mosaic: TileMosaic, y0: int, x0: int) -> int:
        tracemalloc.start()
        mosaic.read(y0, x0, 200, 200)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    asked.clear()
    top_huge = peak(huge, 6000, 6000)
    rows = {k // n for k in asked}
    cols = {k % n for k in asked}
    assert 9 <= len(asked) <= 36
    assert max(rows) - min(rows) <= 6 and max(cols) - min(cols) <= 6  # only nearby tiles
    top_small = peak(small, 100, 100)
    assert top_huge < 2 * top_small + 4_000_000  # the slide's size does not show


def test_cache_reads_each_tile_once_when_reading_in_strips():
    xy = [(c * 45.0, r * 36.0) for r in range(4) for c in range(5)]
    m = _mosaic(xy)
    h, w = m.shape[:2]
    for y0 in range(0, h, 16):
        m.read(y0, 0, 16, w)
    assert m.loads == len(xy)


def test_read_scaled_is_the_mosaic_at_a_coarser_level():
    xy = [(c * 45.0, r * 36.0) for r in range(3) for c in range(3)]
    smooth = [np.full((40, 50, 3), 40 + 20 * k, np.uint8) for k in range(9)]
    m = TileMosaic(np.asarray(xy), np.arange(9), lambda k: smooth[int(k)], (40, 50, 3),
                   np.uint8, INFO)  # fmt: skip
    full = m.read(0, 0, 112, 140).astype(float)
    coarse = m.read_scaled(0, 0, 28, 35, 4).astype(float)
    reference = full.reshape(28, 4, 35, 4, 3).mean(axis=(1, 3))
    assert np.median(np.abs(coarse - reference)) <= 1.0
    with pytest.raises(ValueError):
        m.read_scaled(0, 0, 2, 2, 0)


def test_seam_visibility_sees_a_step_and_not_its_absence():
    rng = np.random.default_rng(0)
    texture = rng.normal(128, 10, (80, 95, 3))
    xy = np.array([(0.0, 0.0), (45.0, 0.0)])
    labels = paste_labels(xy, (80, 50, 3), 0, 0, 80, 95)
    seamless = seam_visibility(texture, labels)["ratio"]
    stepped = texture.copy()
    stepped[:, 45:] += 15  # the second tile 15 levels brighter
    assert abs(seamless - 1) < 0.1
    assert seam_visibility(stepped, labels)["ratio"] > 1.5


def test_hard_blend_pastes_in_order():
    m = _mosaic([(0, 0), (45, 0)], blend=HARD)
    out = m.read(0, 0, 40, 95)
    np.testing.assert_array_equal(out[:, 45:], _tile(1))
    np.testing.assert_array_equal(out[:, :45], _tile(0)[:, :45])
