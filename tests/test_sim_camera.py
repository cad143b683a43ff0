"""Simulated sensor and camera: photon statistics, ADC, vignetting, JPEG, clock and metadata."""

from __future__ import annotations

import time

import numpy as np
import pytest

from slidescan.hardware.base import Camera
from slidescan.hardware.sim import SimCameraConfig, SimConfig, build_simulator
from slidescan.hardware.sim.bayer import demosaic_bilinear, mosaic
from slidescan.hardware.sim.camera import SensorModel


def _sensor(**kw) -> SensorModel:
    base = {"width": 128, "height": 128, "vignetting": 0.0}
    return SensorModel(SimCameraConfig(**(base | kw)))


def _flat(value: float, channels: int = 3) -> np.ndarray:
    return np.full((128, 128, channels), value, np.float32)


def test_photon_transfer_mean_and_variance():
    """Mean = e * k, variance = (e + read^2) k^2 + 1/12 (rounding), k = ADU per electron."""
    s = _sensor(bit_depth=12, read_noise_e=3.0)
    e = 0.5 * s.config.photon_flux_e_per_ms * 10.0
    k = 4095 / s.config.full_well_e
    frame = s.digitise(_flat(0.5), 10.0, 1.0, np.random.default_rng(0)).astype(float)
    assert frame.mean() == pytest.approx(e * k, rel=0.002)
    assert frame.var() == pytest.approx((e + 9.0) * k * k + 1 / 12, rel=0.05)


def test_dim_pixels_use_exact_poisson_statistics():
    s = _sensor(bit_depth=16, full_well_e=65535.0, read_noise_e=0.3, photon_flux_e_per_ms=0.5)
    frame = s.digitise(_flat(1.0), 10.0, 1.0, np.random.default_rng(1)).astype(float)
    assert frame.mean() == pytest.approx(5.0, rel=0.03)
    assert frame.var() == pytest.approx(5.0 + 0.09 + 1 / 12, rel=0.08)
    # Poisson counts are whole electrons: with tiny read noise most values land on integers
    # and the distribution is skewed like Poisson(5) (third central moment = mean)
    skew = np.mean((frame - frame.mean()) ** 3)
    assert skew == pytest.approx(5.0, rel=0.25)


def test_signal_scales_with_exposure_and_gain_and_saturates():
    s = _sensor(bit_depth=12)
    a = s.digitise(_flat(0.3), 5.0).astype(float).mean()
    b = s.digitise(_flat(0.3), 10.0).astype(float).mean()
    assert b == pytest.approx(2 * a, rel=0.01)
    assert s.digitise(_flat(0.3), 5.0, gain=2.0).astype(float).mean() == pytest.approx(b, rel=0.01)
    assert s.digitise(_flat(1.0), 1000.0).max() == 4095
    assert s.digitise(_flat(1.0), 1000.0).min() == 4095


def test_bit_depth_and_dtype():
    for bits, dtype in ((8, np.uint8), (10, np.uint16), (12, np.uint16), (16, np.uint16)):
        s = _sensor(bit_depth=bits)
        f = s.digitise(_flat(1.0), 1000.0)
        assert f.dtype == dtype and int(f.max()) == 2**bits - 1


def test_vignetting_darkens_the_corners_by_the_configured_fraction():
    s = _sensor(vignetting=0.2, bit_depth=16)
    f = s.digitise(_flat(0.8), 10.0).astype(float)
    centre = f[63:65, 63:65].mean()
    assert f[0, 0, 0] / centre == pytest.approx(0.8, abs=0.01)
    assert f[0, 64, 0] > f[0, 0, 0]


def test_mono_sensor_sees_the_mean_of_the_bands():
    s = _sensor(channels=1, bit_depth=16)
    rgb = np.stack([_flat(0.2, 1)[..., 0], _flat(0.4, 1)[..., 0], _flat(0.9, 1)[..., 0]], -1)
    f = s.digitise(rgb, 10.0)
    assert f.shape == (128, 128)
    ref = s.digitise(_flat(0.5), 10.0)[..., 0]
    assert np.abs(f.astype(int) - ref).max() <= 1  # float rounding of the mean


def test_jpeg_round_trip_is_lossy_but_close():
    raw = _sensor(bit_depth=8)
    jpg = _sensor(bit_depth=8, jpeg_quality=40)
    y, x = np.mgrid[0:128, 0:128] / 128.0
    smooth = 0.5 + 0.3 * np.sin(9 * x) * np.cos(7 * y)
    t = np.stack([smooth, smooth**2, 1 - smooth / 2], -1).astype(np.float32)
    a, b = raw.digitise(t, 10.0), jpg.digitise(t, 10.0)
    assert b.dtype == np.uint8 and b.shape == a.shape
    diff = np.abs(a.astype(int) - b)
    assert diff.max() > 0 and diff.mean() < 3
    assert b.mean() == pytest.approx(a.mean(), abs=1)


def test_noise_is_seeded():
    s = _sensor()
    a = s.digitise(_flat(0.5), 10.0, 1.0, np.random.default_rng(7))
    b = s.digitise(_flat(0.5), 10.0, 1.0, np.random.default_rng(7))
    c = s.digitise(_flat(0.5), 10.0, 1.0, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bayer_mosaic_keeps_one_colour_per_pixel_and_demosaicing_interpolates_bilinearly():
    rng = np.random.default_rng(2)
    rgb = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
    raw = mosaic(rgb, "GRBG")
    assert raw[0, 0] == rgb[0, 0, 1] and raw[0, 1] == rgb[0, 1, 0] and raw[1, 0] == rgb[1, 0, 2]
    out = demosaic_bilinear(raw, "GRBG")
    assert out[0, 1, 0] == raw[0, 1]  # a pixel's own colour is kept
    # inside the frame: green at a red pixel is the mean of its four green neighbours; red at
    # a blue pixel the mean of its four diagonal red neighbours
    assert out[2, 3, 1] == pytest.approx((raw[1, 3] + raw[3, 3] + raw[2, 2] + raw[2, 4]) / 4)
    assert out[3, 2, 0] == pytest.approx((raw[2, 1] + raw[2, 3] + raw[4, 1] + raw[4, 3]) / 4)
    flat = np.full((5, 7, 3), (10.0, 20.0, 30.0), np.float32)
    assert np.array_equal(demosaic_bilinear(mosaic(flat, "BGGR"), "BGGR"), flat)  # edges too
    with pytest.raises(ValueError, match="unknown Bayer pattern"):
        mosaic(rgb, "RGBG")


def test_a_bayer_sensor_spreads_each_pixels_noise_over_its_neighbours():
    """One-chip colour camera: noise drawn per mosaic pixel, then interpolated, so the
    interpolated channels' noise is smaller and correlated between neighbours."""
    rng = np.random.default_rng(3)
    plain = _sensor(read_noise_e=3.0).digitise(_flat(0.5), 10.0, 1.0, rng).astype(float)
    cfa = _sensor(read_noise_e=3.0, bayer="RGGB").digitise(_flat(0.5), 10.0, 1.0, rng)
    cfa = cfa.astype(float)
    assert cfa.dtype == plain.dtype and cfa.shape == plain.shape
    assert cfa.mean() == pytest.approx(plain.mean(), abs=0.1)
    # red is measured on a quarter of the pixels, the mean of 2 on half, of 4 on a quarter:
    # variance 1/4 + 1/2 * 1/2 + 1/4 * 1/4 = 0.5625 of a measured pixel's (std 0.75), plus
    # the rounding's 1/12 ADU^2 on both
    red = cfa[1:-1, 1:-1, 0]
    ratio = red.std() / plain[1:-1, 1:-1, 0].std()
    assert ratio == pytest.approx(0.76, abs=0.04)

    def neighbour_corr(ch: np.ndarray) -> float:
        d = ch - ch.mean()
        return float((d[:, :-1] * d[:, 1:]).mean() / d.var())

    assert abs(neighbour_corr(plain[..., 0])) < 0.05
    assert neighbour_corr(red) > 0.3
    with pytest.raises(ValueError, match="bayer needs channels 3"):
        SimCameraConfig(channels=1, bayer="RGGB")


@pytest.fixture(scope="module")
def lowcost():
    return build_simulator(
        SimConfig(
            seed=2,
            camera=SimCameraConfig(width=96, height=96, stream_interval_s=0.0),
            stage={"preset": "lowcost", "z_repeatability_um": 0.0},
        )
    )


def test_camera_contract_and_clock(lowcost):
    cam = lowcost.camera
    assert isinstance(cam, Camera)
    assert cam.shape == (96, 96, 3) and cam.dtype == np.uint8
    assert cam.pixel_size_um == pytest.approx(6.5 / 20)
    t0 = lowcost.now()
    frame = lowcost.snap()
    assert lowcost.now() - t0 == pytest.approx((cam.exposure_ms + 8.0) / 1000)
    assert frame.timestamp == lowcost.now() and frame.image.shape == cam.shape
    commercial = build_simulator(SimConfig(camera=SimCameraConfig(width=64, height=64)))
    t0 = commercial.now()
    commercial.snap()
    assert commercial.now() - t0 == pytest.approx((0.1 + 8.0) / 1000)  # strobed


def test_frames_record_truth_and_the_defocus_really_reached(lowcost):
    x0, y0, x1, y1 = lowcost.slide_bounds_um
    lowcost.move_xy((x0 + x1) / 2, (y0 + y1) / 2)
    z = round(lowcost.get_z())
    lowcost.move_z(z + 10.0)
    lowcost.move_z(z)  # down: 3 um of backlash stay in the true position
    frame = lowcost.snap()
    true_z = lowcost.sim_stage.true_position().z
    assert frame.position.z == pytest.approx(z)
    assert true_z == pytest.approx(z + 3.0)
    truth = frame.meta["true_focus_um"]
    assert truth == pytest.approx(
        lowcost.true_focus_um(frame.meta["true_position_um"][0], frame.meta["true_position_um"][1])
    )
    assert frame.meta["defocus_um"] == pytest.approx(true_z - truth)


def test_longer_exposure_brightens_snaps(lowcost):
    cam = lowcost.camera
    cam.exposure_ms = 5.0
    dim = lowcost.snap().image.mean()
    cam.exposure_ms = 10.0
    bright = lowcost.snap().image.mean()
    assert bright == pytest.approx(2 * dim, rel=0.05)


def test_stream_delivers_frames(lowcost):
    cam = lowcost.camera
    cam.start_stream()
    try:
        deadline = time.monotonic() + 10.0
        while cam.frames_streamed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        cam.stop_stream()
    assert cam.stream_error is None
    assert cam.frames_streamed >= 2 and cam.latest_frame() is not None
