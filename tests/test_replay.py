"""The stack-replay microscope: interpolation, refusal outside the stack, timing, protocol."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from scipy import ndimage

from slidescan.focus.protocol import FocusDevice
from slidescan.hardware.errors import LimitExceeded
from slidescan.hardware.optics import OpticalPath, get_objective
from slidescan.hardware.replay import ReplayMicroscope, ReplayTiming, timing_for
from slidescan.hardware.stackfile import FocusStack, open_stacks, write_stacks

OPTICS = OpticalPath(get_objective("20x/0.75"))


def _blur_stack(tissue_dir, truth=2.0, step=0.5, half=6, dtype=np.uint8) -> FocusStack:
    """A stack made by Gaussian-blurring a real tissue crop by |defocus| (sharp at truth)."""
    grey = cv2.imread(str(tissue_dir / "he_nanozoomer_0.227um.png"), cv2.IMREAD_GRAYSCALE)
    field = grey[200:264, 300:380].astype(np.float64)
    z = truth + step * np.arange(-half, half + 1)
    planes = [ndimage.gaussian_filter(field, sigma=1.5 * abs(d)) for d in z - truth]
    images = np.stack(planes)
    if dtype == np.uint16:
        images = images * 257
    images = np.clip(np.rint(images), 0, np.iinfo(dtype).max).astype(dtype)
    return FocusStack("f0", images, z, true_focus_um=truth, meta={"x_um": 100.0, "y_um": 50.0})


@pytest.fixture(scope="module")
def stack(tissue_dir):
    return _blur_stack(tissue_dir)


def test_is_a_focus_device_with_the_stack_range_as_z_limits(stack):
    scope = ReplayMicroscope(stack, OPTICS)
    assert isinstance(scope, FocusDevice)
    assert scope.z_limits == (stack.z_um[0], stack.z_um[-1])
    assert scope.get_z() == pytest.approx(np.mean(scope.z_limits))
    assert scope.optics.depth_of_field_um == pytest.approx(0.81, abs=0.01)


def test_on_a_plane_returns_that_plane_exactly(stack):
    scope = ReplayMicroscope(stack, OPTICS)
    for k in (0, 5, len(stack.z_um) - 1):
        scope.move_z(float(stack.z_um[k]))
        frame = scope.snap()
        np.testing.assert_array_equal(frame.image, stack.images[k])
        assert frame.image.dtype == stack.images.dtype
        assert frame.meta["defocus_um"] == pytest.approx(stack.z_um[k] - 2.0)
        assert frame.meta["true_focus_um"] == 2.0
        assert frame.position.as_tuple() == (100.0, 50.0, stack.z_um[k])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_midway_returns_the_mean_and_quarter_way_the_weighted_mix(tissue_dir, dtype):
    stack = _blur_stack(tissue_dir, dtype=dtype)
    scope = ReplayMicroscope(stack, OPTICS)
    a, b = stack.images[3].astype(np.float64), stack.images[4].astype(np.float64)
    scope.move_z(float((stack.z_um[3] + stack.z_um[4]) / 2))
    np.testing.assert_array_equal(scope.snap().image, np.rint((a + b) / 2).astype(dtype))
    scope.move_z(float(stack.z_um[3] + 0.25 * (stack.z_um[4] - stack.z_um[3])))
    expected = np.rint(0.75 * a + 0.25 * b)
    got = scope.snap().image.astype(np.float64)
    assert np.abs(got - expected).max() <= 1  # float32 mixing may round a half differently


def test_decreasing_stack_is_replayed_by_z_not_by_index(stack):
    flipped = FocusStack("down", stack.images[::-1].copy(), stack.z_um[::-1].copy(), 2.0)
    scope = ReplayMicroscope(flipped, OPTICS)
    scope.move_z(float(stack.z_um[2]))
    np.testing.assert_array_equal(scope.snap().image, stack.images[2])


def test_sharpest_replayed_frame_is_at_the_true_focus(stack):
    """Physics sanity of the fixture and the replay: variance of the Laplacian peaks at truth."""
    scope = ReplayMicroscope(stack, OPTICS)
    zs = np.linspace(*scope.z_limits, 41)
    sharp = []
    for z in zs:
        scope.move_z(float(z))
        sharp.append(ndimage.laplace(scope.snap().image.astype(float)).var())
    assert zs[int(np.argmax(sharp))] == pytest.approx(2.0)


def test_refuses_z_outside_the_stack_and_does_not_move(stack):
    scope = ReplayMicroscope(stack, OPTICS, start_z_um=1.0)
    lo, hi = scope.z_limits
    for bad in (hi + 0.01, lo - 5.0, float("nan")):
        with pytest.raises(LimitExceeded, match="outside"):
            scope.move_z(bad)
    with pytest.raises(LimitExceeded):
        scope.stage.move_to(z=hi + 1.0)
    with pytest.raises(LimitExceeded):
        scope.stage.move_to(x=0.0)  # x and y are fixed at the stack's field
    assert scope.get_z() == 1.0 and scope.now() == 0.0
    with pytest.raises(LimitExceeded, match="outside"):
        ReplayMicroscope(stack, OPTICS, start_z_um=hi + 1)


def test_virtual_clock_follows_the_timing_model(stack):
    timing = ReplayTiming(
        z_speed_um_per_s=100.0,
        z_accel_um_per_s2=None,
        z_settle_s=0.05,
        exposure_ms=20.0,
        readout_s=0.01,
    )
    scope = ReplayMicroscope(stack, OPTICS, timing=timing, start_z_um=0.0)
    scope.move_z(2.0)  # 2 um at 100 um/s + settle
    assert scope.now() == pytest.approx(0.02 + 0.05)
    scope.move_z(2.0)  # no move, no time
    assert scope.now() == pytest.approx(0.07)
    frame = scope.snap()
    assert scope.now() == pytest.approx(0.07 + 0.02 + 0.01)
    assert frame.timestamp == pytest.approx(scope.now())
    scope.camera.exposure_ms = 5.0
    scope.snap()
    assert scope.now() == pytest.approx(0.10 + 0.005 + 0.01)
    assert scope.frames_taken == 2 and scope.moves == 1


def test_trapezoidal_moves_and_strobed_light():
    t = ReplayTiming(z_speed_um_per_s=100.0, z_accel_um_per_s2=1000.0, z_settle_s=0.0)
    # top speed is reached after v^2/a = 10 um of travel: shorter moves are triangular
    assert t.z_move_s(2.0) == pytest.approx(2 * np.sqrt(2.0 / 1000.0))
    assert t.z_move_s(10.0) == pytest.approx(0.2)  # both formulas agree at the boundary
    assert t.z_move_s(-20.0) == pytest.approx(20.0 / 100.0 + 100.0 / 1000.0)
    strobed = ReplayTiming(strobe_ms=0.1, readout_s=0.008)
    assert strobed.snap_s(exposure_ms=50.0) == pytest.approx(0.0001 + 0.008)
    with pytest.raises(ValueError, match="must be positive"):
        ReplayTiming(z_speed_um_per_s=0.0)


def test_timing_recorded_in_the_file_is_used(tmp_path, stack):
    recorded = ReplayTiming(z_speed_um_per_s=200.0, z_settle_s=0.06, readout_s=0.02)
    path = write_stacks(
        tmp_path / "s.h5",
        [stack],
        OPTICS,
        source="simulator",
        attrs={"replay_timing": recorded.to_dict()},
    )
    with open_stacks(path) as f:
        assert timing_for(f) == (recorded, "file")
    plain = write_stacks(tmp_path / "p.h5", [stack], OPTICS, source="recorded")
    with open_stacks(plain) as f:
        assert timing_for(f) == (ReplayTiming(), "default")


def test_replays_a_stack_read_from_a_file(tmp_path, stack):
    path = write_stacks(tmp_path / "s.h5", [stack], OPTICS, source="recorded")
    with open_stacks(path) as f:
        scope = ReplayMicroscope(f[0], f.optics)
        scope.move_z(2.0)
        np.testing.assert_array_equal(scope.snap().image, stack.images[6])
        assert scope.optics.depth_of_field_um == pytest.approx(OPTICS.depth_of_field_um)


def test_live_stream_serves_frames(stack):
    scope = ReplayMicroscope(stack, OPTICS, timing=ReplayTiming(stream_interval_s=0.001))
    scope.camera.start_stream()
    try:
        for _ in range(200):
            if scope.camera.latest_frame() is not None:
                break
            time.sleep(0.005)
    finally:
        scope.camera.stop_stream()
    assert scope.camera.latest_frame() is not None and scope.camera.stream_error is None
