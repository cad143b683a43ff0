"""Focus metrics: peak at focus, fall monotonically with defocus, batch == per-image, and the
normalisations (dtype, colour, frame size) hold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from test_focus_fakes import texture

from slidescan.focus.metrics import METRICS, as_luminance_batch, get_metric

NAMES = sorted(METRICS)
#: metrics that read a colour image as its luminance (brenner_green reads the green channel)
LUMINANCE = [n for n in NAMES if n != "brenner_green"]
SIGMAS = [0.0, 0.7, 1.4, 2.1, 2.8, 3.5, 4.2]


def _stack(image: np.ndarray, sigmas=SIGMAS) -> np.ndarray:
    """Defocus series of `image` (H, W[, C]) blurred by growing Gaussians, per channel."""
    out = []
    for s in sigmas:
        sig = (s, s, 0) if image.ndim == 3 else s
        out.append(ndimage.gaussian_filter(image.astype(np.float64), sig))
    return np.stack(out)


def _tissue(tissue_dir, size: int = 256) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(sorted(tissue_dir.glob("he_*.png"))[0]), cv2.IMREAD_COLOR)
    assert bgr is not None
    h, w = bgr.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return bgr[y : y + size, x : x + size, ::-1].copy()  # RGB uint8


def _strictly_falling(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) < 0))


@pytest.mark.parametrize("name", NAMES)
def test_metric_peaks_at_focus_and_falls_with_defocus_on_texture(name):
    stack = _stack(texture(128, seed=3))
    values = get_metric(name)(stack)
    assert values.shape == (len(SIGMAS),)
    assert int(np.argmax(values)) == 0
    assert _strictly_falling(values), values


@pytest.mark.parametrize("name", NAMES)
def test_metric_falls_with_defocus_on_real_tissue_rgb(name, tissue_dir):
    rgb = _tissue(tissue_dir)
    stack = np.clip(_stack(rgb) + 0.5, 0, 255).astype(np.uint8)
    values = get_metric(name)(stack)
    assert _strictly_falling(values), values
    # A real contrast, not a rounding effect: in focus scores well above 4 px of blur.
    assert values[0] > 2.0 * values[-1]


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_per_image(name):
    stack = np.clip(_stack(texture(64, seed=5), SIGMAS[:4]) * 255, 0, 255).astype(np.uint8)
    metric = get_metric(name)
    batch = metric(stack)
    singles = np.array([metric(img) for img in stack])
    assert isinstance(metric(stack[0]), float)
    np.testing.assert_allclose(batch, singles, rtol=1e-6)


@pytest.mark.parametrize("name", LUMINANCE)
def test_colour_batch_equals_per_image_and_uses_luminance(name):
    rng = np.random.default_rng(0)
    rgb = (rng.random((3, 40, 48, 3)) * 255).astype(np.uint8)
    metric = get_metric(name)
    np.testing.assert_allclose(metric(rgb), [metric(i) for i in rgb], rtol=1e-6)
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(metric(rgb), metric(grey), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_uint8_uint16_and_float_score_alike(name):
    img = texture(64, seed=7)
    metric = get_metric(name)
    as8 = np.round(img * 255).astype(np.uint8)
    as16 = np.round(img * 65535).astype(np.uint16)
    f = metric(img)
    assert metric(as8) == pytest.approx(f, rel=0.02)
    assert metric(as16) == pytest.approx(f, rel=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_values_do_not_scale_with_frame_size(name):
    big = texture(256, seed=11)
    metric = get_metric(name)
    whole = metric(big)
    quarter = metric(big[64:192, 64:192])
    # Same texture statistics, four times fewer pixels: same score within the texture's spread.
    assert quarter == pytest.approx(whole, rel=0.25)


def test_brenner_green_reads_the_green_channel_and_follows_green_focus():
    rng = np.random.default_rng(1)
    rgb = (rng.random((2, 40, 48, 3)) * 255).astype(np.uint8)
    metric = get_metric("brenner_green")
    np.testing.assert_allclose(metric(rgb), get_metric("brenner")(rgb[..., 1]), rtol=1e-6)
    np.testing.assert_allclose(metric(rgb), [metric(i) for i in rgb], rtol=1e-6)
    # Axial colour: red sharpest on plane 2, green on plane 3, blue on plane 4 of a defocus
    # series. Luminance (red weighs 0.299, blue 0.114) peaks towards red; green on green.
    t = texture(96, seed=9)
    planes = []
    for k in range(7):
        chans = [ndimage.gaussian_filter(t, 0.2 + 1.2 * abs(k - f)) for f in (2, 3, 4)]
        planes.append(np.stack(chans, axis=-1))
    stack = np.stack(planes)
    assert int(np.argmax(metric(stack))) == 3
    green, luma = metric(stack), get_metric("brenner")(stack)
    # the red side (plane 2) scores relatively higher under luminance than under green
    assert luma[2] / luma[4] > green[2] / green[4] * 1.05


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match="known metrics: .*brenner"):
        get_metric("sharpness")


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="expected an image"):
        as_luminance_batch(np.zeros(10))
    with pytest.raises(ValueError, match="at least 3 x 3"):
        as_luminance_batch(np.zeros((2, 2)))


def test_blank_field_scores_near_zero():
    flat = np.full((64, 64), 0.5)
    for name in NAMES:
        assert get_metric(name)(flat) == pytest.approx(0.0, abs=1e-9)


def test_metric_name_type_lists_every_metric():
    from typing import get_args

    from slidescan.focus.metrics import METRICS, MetricName

    assert get_args(MetricName) == tuple(METRICS)
