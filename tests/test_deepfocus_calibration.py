"""DeepFocus calibration files (focus/deepfocus_calibration.py): built from per-plane scores,
written and read back, refused for other optics or when damaged; the plot is a PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_focus_fakes import FakeOptics as Optics

from slidescan.focus.deepfocus_calibration import (
    DIP_DEPTH,
    CalibrationError,
    DeepFocusCalibration,
    build_calibration,
    calibration_planes,
    default_path,
    saturation_defocus_um,
    write_plot,
)
from slidescan.focus.deepfocus_curve import CurveModel
from slidescan.focus.learned.deepfocus import find_calibration

TRUE = CurveModel(4.2, 3.0, 0.0, 3.5, 3.0, 1.2, 0.3, 0.6)


def _planes(rng, focus=4.2):
    z = np.linspace(-11, 19, 61)
    scores = [TRUE(zz) + rng.normal(0, 0.02, 16) for zz in z]
    valid = [np.ones(16, bool) for _ in z]
    return z, scores, valid


def test_built_calibration_is_centred_on_the_fitted_focus():
    z, scores, valid = _planes(np.random.default_rng(1))
    cal = build_calibration(z, scores, valid, Optics(), "test")
    assert cal.focus_z_um == pytest.approx(4.2, abs=0.1)
    assert cal.curve.z0 == 0.0
    assert min(abs(np.asarray(cal.z_um))) < 0.3
    assert cal.fwhm_um == pytest.approx(TRUE.dip_width_um(-15.2, 14.8, DIP_DEPTH), rel=0.05)
    assert cal.fit_rms < 0.02


def test_round_trip(tmp_path):
    z, scores, valid = _planes(np.random.default_rng(2))
    cal = build_calibration(z, scores, valid, Optics(), "stack a", weights_checksum="abc")
    path = cal.save(tmp_path / "sub" / "cal.json")
    back = DeepFocusCalibration.load(path)
    assert back.to_json() == cal.to_json()
    assert back.curve(1.0) == pytest.approx(cal.curve(1.0))


def test_mismatched_optics_are_refused():
    z, scores, valid = _planes(np.random.default_rng(3))
    cal = build_calibration(z, scores, valid, Optics(), "x")
    cal.check_matches(Optics())
    with pytest.raises(CalibrationError, match="does not match the objective in use.*10x/0.30"):
        cal.check_matches(Optics(objective_name="10x/0.30", na=0.30, pixel_size_um=0.65))
    with pytest.raises(CalibrationError, match="pixel size"):
        cal.check_matches(Optics(pixel_size_um=0.5))


@pytest.mark.parametrize(
    "content, match",
    [
        (b"{not json", "unreadable"),
        (b'{"format": "something else"}', "not a DeepFocus calibration"),
        (b'{"format": "slidescan-deepfocus-calibration", "version": 1}', "incomplete"),
    ],
)
def test_damaged_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "cal.json"
    path.write_bytes(content)
    with pytest.raises(CalibrationError, match=match) as info:
        DeepFocusCalibration.load(path)
    assert "\n" not in str(info.value)


def test_invalid_numbers_are_refused(tmp_path):
    z, scores, valid = _planes(np.random.default_rng(4))
    d = build_calibration(z, scores, valid, Optics(), "x").to_json()
    d["curve"]["alpha"] = float("nan")
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(d))
    with pytest.raises(CalibrationError, match="invalid numbers"):
        DeepFocusCalibration.load(path)


def test_noise_floor_round_trip_and_version_1_files(tmp_path):
    z, scores, valid = _planes(np.random.default_rng(8))
    cal = build_calibration(z, scores, valid, Optics(), "x", noise_sigma=1.1, noise_floor=2.2)
    back = DeepFocusCalibration.load(cal.save(tmp_path / "cal.json"))
    assert (back.noise_sigma, back.noise_floor) == (1.1, 2.2)
    d = cal.to_json()
    assert d["version"] == 2
    d["version"] = 1  # written before the noise floor: read with none
    del d["noise_sigma"], d["noise_floor"]
    (tmp_path / "v1.json").write_text(json.dumps(d))
    assert DeepFocusCalibration.load(tmp_path / "v1.json").noise_floor == 0.0
    for key, value in [("noise_floor", -1.0), ("noise_sigma", float("nan"))]:
        d = cal.to_json()
        d[key] = value
        (tmp_path / "bad.json").write_text(json.dumps(d))
        with pytest.raises(CalibrationError, match="invalid numbers"):
            DeepFocusCalibration.load(tmp_path / "bad.json")
    d = cal.to_json()
    del d["noise_floor"]  # a version-2 file must say its floor
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(CalibrationError, match="incomplete"):
        DeepFocusCalibration.load(tmp_path / "short.json")


def test_frames_of_another_bit_depth_are_refused():
    z, scores, valid = _planes(np.random.default_rng(9))
    cal = build_calibration(
        z, scores, valid, Optics(), "x", noise_sigma=1.0, noise_floor=2.0, frame_dtype="uint8"
    )
    cal.check_frame(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CalibrationError, match="uint8 frames and the camera gives uint16"):
        cal.check_frame(np.zeros((8, 8), np.uint16))


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(CalibrationError, match="slidescan focus calibrate"):
        DeepFocusCalibration.load(tmp_path / "none.json")


def test_textureless_stack_is_refused():
    z, scores, _ = _planes(np.random.default_rng(5))
    with pytest.raises(ValueError, match="textured object"):
        build_calibration(z, scores, [np.zeros(16, bool) for _ in z], Optics(), "glass")


def test_planes_cover_the_saturation_range_inside_the_limits():
    sat = saturation_defocus_um(Optics())
    assert 10 < sat < 20  # 24 px at 0.325 um/px, NA 0.75
    planes = calibration_planes(Optics(), 100.0, (0.0, 1000.0))
    assert planes.size == 81 and planes[0] == pytest.approx(100 - 1.2 * sat)
    with pytest.raises(ValueError, match="soft limits"):
        calibration_planes(Optics(), 100.0, (99.0, 101.0))


def test_find_calibration_picks_the_matching_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    z, scores, valid = _planes(np.random.default_rng(6))
    other = build_calibration(z, scores, valid, Optics("10x/0.30", 0.30, pixel_size_um=0.65), "a")
    other.save(default_path("sim", "10x/0.30"))
    with pytest.raises(CalibrationError, match="no DeepFocus calibration for 20x/0.75"):
        find_calibration(Optics())
    mine = build_calibration(z, scores, valid, Optics(), "b")
    mine.save(default_path("sim", "20x/0.75"))
    assert find_calibration(Optics()).source == "b"


def test_plot_is_a_png(tmp_path):
    z, scores, valid = _planes(np.random.default_rng(7))
    cal = build_calibration(z, scores, valid, Optics(), "x")
    path = write_plot(cal, tmp_path / "cal.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
