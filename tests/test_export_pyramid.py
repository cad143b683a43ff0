"""The streaming pyramid (app/export/pyramid.py): every level is the exact area mean of level 0,
levels are planned to a 1-2k top, scratch files go away, cancel stops it."""

from __future__ import annotations

import numpy as np
import pytest

from slidescan.app.export.errors import ExportCancelled
from slidescan.app.export.pyramid import StreamingPyramid, plan_levels, sum_dtype
from slidescan.app.export.sources import ArraySlide, PatternSlide


def assemble(pyramid: StreamingPyramid, k: int) -> np.ndarray:
    """Level k put together from its tiles, cropped to the level's size."""
    lv = pyramid.levels[k]
    t = lv.tile
    out = np.zeros((lv.tiles_y * t, lv.tiles_x * t, pyramid.channels), pyramid.dtype)
    tiles = pyramid.tiles(k)
    for i in range(lv.tiles_y):
        for j in range(lv.tiles_x):
            out[i * t : (i + 1) * t, j * t : (j + 1) * t] = next(tiles)
    return out[: lv.height, : lv.width]


def area_mean(image: np.ndarray, k: int, glass: float) -> np.ndarray:
    """Reference: the 2^k x 2^k block mean of `image` padded with glass, rounded half up."""
    image = image if image.ndim == 3 else image[:, :, None]
    f = 2**k
    h, w, c = image.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.full((hp, wp, c), glass, np.float64)
    padded[:h, :w] = image
    mean = padded.reshape(hp // f, f, wp // f, f, c).mean(axis=(1, 3))
    return np.floor(mean + 0.5)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1000, 1237, 3), np.uint8), ((517, 771), np.uint16)],
    ids=["rgb8-odd-size", "grey16-odd-size"],
)
def test_each_level_is_the_exact_area_mean_of_level_0(shape, dtype):
    rng = np.random.default_rng(1)
    image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    glass = float(np.iinfo(dtype).max)
    with StreamingPyramid(ArraySlide(image), tile=64, top_max=60) as pyramid:
        n = len(pyramid.levels)
        assert n >= 4
        for k in range(n):
            level = assemble(pyramid, k)
            lv = pyramid.levels[k]
            assert (
                level.shape[:2]
                == (lv.height, lv.width)
                == (-(-shape[0] // 2**k), -(-shape[1] // 2**k))
            )
            np.testing.assert_array_equal(level, area_mean(image, k, glass), err_msg=f"level {k}")
        assert pyramid.done == pyramid.total


def test_rounding_at_every_halving_would_drift_and_the_pyramid_does_not():
    """Rounding each level's mean (instead of keeping sums) is off by a grey level at level 3
    on random data; the pyramid is not."""
    image = np.random.default_rng(2).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    naive = image.astype(np.float64)
    for _ in range(3):
        h, w = naive.shape[:2]
        naive = np.floor(naive.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)) + 0.5)
    exact = area_mean(image, 3, 255.0)
    assert np.abs(naive - exact).max() >= 1
    with StreamingPyramid(ArraySlide(image), tile=32, top_max=31) as pyramid:
        levels = [assemble(pyramid, k) for k in range(len(pyramid.levels))]
    np.testing.assert_array_equal(levels[3], exact)


def test_levels_are_planned_down_to_a_top_of_one_to_two_thousand_pixels():
    assert [(lv.height, lv.width) for lv in plan_levels(46000, 46000)] == [
        (46000, 46000),
        (23000, 23000),
        (11500, 11500),
        (5750, 5750),
        (2875, 2875),
        (1438, 1438),
    ]
    ten_by_ten = plan_levels(9322, 9322)  # 10 x 10 tiles of 1024 px, 10 % overlap
    assert len(ten_by_ten) == 4 and 1024 < ten_by_ten[-1].width <= 2048
    assert len(plan_levels(1500, 900)) == 1
    with pytest.raises(ValueError, match="multiple of 16"):
        plan_levels(100, 100, tile=100)


def test_sums_are_kept_in_a_type_that_cannot_overflow():
    assert sum_dtype(np.uint8, 1) == np.uint16 and sum_dtype(np.uint8, 4) == np.uint16
    assert sum_dtype(np.uint8, 5) == np.uint32 and sum_dtype(np.uint16, 1) == np.uint32
    assert sum_dtype(np.float32, 3) == np.float64
    with pytest.raises(ValueError, match="unsigned or float"):
        sum_dtype(np.int16, 1)


def test_levels_are_read_in_order_and_scratch_goes_away(tmp_path):
    image = np.zeros((300, 300, 3), np.uint8)
    pyramid = StreamingPyramid(ArraySlide(image), tile=32, top_max=50, scratch_dir=tmp_path)
    with pytest.raises(RuntimeError, match="in order"):
        pyramid.tiles(1)
    for _ in pyramid.tiles(0):
        pass
    assert any(tmp_path.iterdir())  # the reduced levels' sums wait on disk
    assert pyramid.scratch_bytes > 0
    for k in range(1, len(pyramid.levels)):
        for _ in pyramid.tiles(k):
            pass
    pyramid.close()
    assert not any(tmp_path.iterdir())


def test_cancel_stops_between_tiles_and_removes_scratch(tmp_path):
    calls = []

    def cancelled() -> bool:
        return len(calls) >= 5

    pyramid = StreamingPyramid(
        PatternSlide(1000, 1000),
        tile=128,
        top_max=200,
        scratch_dir=tmp_path,
        progress=lambda done, total: calls.append((done, total)),
        cancelled=cancelled,
    )
    with pytest.raises(ExportCancelled), pyramid:
        for _ in pyramid.tiles(0):
            pass
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5]
    assert not any(tmp_path.iterdir())


def test_a_source_returning_the_wrong_shape_is_one_clear_error():
    class Short(ArraySlide):
        def read(self, y0, x0, height, width):
            return super().read(y0, x0, height, width)[:-1]

    with (
        StreamingPyramid(Short(np.zeros((100, 100, 3), np.uint8)), tile=32) as pyramid,
        pytest.raises(ValueError, match="returned uint8"),
    ):
        next(pyramid.tiles(0))
