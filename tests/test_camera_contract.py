"""One contract for every camera: the simulator's, OpenCV's over a fake capture, and Basler's on
pylon's camera emulation (skipped, with the reason, where pypylon is not installed).

A snap is what the camera declares (shape, dtype, pixel size, exposure, gain, a timestamp that
does not go back); the exposure round-trips and a non-positive one is refused; streaming fills
a bounded buffer with ever newer frames, stops when told, and leaves snapping working; close
stops the stream and may be called twice; a camera that fails (unplugged, no more frames) is
one clear `HardwareError`, in a snap and in the stream.

The cameras under test are the registry's camera kinds, so a newly registered kind fails here
until it has a harness.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from test_drivers_camera import factory

from slidescan.hardware.base import Camera, CameraBase
from slidescan.hardware.errors import HardwareError
from slidescan.hardware.registry import CameraConfig, camera_kind, camera_kinds

PYLON_MISSING = "pypylon is not installed (pip install 'slidescan[basler]'): no Basler tests"


@dataclass
class Opened:
    """A camera under test and how its harness ends it."""

    camera: Camera
    close: Callable[[], None]
    #: Makes the camera fail as a real one can; None: this camera cannot fail.
    break_it: Callable[[], None] | None = None
    #: The exposure the device itself holds (ms), where the harness can read it.
    device_exposure_ms: Callable[[], float] | None = None


def _sim(monkeypatch: pytest.MonkeyPatch) -> Opened:
    from slidescan.hardware.profile import load_profile, open_microscope

    prof = load_profile("simulator")
    small = {**(prof.simulator or {}), "camera": {"width": 64, "height": 48}}
    scope = open_microscope(prof.model_copy(update={"simulator": small}))
    return Opened(scope.camera, scope.close)


def _opencv(monkeypatch: pytest.MonkeyPatch) -> Opened:
    make = factory()
    config = CameraConfig.model_validate({"type": "opencv", "sensor_pixel_um": 3.45})
    opener = camera_kind("opencv").open
    assert opener is not None
    camera = opener(config, pixel_size_um=0.5, capture_factory=make)

    def unplug() -> None:
        make.made[0].frames = False  # reads fail from now on

    return Opened(camera, camera.close, unplug)


def _basler(monkeypatch: pytest.MonkeyPatch) -> Opened:
    pytest.importorskip("pypylon.pylon", reason=PYLON_MISSING)
    monkeypatch.setenv("PYLON_CAMEMU", "1")  # read by pylon at each device enumeration
    config = CameraConfig.model_validate(
        {
            "type": "basler",
            "serial": "0815-0000",
            "sensor_pixel_um": 3.45,
            "pixel_format": "Mono8",
            "roi": {"width": 320, "height": 240},
            "timeout_s": 2.0,
        }
    )
    opener = camera_kind("basler").open
    assert opener is not None
    camera: Any = opener(config, pixel_size_um=0.5)

    def unplug() -> None:
        camera.pylon_camera.FirePnPCallback.Execute()  # the emulation's device-removal event

    def exposure() -> float:
        return camera.pylon_camera.GetNodeMap().GetNode("ExposureTime").GetValue() / 1000.0

    return Opened(camera, camera.close, unplug, exposure)


HARNESSES: dict[str, Callable[[pytest.MonkeyPatch], Opened]] = {
    "sim": _sim,
    "opencv": _opencv,
    "basler": _basler,
}
#: Known gaps, each a strict xfail (it fails the run once the gap is closed: remove it then).
GAPS: dict[tuple[str, str], str] = {}


@pytest.fixture(params=[k.name for k in camera_kinds()])
def opened(request, monkeypatch) -> Iterator[Opened]:
    if request.param not in HARNESSES:
        pytest.fail(f"camera kind {request.param!r} has no harness in the contract: add one")
    gap = GAPS.get((request.param, request.function.__name__.removeprefix("test_")))
    if gap is not None:
        request.applymarker(pytest.mark.xfail(reason=gap, strict=True))
    harness = HARNESSES[request.param](monkeypatch)
    try:
        yield harness
    finally:
        harness.close()


def _base(camera: Camera) -> CameraBase:
    """Streaming's bookkeeping (`frames_streamed`, `stream_error`, the buffer) is CameraBase's."""
    assert isinstance(camera, CameraBase), f"{type(camera).__name__} is not a CameraBase"
    return camera


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# -- snap --------------------------------------------------------------------------------------------
def test_declares_what_it_delivers(opened):
    cam = opened.camera
    assert isinstance(cam, Camera)
    assert len(cam.shape) in (2, 3) and all(n > 0 for n in cam.shape)
    assert len(cam.shape) == 2 or cam.shape[2] == 3
    assert cam.dtype in (np.dtype(np.uint8), np.dtype(np.uint16))
    assert cam.pixel_size_um > 0 and cam.exposure_ms >= 0 and cam.gain > 0


def test_a_snap_is_what_the_camera_declares(opened):
    cam = opened.camera
    first, second = cam.snap(), cam.snap()
    for frame in (first, second):
        assert frame.image.shape == cam.shape and frame.image.dtype == cam.dtype
        assert frame.image.max() > 0, "an all-black frame"
        assert frame.pixel_size_um == cam.pixel_size_um
        assert frame.exposure_ms == cam.exposure_ms and frame.gain == cam.gain
        assert math.isfinite(frame.timestamp)
    assert second.timestamp >= first.timestamp
    assert first.image is not second.image


# -- exposure ----------------------------------------------------------------------------------------
def test_exposure_round_trips(opened):
    cam = opened.camera
    wanted = 2.0 * cam.exposure_ms if cam.exposure_ms > 0 else 5.0
    cam.exposure_ms = wanted
    assert cam.exposure_ms == pytest.approx(wanted, rel=1e-3, abs=1e-3)
    if opened.device_exposure_ms is not None:
        assert opened.device_exposure_ms() == pytest.approx(cam.exposure_ms, rel=1e-6)
    assert cam.snap().exposure_ms == cam.exposure_ms
    cam.exposure_ms = wanted / 4
    assert cam.exposure_ms == pytest.approx(wanted / 4, rel=1e-3, abs=1e-3)
    assert cam.snap().exposure_ms == cam.exposure_ms


def test_the_declared_exposure_range_is_accepted_at_both_ends(opened):
    """The wizard's exposure box is bounded by this range: both ends must be settable."""
    cam = opened.camera
    span = cam.exposure_range_ms
    if span is None:
        pytest.skip("this camera declares no exposure range")
    lo, hi = span
    assert 0 < lo < hi and math.isfinite(hi)
    before = cam.exposure_ms
    for end in (lo, min(hi, 200.0)):  # a long upper end is not waited for in a snap
        cam.exposure_ms = end
        assert cam.exposure_ms == pytest.approx(end, rel=1e-2, abs=1e-3)
    cam.exposure_ms = before if before > 0 else 5.0
    assert cam.snap().image.shape == cam.shape


def test_refuses_non_positive_exposure(opened):
    cam = opened.camera
    before = cam.exposure_ms
    with pytest.raises((ValueError, HardwareError)) as info:
        cam.exposure_ms = 0.0  # refused here, or by the next snap
        cam.snap()
    message = str(info.value)
    assert "exposure" in message and "\n" not in message
    cam.exposure_ms = before if before > 0 else 5.0
    assert cam.snap().image.shape == cam.shape  # the camera still works


# -- streaming ---------------------------------------------------------------------------------------
def test_streaming_keeps_only_the_newest_frames(opened):
    cam = _base(opened.camera)
    bound = cam._buffer.maxlen
    assert bound is not None
    cam.start_stream()
    try:
        assert cam.streaming
        assert _wait_until(lambda: cam.frames_streamed >= bound + 3), cam.stream_error
        assert len(cam._buffer) <= bound
        latest = cam.latest_frame()
        assert latest is not None and latest.image.shape == cam.shape
        seen = cam.frames_streamed
        assert _wait_until(lambda: cam.frames_streamed > seen + 1), cam.stream_error
        newer = cam.latest_frame()
        assert newer is not None and newer is not latest
        assert newer.timestamp >= latest.timestamp
        assert len(cam._buffer) <= bound and cam.stream_error is None
    finally:
        cam.stop_stream()


def test_stop_stream_stops_and_snapping_goes_on(opened):
    cam = _base(opened.camera)
    cam.start_stream()
    assert _wait_until(lambda: cam.frames_streamed >= 2), cam.stream_error
    cam.stop_stream()
    assert not cam.streaming
    stopped_at = cam.frames_streamed
    time.sleep(0.1)
    assert cam.frames_streamed == stopped_at
    assert cam.snap().image.shape == cam.shape
    cam.start_stream()  # and it starts again
    assert _wait_until(lambda: cam.frames_streamed > stopped_at), cam.stream_error
    cam.stop_stream()
    assert cam.snap().image.shape == cam.shape


def test_a_snap_while_streaming_is_a_frame(opened):
    cam = _base(opened.camera)
    cam.start_stream()
    try:
        frame = cam.snap()
        assert frame.image.shape == cam.shape and frame.image.dtype == cam.dtype
    finally:
        cam.stop_stream()
    assert cam.stream_error is None


def test_close_stops_the_stream_and_twice_is_fine(opened):
    cam = _base(opened.camera)
    cam.start_stream()
    assert _wait_until(lambda: cam.frames_streamed >= 1), cam.stream_error
    cam.close()
    assert not cam.streaming
    cam.close()


# -- failures ----------------------------------------------------------------------------------------
def test_a_failing_camera_is_one_clear_error(opened):
    if opened.break_it is None:
        pytest.skip("this camera cannot fail (the simulator)")
    cam = _base(opened.camera)
    cam.snap()
    opened.break_it()
    with pytest.raises(HardwareError) as info:
        cam.snap()
    assert str(info.value) and "\n" not in str(info.value)
    try:
        cam.start_stream()
    except HardwareError as exc:  # refused at once, or ...
        assert "\n" not in str(exc)
    else:  # ... the stream ends with the reason, for the live view to show
        assert _wait_until(lambda: not cam.streaming)
        assert isinstance(cam.stream_error, HardwareError)
        assert "\n" not in str(cam.stream_error)
    cam.close()  # a broken camera still closes
