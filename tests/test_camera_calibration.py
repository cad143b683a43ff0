"""Camera-to-stage calibration on the simulator with a camera mounted turned and mirrored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slidescan.app.camera_calibration import calibrate_camera, decompose, image_shift_px
from slidescan.hardware.sim import SimConfig, build_simulator
from slidescan.hardware.sim.mount import mount_image, mount_matrix


def _sim(stage="commercial", **camera):
    return build_simulator(
        SimConfig(
            seed=5,
            stage=stage,
            camera={"width": 256, "height": 256, **camera},
            optics={"fft_workers": 1},
        )
    )


@pytest.mark.parametrize(
    ("rotation", "flip_x", "flip_y", "want_rotation", "want_flip"),
    [
        (0.0, False, False, 0.0, False),
        (3.0, False, False, 3.0, False),
        (-2.0, True, False, -2.0, True),
        (0.0, False, True, 180.0, True),  # a mirror in y is a mirror in x turned by 180
        (1.5, True, True, -178.5, False),  # both mirrors: a half turn
    ],
)
def test_calibration_recovers_the_mounting(rotation, flip_x, flip_y, want_rotation, want_flip):
    sim = _sim(rotation_deg=rotation, flip_x=flip_x, flip_y=flip_y)
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    sim.move_xy((x0 + x1) / 2, (y0 + y1) / 2)
    sim.move_z(sim.truth.true_focus_um((x0 + x1) / 2, (y0 + y1) / 2))
    cal = calibrate_camera(sim)
    assert cal.pixel_size_um == pytest.approx(sim.optics.pixel_size_um, rel=0.003)
    turned = (cal.rotation_deg - want_rotation + 180.0) % 360.0 - 180.0
    assert abs(turned) < 0.15 and cal.flipped == want_flip
    assert cal.skew < 0.01 and cal.response > 0.1
    expected = sim.optics.pixel_size_um * mount_matrix(rotation, flip_x, flip_y)
    np.testing.assert_allclose(cal.matrix_um_per_px, expected, atol=0.003)


def test_click_to_move_brings_a_feature_to_the_centre():
    sim = _sim(rotation_deg=4.0, flip_x=True)
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sim.move_xy(cx, cy)
    sim.move_z(sim.truth.true_focus_um(cx, cy))
    cal = calibrate_camera(sim)
    before = sim.snap().image
    dx, dy = cal.stage_offset_um(40.0, -25.0)  # a feature 40 px right, 25 px up of centre
    sim.move_xy(cx + dx, cy + dy)
    after = sim.snap().image
    su, sv, _ = image_shift_px(before, after)
    assert su == pytest.approx(-40.0, abs=0.3) and sv == pytest.approx(25.0, abs=0.3)


def test_decompose_and_mounting_agree():
    for rotation, fx, fy in ((7.0, False, False), (-3.0, True, False)):
        a = 0.5 * mount_matrix(rotation, fx, fy)
        p, theta, flipped, skew = decompose(a)
        assert p == pytest.approx(0.5) and theta == pytest.approx(rotation)
        assert flipped == fx and skew == pytest.approx(0.0, abs=1e-12)
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(mount_image(image, 0.0, True, False), image[:, ::-1])
    np.testing.assert_array_equal(mount_image(image, 0.0, False, True), image[::-1])
    assert mount_image(image, 0.0, False, False) is image
    assert math.isclose(float(np.linalg.det(mount_matrix(10, True, False))), -1.0)


def test_a_blank_field_is_refused():
    sim = _sim()
    x0, y0, _, _ = sim.truth.slide_bounds_um
    sim.move_xy(x0 - 3000, y0 - 3000)  # bare glass
    with pytest.raises(ValueError, match="texture|did not move"):
        calibrate_camera(sim)


def test_the_command_measures_and_saves_into_the_profile(capsys):
    import json

    from slidescan.app.cli import main
    from slidescan.hardware.profile import HardwareProfile, load_profile, save_profile

    data = load_profile("simulator").model_dump(mode="json")
    data["simulator"] = {
        **(data.get("simulator") or {}),
        "camera": {"width": 256, "height": 256, "rotation_deg": -2.5, "flip_x": True},
    }
    data["name"] = "turned"
    save_profile(HardwareProfile.model_validate(data), "turned")
    assert main(["hw", "calibrate-camera", "--profile", "turned", "--save", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rotation_deg"] == pytest.approx(-2.5, abs=0.15) and report["flipped"]
    saved = load_profile("turned")
    assert saved.camera_mount is not None and saved.camera_mount.flipped
    assert saved.camera_mount.rotation_deg == pytest.approx(-2.5, abs=0.15)
    assert saved.objective().pixel_size_um == pytest.approx(0.325, rel=0.003)
    assert (
        main(["hw", "calibrate-camera", "--profile", "turned", "--at", "1000,1000", "--json"]) == 1
    )
    err = capsys.readouterr().err
    assert "too little texture" in err and err.count("\n") == 1
