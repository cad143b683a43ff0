"""Hardware profiles: shipped examples load (the simulator's boot), files round-trip through the
user folder, and a bad file is one line naming the file and the field."""

from __future__ import annotations

import numpy as np
import pytest

from slidescan.hardware.base import SoftLimits
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.profile import (
    HardwareProfile,
    ProfileError,
    list_profiles,
    load_profile,
    open_microscope,
    save_profile,
    user_profile_dir,
)
from slidescan.resources import resource_path

SHIPPED = sorted(p.stem for p in resource_path("profiles").glob("*.toml"))
SERIAL_SHIPPED = {"grbl-openflexure": "grbl", "prior-proscan": "prior", "asi-ms2000": "asi"}


def _sim_available() -> bool:
    try:
        from slidescan.hardware.sim import SimConfig, build_simulator  # noqa: F401
    except ImportError:
        return False
    return True


class FakeCapture:
    def __init__(self, index, backend):
        self.shape = (24, 32, 3)

    def isOpened(self):  # noqa: N802
        return True

    def set(self, prop, value):
        import cv2

        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            self.shape = (self.shape[0], int(value), 3)
        elif prop == cv2.CAP_PROP_FRAME_HEIGHT:
            self.shape = (int(value), self.shape[1], 3)
        return True

    def read(self):
        return True, np.full(self.shape, 80, np.uint8)

    def release(self):
        pass


def test_the_expected_examples_are_shipped():
    assert {"simulator", "simulator-lowcost", *SERIAL_SHIPPED} <= set(SHIPPED)
    assert set(SHIPPED) <= set(list_profiles())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_round_trips(name):
    prof = load_profile(name)
    assert prof.name == name
    assert HardwareProfile.model_validate(prof.model_dump()) == prof
    assert prof.default_objective in [o.name for o in prof.objectives]
    path = prof.optical_path()
    assert 0.05 < path.pixel_size_um < 2.0
    assert 0 < path.na < 1


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.startswith("simulator")])
def test_shipped_simulator_profiles_boot(name):
    if not _sim_available():
        pytest.skip("the optical simulator (slidescan.hardware.sim) has not landed yet")
    prof = load_profile(name)
    small = prof.model_copy(
        update={"simulator": {**(prof.simulator or {}), "camera": {"width": 64, "height": 48}}}
    )
    scope = open_microscope(small)
    try:
        assert isinstance(scope, Microscope)
        assert scope.optics.objective.name == prof.default_objective
        frame = scope.snap()
        assert frame.image.shape[:2] == (48, 64)
        lo, hi = scope.z_limits
        scope.move_z((lo + hi) / 2)
        assert scope.get_z() == pytest.approx((lo + hi) / 2, abs=0.1)
    finally:
        scope.close()


@pytest.mark.parametrize(("name", "kind"), sorted(SERIAL_SHIPPED.items()))
def test_shipped_hardware_profiles_boot_against_the_fakes(name, kind):
    """The profile as shipped, with only the port pointed at the fake controller."""
    prof = load_profile(name)
    stage_cfg = prof.stage.model_copy(update={"port": f"fake{kind}://?speedup=20"})
    if kind == "grbl":
        stage_cfg.timing.boot_timeout_s = 0.5
    fake_prof = prof.model_copy(update={"stage": stage_cfg})
    scope = open_microscope(fake_prof, capture_factory=FakeCapture)
    try:
        assert scope.stage.limits == SoftLimits(
            prof.stage.limits.x_um, prof.stage.limits.y_um, prof.stage.limits.z_um
        )
        lo, hi = scope.z_limits
        z = lo + 0.25 * (hi - lo)
        scope.move_z(z)
        assert scope.get_z() == pytest.approx(z, abs=1.5)
        frame = scope.snap()
        assert frame.image.shape == (prof.camera.height, prof.camera.width, 3)
        assert frame.pixel_size_um == pytest.approx(scope.optics.pixel_size_um)
        assert frame.position is not None and frame.position.z == pytest.approx(z, abs=1.5)
    finally:
        scope.close()


def test_user_profiles_save_list_load_and_shadow_shipped_ones():
    prof = load_profile("asi-ms2000")
    mine = prof.model_copy(update={"name": "my-asi", "description": "bench scope"})
    path = save_profile(mine, "my-asi")
    assert path.parent == user_profile_dir() and path.name == "my-asi.toml"
    assert "my-asi" in list_profiles()
    assert load_profile("my-asi") == mine
    assert load_profile(str(path)) == mine
    shadow = prof.model_copy(update={"description": "edited copy"})
    save_profile(shadow, "asi-ms2000")
    assert load_profile("asi-ms2000").description == "edited copy"
    path.unlink()
    (user_profile_dir() / "asi-ms2000.toml").unlink()


def test_save_refuses_names_that_are_paths():
    with pytest.raises(ProfileError, match="no folders"):
        save_profile(load_profile("simulator"), "../evil")


def _write(tmp_path, text: str):
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """
name = "t"
[stage]
type = "grbl"
port = "fakegrbl://"
[stage.limits]
x_um = [0, 1000]
y_um = [0, 1000]
z_um = [-50, 50]
[camera]
type = "opencv"
sensor_pixel_um = 3.45
[[objectives]]
name = "20x/0.75"
"""


def test_a_good_file_loads(tmp_path):
    prof = load_profile(str(_write(tmp_path, GOOD)))
    assert prof.objective().magnification == 20  # filled in from the shipped objective


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (GOOD.replace('type = "grbl"', 'type = "grbll"'), "stage.type", "Input should be"),
        (GOOD + "\n[stage.timing]\npoll_interval_s = 0.05\n", "stage", "5 Hz or less"),
        (GOOD.replace("z_um = [-50, 50]", "z_um = [50, -50]"), "stage.limits.z_um", "below"),
        (GOOD.replace("sensor_pixel_um = 3.45", 'colour = "red"'), "camera.colour", "Extra"),
        (GOOD.replace('name = "20x/0.75"', 'name = "63x/1.4"'), "objectives.0", "magnification"),
        (GOOD.replace('port = "fakegrbl://"', ""), "stage", "needs a port"),
        (GOOD.split("[stage.limits]")[0] + GOOD.split("z_um = [-50, 50]")[1], "stage", "limits"),
        ('default_objective = "4x"\n' + GOOD, "", "not among the objectives"),
    ],
)
def test_an_invalid_field_is_one_line_naming_file_and_field(tmp_path, text, field, words):
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {field}")
    assert words in message


def test_malformed_toml_is_one_line_naming_the_file(tmp_path):
    path = _write(tmp_path, GOOD.replace('name = "t"', 'name = "t'))
    with pytest.raises(ProfileError, match=r"bad\.toml: not valid TOML: .*line 2") as info:
        load_profile(str(path))
    assert "\n" not in str(info.value)


def test_an_invalid_simulator_table_names_the_simulator_field(tmp_path):
    if not _sim_available():
        pytest.skip("the optical simulator (slidescan.hardware.sim) has not landed yet")
    path = _write(
        tmp_path,
        'name = "s"\n[stage]\ntype = "sim"\n[camera]\ntype = "sim"\n[[objectives]]\n'
        'name = "20x/0.75"\n[simulator.camera]\nwidth = 3\n',
    )
    with pytest.raises(ProfileError, match=r"bad\.toml: simulator\.camera\.width: "):
        load_profile(str(path))


def test_unknown_names_list_the_known_profiles():
    with pytest.raises(ProfileError, match="unknown profile 'nope'; known profiles: .*simulator"):
        load_profile("nope")
    with pytest.raises(ProfileError, match="no profile file"):
        load_profile("/no/such/file.toml")


def test_objectives_resolve_by_name_with_a_clear_error():
    prof = load_profile("prior-proscan")
    assert prof.objective("40x/0.95").na == 0.95
    assert prof.optical_path("10x/0.30").pixel_size_um == pytest.approx(0.345)
    with pytest.raises(ProfileError, match="has no objective '63x'; it has: 10x/0.30"):
        prof.objective("63x")


def test_calibrated_pixel_size_wins_over_the_sensor():
    prof = load_profile("grbl-openflexure")
    assert prof.optical_path().pixel_size_um == pytest.approx(0.12)
    assert prof.optical_path("20x/0.40").pixel_size_um == pytest.approx(0.24)


def test_simulator_and_real_devices_do_not_mix(tmp_path):
    text = GOOD.replace('type = "opencv"', 'type = "sim"')
    with pytest.raises(ProfileError, match="both stage and camera of type 'sim'"):
        load_profile(str(_write(tmp_path, text)))
