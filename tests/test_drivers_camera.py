"""OpenCV camera driver with a fake VideoCapture: checked calls, BGR -> RGB, clear errors.

The contract every camera kind keeps (this one over `factory()`) is tests/test_camera_contract.py.
"""

from __future__ import annotations

import math
import threading
import time

import cv2
import numpy as np
import pytest

from slidescan.hardware.base import CameraBase
from slidescan.hardware.drivers.opencv_camera import OpenCVCamera, exposure_to_backend
from slidescan.hardware.errors import DeviceError, DeviceTimeout, NotSupportedError


class FakeCapture:
    """Stands in for cv2.VideoCapture: records set() calls, serves BGR frames."""

    def __init__(self, index, backend, *, opened=True, frames=True, refuse=(), shape=(48, 64, 3)):
        self.index, self.backend = index, backend
        self.opened, self.frames, self.refuse = opened, frames, set(refuse)
        self.shape = shape
        self.props: dict[int, float] = {}
        self.released = False
        self.reads = 0

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def set(self, prop, value):
        if prop in self.refuse:
            return False
        self.props[prop] = value
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            self.shape = (self.shape[0], int(value), *self.shape[2:])
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            self.shape = (int(value), *self.shape[1:])
        return True

    def read(self):
        self.reads += 1
        if not self.frames:
            return False, None
        frame = np.zeros(self.shape, np.uint8)
        if frame.ndim == 3:
            frame[..., 0] = 200  # blue in OpenCV's BGR order
            frame[..., 2] = 10 + self.reads % 5  # red
        return True, frame

    def release(self):
        self.released = True


def factory(**kw):
    made = []

    def make(index, backend):
        cap = FakeCapture(index, backend, **kw)
        made.append(cap)
        return cap

    make.made = made  # type: ignore[attr-defined]
    return make


def test_frames_come_out_rgb_with_pixel_size():
    cam = OpenCVCamera(2, pixel_size_um=0.325, capture_factory=factory())
    frame = cam.snap()
    assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
    assert frame.image[0, 0, 2] == 200  # blue is the last channel in RGB
    assert 10 <= frame.image[0, 0, 0] < 15
    assert frame.pixel_size_um == 0.325
    assert cam.shape == (48, 64, 3) and cam.dtype == np.uint8
    cam.close()


def test_resolution_and_exposure_are_set_and_checked():
    make = factory()
    cam = OpenCVCamera(
        0,
        pixel_size_um=1.0,
        backend="v4l2",
        width=320,
        height=240,
        exposure_ms=12.5,
        gain=3.0,
        capture_factory=make,
    )
    props = make.made[0].props
    assert props[cv2.CAP_PROP_FRAME_WIDTH] == 320 and props[cv2.CAP_PROP_FRAME_HEIGHT] == 240
    assert props[cv2.CAP_PROP_AUTO_EXPOSURE] == 1  # manual on V4L2
    assert props[cv2.CAP_PROP_EXPOSURE] == 125  # 100 us units
    assert props[cv2.CAP_PROP_GAIN] == 3.0
    assert cam.exposure_ms == 12.5 and cam.shape == (240, 320, 3)
    cam.close()
    assert make.made[0].released


def test_exposure_units_per_backend():
    assert exposure_to_backend(10.0, "v4l2") == 100
    assert exposure_to_backend(15.625, "dshow") == math.log2(0.015625) == -6
    assert exposure_to_backend(10.0, "msmf") == round(math.log2(0.01))


def test_a_refused_setting_is_not_supported_and_releases_the_camera():
    make = factory(refuse={cv2.CAP_PROP_EXPOSURE})
    with pytest.raises(NotSupportedError, match="exposure"):
        OpenCVCamera(0, pixel_size_um=1.0, exposure_ms=5.0, capture_factory=make)
    assert make.made[0].released


def test_a_missing_camera_is_a_clear_error():
    with pytest.raises(DeviceError, match="camera 3 could not be opened"):
        OpenCVCamera(3, pixel_size_um=1.0, capture_factory=factory(opened=False))


def test_a_busy_camera_that_opens_but_delivers_nothing_is_a_clear_error():
    make = factory(frames=False)
    with pytest.raises(DeviceError, match="returned no frame"):
        OpenCVCamera(0, pixel_size_um=1.0, capture_factory=make)
    assert make.made[0].released


def test_a_camera_ignoring_the_resolution_is_reported():
    class Stubborn(FakeCapture):
        def set(self, prop, value):
            return True  # says yes, changes nothing

    with pytest.raises(NotSupportedError, match="delivers 64x48"):
        OpenCVCamera(
            0, pixel_size_um=1.0, width=640, height=480, capture_factory=lambda i, b: Stubborn(i, b)
        )


def test_grey_frames_stay_two_dimensional():
    cam = OpenCVCamera(0, pixel_size_um=1.0, capture_factory=factory(shape=(30, 40)))
    assert cam.snap().image.shape == (30, 40)


def test_streaming_keeps_the_newest_frames():
    cam = OpenCVCamera(0, pixel_size_um=1.0, capture_factory=factory())
    cam.start_stream()
    deadline = time.monotonic() + 2.0
    while cam.frames_streamed < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    cam.stop_stream()
    assert cam.frames_streamed >= 5
    assert cam.latest_frame() is not None
    cam.close()


def test_a_stream_that_will_not_stop_says_how_long_it_was_given():
    """The timeout in the message is the number, not the template's placeholder."""
    release = threading.Event()

    class Stuck(CameraBase):
        shape = (4, 4)
        dtype = np.dtype(np.uint8)
        pixel_size_um = 1.0

        def _acquire(self):
            release.wait(5.0)  # an exposure that hangs (a driver waiting on a dead camera)
            return np.zeros(self.shape, np.uint8), {}

    cam = Stuck()
    cam.start_stream()
    try:
        with pytest.raises(DeviceTimeout, match=r"^camera stream did not stop within 0\.05 s$"):
            cam.stop_stream(timeout_s=0.05)
    finally:
        release.set()
        cam.stop_stream()
    assert not cam.streaming
