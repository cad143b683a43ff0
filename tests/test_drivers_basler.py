"""The Basler driver on pylon's camera emulation, through the real SDK path.

pylon reads `PYLON_CAMEMU=N` at every device enumeration, so each test that wants emulated
cameras sets it (monkeypatch) before opening one; nothing has to run in a subprocess. The
emulation serves images from a folder (ImageFileMode, ImageFilename): simulator fields saved
as PNG come back through pylon frame by frame, and each must equal what was sent, per pixel
format. It cannot refuse a second program or lose a trigger, so those two faults are made by
patching the one pylon call that would fail; a device removal is the emulation's own
(FirePnPCallback).

Without pypylon the emulation tests skip with the reason, and the tests of what a person sees
then (one line naming `pip install 'slidescan[basler]'`) run by hiding the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import cv2
import numpy as np
import pytest

from slidescan.app.cli import main
from slidescan.hardware.drivers.basler import (
    PIXEL_FORMATS,
    BaslerCamera,
    PylonNotInstalled,
    Roi,
    pylon_message,
)
from slidescan.hardware.errors import (
    ConnectionLost,
    DeviceError,
    HardwareError,
    LimitExceeded,
    NotSupportedError,
)
from slidescan.hardware.registry import BaslerPixelFormat, CameraConfig

PYLON_MISSING = "pypylon is not installed (pip install 'slidescan[basler]'): no Basler tests"
INSTALL = "pip install 'slidescan[basler]'"
SERIAL = "0815-0000"


@pytest.fixture
def pylon(monkeypatch) -> Any:
    """pypylon's `pylon` module with two emulated cameras (0815-0000 and 0815-0001)."""
    module = pytest.importorskip("pypylon.pylon", reason=PYLON_MISSING)
    monkeypatch.setenv("PYLON_CAMEMU", "2")
    return module


@pytest.fixture
def without_pypylon(monkeypatch) -> None:
    """As if pypylon were not installed (whether it is or not)."""
    for name in ("pypylon", "pypylon.pylon", "pypylon.genicam"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def opened() -> Iterator[list[BaslerCamera]]:
    """Cameras a test opens, closed after it whatever happens."""
    cameras: list[BaslerCamera] = []
    yield cameras
    for cam in cameras:
        cam.close()


def _open(opened: list[BaslerCamera], serial: str | None = SERIAL, **kw: Any) -> BaslerCamera:
    cam = BaslerCamera(serial, pixel_size_um=0.5, **kw)
    opened.append(cam)
    return cam


def _node(cam: BaslerCamera, name: str) -> Any:
    return cam.pylon_camera.GetNodeMap().GetNode(name).GetValue()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- what holds without pypylon ----------------------------------------------------------------------
def test_the_profile_and_the_driver_know_the_same_pixel_formats():
    assert set(get_args(BaslerPixelFormat)) == set(PIXEL_FORMATS)


def test_a_basler_profile_validates_without_the_driver():
    config = CameraConfig.model_validate(
        {"type": "basler", "serial": 22334455, "pixel_format": "Mono12", "sensor_pixel_um": 3.45}
    )
    assert config.serial == "22334455"  # TOML writes a numeric serial as a number
    with pytest.raises(ValueError, match="pixel_format"):
        CameraConfig.model_validate({"type": "basler", "pixel_format": "YUV422"})
    with pytest.raises(ValueError, match="roi.width"):
        CameraConfig.model_validate({"type": "basler", "roi": {"width": 0, "height": 8}})


def test_without_pypylon_opening_is_one_line_naming_the_install(without_pypylon):
    with pytest.raises(PylonNotInstalled) as info:
        BaslerCamera(pixel_size_um=1.0)
    message = str(info.value)
    assert INSTALL in message and "\n" not in message
    assert isinstance(info.value, ImportError) and isinstance(info.value, HardwareError)


def test_without_pypylon_hw_list_says_so_in_one_line(capsys, without_pypylon):
    code, out, _ = _run(capsys, "hw", "list", "--json", "--cameras", "0")
    assert code == 0
    basler = json.loads(out)["camera_kinds"]["basler"]
    assert basler["installed"] is False and basler["cameras"] == []
    assert INSTALL in basler["error"]
    code, out, _ = _run(capsys, "hw", "list", "--cameras", "0")
    lines = [line for line in out.splitlines() if "Basler" in line]
    assert lines == [f"Basler camera (pylon): not installed ({INSTALL})"]


def test_without_pypylon_hw_check_is_one_line(capsys, without_pypylon):
    code, out, err = _run(capsys, "hw", "check", "--camera", "basler")
    assert code == 1 and "check passed" not in out
    assert err.count("\n") == 1 and INSTALL in err and "Traceback" not in err


def test_pylon_messages_lose_their_source_location():
    text = (
        "Value 0.500000 must be greater than or equal 1.000000. : OutOfRangeException thrown "
        "in node 'ExposureTime' while calling 'ExposureTime.SetValue()' (file 'FloatT.h', line 91)"
    )
    assert pylon_message(RuntimeError(text)) == (
        "Value 0.500000 must be greater than or equal 1.000000"
    )


# -- finding and opening -----------------------------------------------------------------------------
def test_finds_the_emulated_cameras(pylon):
    from slidescan.hardware.drivers.basler import find_cameras

    found = find_cameras()
    assert [c["serial"] for c in found] == ["0815-0000", "0815-0001"]
    assert all(c["model"] == "Emulation" and c["interface"] == "BaslerCamEmu" for c in found)
    assert not any(c["in_use"] for c in found)


def test_opens_by_serial_or_the_first_found(pylon, opened):
    assert _open(opened, "0815-0001").serial == "0815-0001"
    first = _open(opened, None)
    assert first.serial == "0815-0000" and first.label == "Basler Emulation (0815-0000)"


def test_a_missing_camera_names_the_ones_found(pylon, monkeypatch):
    with pytest.raises(DeviceError, match=r"no Basler camera with serial 42; found: 0815-0000, "):
        BaslerCamera("42", pixel_size_um=1.0)
    monkeypatch.delenv("PYLON_CAMEMU")
    with pytest.raises(DeviceError, match="no Basler camera found"):
        BaslerCamera(pixel_size_um=1.0)


def test_a_camera_held_by_another_program_says_so(pylon, monkeypatch):
    from pypylon import genicam

    def refuse(self, *args):
        raise genicam.RuntimeException(
            "Failed to open device 'Basler Emulation (0815-0000)' for XML file download. "
            "The device is controlled by another application. Err: An attempt was made to "
            "access an address location which is currently/momentary not accessible. "
            "(0xE1018006) : RuntimeException thrown (file 'PylonUsbTL.cpp', line 1)"
        )

    monkeypatch.setattr(pylon.InstantCamera, "Open", refuse)
    with pytest.raises(DeviceError) as info:
        BaslerCamera(SERIAL, pixel_size_um=1.0)
    assert str(info.value) == (
        "Basler Emulation (0815-0000) is in use by another program (pylon Viewer?): "
        "close it and retry"
    )


def test_another_open_failure_is_pylons_reason_in_one_line(pylon, monkeypatch):
    from pypylon import genicam

    def fail(self, *args):
        raise genicam.RuntimeException("Node map not loaded : RuntimeException thrown (file x)")

    monkeypatch.setattr(pylon.InstantCamera, "Open", fail)
    with pytest.raises(DeviceError) as info:
        BaslerCamera(SERIAL, pixel_size_um=1.0)
    assert (
        str(info.value) == "Basler Emulation (0815-0000) could not be opened: Node map not loaded"
    )


def test_snaps_are_software_triggered_and_the_stream_free_runs(pylon, opened):
    cam = _open(opened)
    assert (_node(cam, "TriggerMode"), _node(cam, "TriggerSource")) == ("On", "Software")
    cam.start_stream()
    assert _node(cam, "TriggerMode") == "Off"
    cam.stop_stream()
    assert _node(cam, "TriggerMode") == "On"
    cam.close()
    assert cam.pylon_camera is None
    with pytest.raises(DeviceError, match=r"^Basler Emulation \(0815-0000\) is closed$"):
        cam.snap()
    with pytest.raises(DeviceError, match="is closed"):
        cam.exposure_ms = 2.0
    assert _open(opened).snap().image.shape == cam.shape  # released: it opens again


# -- settings ----------------------------------------------------------------------------------------
def test_exposure_is_microseconds_on_the_camera(pylon, opened):
    cam = _open(opened, exposure_ms=12.5)
    assert _node(cam, "ExposureTime") == pytest.approx(12500.0)
    cam.exposure_ms = 0.25
    assert _node(cam, "ExposureTime") == pytest.approx(250.0) and cam.exposure_ms == 0.25
    assert cam.exposure_range_ms == (0.001, 10000.0)


def test_an_exposure_outside_the_range_names_it(pylon, opened):
    cam = _open(opened, exposure_ms=5.0)
    for bad in (20000.0, 0.0, -1.0, float("nan")):
        with pytest.raises(LimitExceeded, match=r"outside .*'s range 0\.001-10000 ms$"):
            cam.exposure_ms = bad
    assert cam.exposure_ms == 5.0 and _node(cam, "ExposureTime") == pytest.approx(5000.0)


def test_setting_the_exposure_switches_auto_exposure_off(pylon, opened):
    cam = _open(opened)
    cam.pylon_camera.GetNodeMap().GetNode("ExposureAuto").SetValue("Continuous")
    cam.exposure_ms = 3.0
    assert _node(cam, "ExposureAuto") == "Off"


def test_gain_is_linear_here_and_decibels_on_the_camera(pylon, opened):
    cam = _open(opened, gain=2.0)
    assert _node(cam, "Gain") == pytest.approx(6.0206, abs=1e-3)
    assert cam.gain == pytest.approx(2.0, rel=1e-4)
    assert cam.gain_range == pytest.approx((1.0, 251.19), rel=1e-3)
    for bad in (0.5, 1000.0):
        with pytest.raises(LimitExceeded, match=r"\(0-48 dB\)$"):
            cam.gain = bad
    assert cam.snap().gain == cam.gain


def test_roi_and_binning_set_the_frame(pylon, opened):
    cam = _open(opened, roi=Roi(320, 240, offset_x=16, offset_y=8))
    assert cam.shape == (240, 320) and cam.snap().image.shape == (240, 320)
    assert (_node(cam, "OffsetX"), _node(cam, "OffsetY")) == (16, 8)
    binned = _open(opened, "0815-0001", binning=2, roi=Roi(200, 100))
    assert (_node(binned, "BinningHorizontal"), _node(binned, "BinningVertical")) == (2, 2)
    assert binned.snap().image.shape == binned.shape == (100, 200)


def test_a_roi_outside_the_sensor_names_the_range(pylon):
    with pytest.raises(LimitExceeded, match=r"ROI width 5000 is outside 1-4096$"):
        BaslerCamera(SERIAL, pixel_size_um=1.0, roi=Roi(5000, 100))
    with pytest.raises(LimitExceeded, match="ROI x offset 4000 is outside"):
        BaslerCamera(SERIAL, pixel_size_um=1.0, roi=Roi(200, 100, offset_x=4000))


def test_a_pixel_format_we_do_not_read_is_named(pylon):
    def rgb16(cam: Any) -> None:
        cam.GetNodeMap().GetNode("PixelFormat").SetValue("RGB16Packed")

    with pytest.raises(NotSupportedError, match="pixel format RGB16Packed, which slidescan does"):
        BaslerCamera(SERIAL, pixel_size_um=1.0, configure=rgb16)
    with pytest.raises(ValueError, match="unknown pixel format 'YUV422'"):
        BaslerCamera(SERIAL, pixel_size_um=1.0, pixel_format="YUV422")


def test_the_pixel_formats_the_camera_offers_are_listed(pylon, opened):
    cam = _open(opened, pixel_format="Mono12")
    assert set(cam.pixel_formats) == set(PIXEL_FORMATS)  # the emulation offers every one
    assert (cam.pixel_format, cam.bit_depth, cam.dtype) == ("Mono12", 12, np.dtype(np.uint16))
    assert cam.snap().meta["pixel_format"] == "Mono12"


def test_what_the_camera_offers_is_read_once_at_open(pylon, opened, monkeypatch):
    """The wizard reads it on the GUI thread, where no pylon call may wait."""
    cam = _open(opened)
    with monkeypatch.context() as patched:
        patched.setattr(pylon.InstantCamera, "GetNodeMap", lambda self: pytest.fail("pylon"))
        assert set(cam.pixel_formats) == set(PIXEL_FORMATS)
        assert (cam.pixel_format, cam.shape, cam.exposure_ms) == ("Mono8", (1040, 1024), 10.0)


# -- simulator frames through the SDK ----------------------------------------------------------------
W, H = 96, 64


def _simulator_fields(channels: int, bit_depth: int, count: int = 3) -> list[np.ndarray]:
    """`count` different in-focus fields of the simulated slide, as its camera takes them."""
    from slidescan.hardware.sim import build_simulator

    sim = build_simulator(
        seed=3, camera={"width": W, "height": H, "channels": channels, "bit_depth": bit_depth}
    )
    x0, y0, x1, y1 = sim.slide_bounds_um
    out = []
    for k in range(count):
        x, y = x0 + (x1 - x0) * (0.3 + 0.15 * k), (y0 + y1) / 2
        out.append(sim.render(x, y, sim.true_focus_um(x, y), noise=False))
    return out


def _write(folder: Path, fields: list[np.ndarray], shift: int = 0) -> None:
    """PNG files in name order: RGB as PNG's RGB, 12-bit values MSB-aligned in 16 bits."""
    folder.mkdir()
    for k, field in enumerate(fields):
        image = field << shift if shift else field
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # cv2 writes BGR as PNG's RGB
        assert cv2.imwrite(str(folder / f"field{k}.png"), image)


def _serve(folder: Path) -> Callable[[Any], None]:
    """The emulation's image-file source (its own features, not a Basler camera's)."""

    def configure(cam: Any) -> None:
        nodes = cam.GetNodeMap()
        nodes.GetNode("TestImageSelector").SetValue("Off")
        nodes.GetNode("ImageFileMode").SetValue("On")
        nodes.GetNode("ImageFilename").SetValue(str(folder))

    return configure


#: pixel format -> (simulator channels, bit depth, left shift into the file, the emulation's
#: left shift from the file's 8 bits into this format).
SENT = {
    "Mono8": (1, 8, 0, 0),
    "Mono12": (1, 12, 4, 0),  # the emulation takes a 16-bit file's top 12 bits
    "Mono16": (1, 16, 0, 0),
    "RGB8": (3, 8, 0, 0),
    "BGR8": (3, 8, 0, 0),
    "BayerRG8": (3, 8, 0, 0),
    "BayerGB8": (3, 8, 0, 0),
    "BayerGR8": (3, 8, 0, 0),
    "BayerBG8": (3, 8, 0, 0),
    "BayerRG12": (3, 8, 0, 4),
}


def _bayer_sites(pattern: str, shape: tuple[int, int]) -> np.ndarray:
    """Which colour (0 R, 1 G, 2 B) each pixel of a Bayer `pattern` ("RG", ...) samples."""
    rows = {"RG": ("RG", "GB"), "GB": ("GB", "RG"), "GR": ("GR", "BG"), "BG": ("BG", "GR")}
    index = {"R": 0, "G": 1, "B": 2}
    sites = np.empty(shape, np.intp)
    for dy, row in enumerate(rows[pattern]):
        for dx, colour in enumerate(row):
            sites[dy::2, dx::2] = index[colour]
    return sites


@pytest.mark.parametrize("pixel_format", list(SENT))
def test_simulator_frames_come_back_through_pylon(pylon, opened, tmp_path, pixel_format):
    channels, bits, file_shift, format_shift = SENT[pixel_format]
    fields = _simulator_fields(channels, bits)
    _write(tmp_path / "fields", fields, file_shift)
    cam = _open(
        opened, pixel_format=pixel_format, roi=Roi(W, H), configure=_serve(tmp_path / "fields")
    )
    fmt = PIXEL_FORMATS[pixel_format]
    assert cam.shape == ((H, W) if fmt.channels == 1 else (H, W, 3)) and cam.dtype == fmt.dtype
    for k in (0, 1, 2, 0):  # one new frame per trigger, the folder's files in turn
        image = cam.snap().image
        assert image.shape == cam.shape and image.dtype == cam.dtype
        sent = fields[k].astype(cam.dtype) << format_shift
        if not pixel_format.startswith("Bayer"):
            np.testing.assert_array_equal(image, sent)
            continue
        # Each pixel's own colour is the one sampled (exact; OpenCV's border is extrapolated),
        # the two it interpolates are close to what was sent.
        sites = _bayer_sites(pixel_format[5:7], (H, W))[..., None]
        own = np.take_along_axis(image, sites, 2)[1:-1, 1:-1]
        np.testing.assert_array_equal(own, np.take_along_axis(sent, sites, 2)[1:-1, 1:-1])
        error = np.abs(image.astype(float) - sent.astype(float)).mean() / (255 << format_shift)
        assert error < 0.03, f"demosaicked frame far from what was sent ({error:.3f})"


def test_streamed_frames_are_the_files_too(pylon, opened, tmp_path):
    fields = _simulator_fields(1, 8)
    _write(tmp_path / "fields", fields)
    cam = _open(opened, pixel_format="Mono8", roi=Roi(W, H), configure=_serve(tmp_path / "fields"))
    cam.start_stream()
    try:
        deadline = time.monotonic() + 5.0
        while cam.frames_streamed < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        latest = cam.latest_frame()
    finally:
        cam.stop_stream()
    assert cam.frames_streamed >= 10 and latest is not None
    assert any(np.array_equal(latest.image, f) for f in fields)


# -- failures ----------------------------------------------------------------------------------------
def test_a_camera_that_vanishes_is_connection_lost(pylon, opened):
    cam = _open(opened)
    cam.snap()
    cam.pylon_camera.FirePnPCallback.Execute()  # the emulation's device-removal event
    with pytest.raises(ConnectionLost, match=r"^Basler Emulation \(0815-0000\) was disconnected"):
        cam.snap()
    with pytest.raises(ConnectionLost):
        cam.exposure_ms = 2.0
    cam.close()  # releases what is left


# Tests in which a pylon wait runs out run in a child process. pylon installs a SIGALRM
# handler when it first opens a camera and arms POSIX timers that signal SIGALRM when a
# wait expires; pytest-timeout's signal method swaps the SIGALRM handler around every test,
# so in this process such a signal ends up in pytest-timeout's handler (a false "Timeout"),
# in none (the process dies) or in a Python handler pylon's wait never hears of (a hang).
def _in_child(script: str, *args: str) -> dict[str, Any]:
    """Run `script` in a fresh Python with one emulated camera; its last line, as JSON."""
    child = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "PYLON_CAMEMU": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


VANISH_WHILE_STREAMING = """
import json, time
from slidescan.hardware.drivers.basler import BaslerCamera
cam = BaslerCamera("0815-0000", pixel_size_um=1.0)
cam.start_stream()
while cam.frames_streamed < 3 and cam.stream_error is None:
    time.sleep(0.01)
cam.pylon_camera.FirePnPCallback.Execute()  # the emulation's device-removal event
deadline = time.monotonic() + 5.0
while cam.streaming and time.monotonic() < deadline:
    time.sleep(0.01)
streaming, error = cam.streaming, cam.stream_error
cam.stop_stream()  # nothing to re-arm on a camera that is gone
cam.close()
print(json.dumps({"streaming": streaming, "error": type(error).__name__, "message": str(error)}))
"""


def test_a_camera_that_vanishes_while_streaming_ends_the_stream(pylon):
    assert _in_child(VANISH_WHILE_STREAMING) == {
        "streaming": False,
        "error": "ConnectionLost",
        "message": "Basler Emulation (0815-0000) was disconnected (unplugged or powered off)",
    }


NEVER_COMES = """
import json, time
from pypylon import pylon
from slidescan.hardware.drivers.basler import BaslerCamera
cam = BaslerCamera("0815-0000", pixel_size_um=1.0, exposure_ms=1.0, timeout_s=0.2)
trigger = pylon.InstantCamera.ExecuteSoftwareTrigger
pylon.InstantCamera.ExecuteSoftwareTrigger = lambda self: None  # a trigger that gets lost
t0 = time.monotonic()
try:
    cam.snap()
    error = None
except Exception as exc:
    error = exc
waited = time.monotonic() - t0
pylon.InstantCamera.ExecuteSoftwareTrigger = trigger
shape = list(cam.snap().image.shape)
cam.close()
print(json.dumps({"error": type(error).__name__, "message": str(error), "waited_s": waited,
                  "next_snap": shape}))
"""


def test_a_frame_that_never_comes_times_out(pylon):
    result = _in_child(NEVER_COMES)
    assert 0.2 <= result.pop("waited_s") < 2.0
    assert result == {
        "error": "DeviceTimeout",
        "message": (
            "Basler Emulation (0815-0000) delivered no frame within 0.202 s (exposure 1 ms + 0.2 s)"
        ),
        "next_snap": [1040, 1024],  # the next trigger works
    }


LATE_FRAME = """
import json, sys, time
import cv2, numpy as np
from slidescan.hardware.drivers.basler import BaslerCamera, Roi
folder = sys.argv[1]

def serve(cam):
    nodes = cam.GetNodeMap()
    nodes.GetNode("TestImageSelector").SetValue("Off")
    nodes.GetNode("ImageFileMode").SetValue("On")
    nodes.GetNode("ImageFilename").SetValue(folder)

cam = BaslerCamera("0815-0000", pixel_size_um=1.0, pixel_format="Mono8", roi=Roi(96, 64),
                   exposure_ms=0.001, timeout_s=0.001, configure=serve)
# ready for the trigger before the 2 ms snap, so that on a busy machine the snap still triggers
# field 0 and then gives up waiting for it (the premise: a frame that comes after its snap)
from pypylon import pylon
assert cam.pylon_camera.WaitForFrameTriggerReady(5000, pylon.TimeoutHandling_Return)
try:
    cam.snap()  # gives up long before the emulation's frame (about 12 ms)
    error = None
except Exception as exc:
    error = exc
time.sleep(0.5)  # field 0 arrives, late
cam.timeout_s = 1.0
image = cam.snap().image
cam.close()
sent = [cv2.imread(f"{folder}/field{k}.png", cv2.IMREAD_UNCHANGED) for k in range(3)]
print(json.dumps({"error": type(error).__name__, "why": str(error).split(" within")[0][-30:],
                  "matches": [bool(np.array_equal(image, s)) for s in sent]}))
"""


def test_a_late_frame_is_not_the_next_snaps(pylon, tmp_path):
    _write(tmp_path / "fields", _simulator_fields(1, 8))
    assert (W, H) == (96, 64)
    result = _in_child(LATE_FRAME, str(tmp_path / "fields"))
    assert result == {
        "error": "DeviceTimeout",
        "why": "(0815-0000) delivered no frame",
        "matches": [False, True, False],
    }


def test_a_failed_frame_gives_pylons_reason(pylon, opened):
    cam = _open(opened)
    nodes = cam.pylon_camera.GetNodeMap()
    nodes.GetNode("ForceFailedBufferCount").SetValue(1)
    nodes.GetNode("ForceFailedBuffer").Execute()
    with pytest.raises(DeviceError, match=r"frame failed: The buffer was incompletely grabbed"):
        cam.snap()
    assert cam.snap().image.shape == cam.shape


# -- through the profile and the CLI -----------------------------------------------------------------
def test_a_profile_opens_the_basler_camera_beside_a_stage(pylon, tmp_path):
    from slidescan.hardware.profile import load_profile, open_microscope

    path = tmp_path / "basler.toml"
    path.write_text(
        'name = "b"\n[stage]\ntype = "asi"\nport = "fakeasi://"\n[stage.limits]\n'
        "x_um = [0, 1000]\ny_um = [0, 1000]\nz_um = [-50, 50]\n"
        '[camera]\ntype = "basler"\nserial = "0815-0001"\npixel_format = "Mono12"\n'
        "exposure_ms = 4.0\nsensor_pixel_um = 3.45\n"
        "[camera.roi]\nwidth = 128\nheight = 96\n"
        '[[objectives]]\nname = "20x/0.75"\n'
    )
    scope = open_microscope(load_profile(str(path)))
    try:
        frame = scope.camera.snap()
        assert frame.image.shape == (96, 128) and frame.image.dtype == np.uint16
        assert frame.pixel_size_um == pytest.approx(3.45 / 20)
        assert frame.exposure_ms == 4.0 and frame.meta["serial"] == "0815-0001"
        assert frame.position is not None  # stamped with the stage's position
    finally:
        scope.close()


def test_hw_list_shows_the_basler_cameras(pylon, capsys):
    code, out, _ = _run(capsys, "hw", "list", "--json", "--cameras", "0")
    assert code == 0
    basler = json.loads(out)["camera_kinds"]["basler"]
    assert basler["installed"] and basler["error"] is None
    assert [(c["model"], c["serial"]) for c in basler["cameras"]] == [
        ("Emulation", "0815-0000"),
        ("Emulation", "0815-0001"),
    ]
    code, out, _ = _run(capsys, "hw", "list", "--cameras", "0")
    assert "Basler camera (pylon):" in out and "serial 0815-0001" in out


def test_hw_list_says_which_camera_another_program_holds(pylon, capsys, monkeypatch):
    held = pylon.Accessibility_OpenedExclusively
    monkeypatch.setattr(pylon.TlFactory, "IsDeviceAccessibleInfo", lambda self, info: (False, held))
    code, out, _ = _run(capsys, "hw", "list", "--cameras", "0")
    assert code == 0
    assert "serial 0815-0000      BaslerCamEmu  (in use by another program)" in out


def test_hw_check_snaps_a_basler_camera(pylon, capsys):
    code, out, _ = _run(
        capsys, "hw", "check", "--camera", "basler", "--serial", "0815-0001", "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["ok"] and report["camera_type"] == "basler" and report["stage"] is None
    cam = report["camera"]
    assert cam["shape"] == [1040, 1024] and cam["dtype"] == "uint8" and 0 < cam["mean"] < 255
    assert cam["meta"]["serial"] == "0815-0001"
    code, out, _ = _run(capsys, "hw", "check", "--camera", "basler")
    assert code == 0 and "Emulation 0815-0000" in out and "check passed" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--camera", "basler", "--serial", "42"], "no Basler camera with serial 42; found: "),
        (["--camera", "basler", "--profile", "simulator"], "a profile names its camera"),
        (["--camera", "opencv", "--serial", "42"], "--serial goes with --camera basler"),
        (["--camera", "0"], "a camera index goes with --stage"),
        (["--camera", "nikon"], "give a camera index (0, 1, ...) or type (opencv, basler)"),
    ],
)
def test_hw_check_bad_camera_input_is_one_line(pylon, capsys, argv, words):
    code, out, err = _run(capsys, "hw", "check", *argv)
    assert code != 0 and "check passed" not in out
    assert err.count("\n") == 1 and words in err
