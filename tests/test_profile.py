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
    # the fake set up as the profile's comments say the controller is
    query = {"prior": "&res_z=0.1"}.get(kind, "")
    stage_cfg = prof.stage.model_copy(update={"port": f"fake{kind}://?speedup=20{query}"})
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
        (
            GOOD.replace('type = "grbl"', 'type = "grbll"'),
            "stage.type",
            "unknown stage type 'grbll'; known stage types: sim, grbl, prior, asi",
        ),
        (
            GOOD.replace('type = "opencv"', 'type = "flir"'),
            "camera.type",
            "unknown camera type 'flir'; known camera types: sim, opencv, basler",
        ),
        (GOOD.replace('type = "grbl"\n', ""), "stage.type", "missing; known stage types: sim"),
        (
            GOOD + "\n[stage.timing]\npoll_interval_s = 0.05\n",
            "stage.timing.poll_interval_s",
            "5 Hz or less",
        ),
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
    text = GOOD.replace('type = "opencv"\nsensor_pixel_um = 3.45', 'type = "sim"')
    with pytest.raises(ProfileError, match="both stage and camera of type 'sim'"):
        load_profile(str(_write(tmp_path, text)))


# Profiles as `save_profile` wrote them before each kind had its own table: every stage had
# GRBL's timing keys, and the simulator's stage and camera had a serial stage's and an OpenCV
# camera's keys, all with their defaults.
SAVED_SIM = """
name = "old-sim"
objectives = [{ name = "20x/0.75", magnification = 20.0, na = 0.75, immersion_n = 1.0 }]
default_objective = "20x/0.75"

[stage]
type = "sim"

[stage.axes]

[stage.timing]
reply_timeout_s = 1.0
move_timeout_s = 30.0
boot_timeout_s = 2.5
home_timeout_s = 120.0

[camera]
type = "sim"
index = 0
backend = "auto"

[simulator]
seed = 0
stage = "commercial"
"""

SAVED_PRIOR = """
name = "old-prior"
objectives = [{ name = "20x/0.75", magnification = 20.0, na = 0.75, immersion_n = 1.0 }]

[stage]
type = "prior"
port = "/dev/ttyUSB0"
baud = 9600

[stage.axes.z]
units_per_um = 10.0
sign = 1
backlash_um = 0.0

[stage.limits]
x_um = [0.0, 110000.0]
y_um = [0.0, 72000.0]
z_um = [-2000.0, 2000.0]

[stage.timing]
reply_timeout_s = 1.0
move_timeout_s = 30.0
boot_timeout_s = 2.5
home_timeout_s = 120.0

[camera]
type = "opencv"
index = 0
backend = "auto"
sensor_pixel_um = 3.45
"""


@pytest.mark.parametrize("text", [SAVED_SIM, SAVED_PRIOR, SAVED_PRIOR.replace("prior", "asi")])
def test_profiles_saved_before_the_registry_still_load_and_save_clean(tmp_path, text):
    prof = load_profile(str(_write(tmp_path, text)))
    assert prof.stage.type in ("sim", "prior", "asi")
    path = save_profile(prof, "resaved")
    try:
        saved = path.read_text(encoding="utf-8")
        assert "boot_timeout_s" not in saved and "home_timeout_s" not in saved
        assert load_profile("resaved") == prof
    finally:
        path.unlink()


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (
            "boot_timeout_s = 2.5",
            "boot_timeout_s = 5.0",
            "stage.timing.boot_timeout_s",
            "a 'prior' stage takes no boot_timeout_s (it is GRBL's wait",
        ),
        (
            "home_timeout_s = 120.0",
            "home_timeout_s = 30.0",
            "stage.timing.home_timeout_s",
            "a 'prior' stage takes no home_timeout_s",
        ),
        (
            "backlash_um = 0.0",
            "backlash_um = 0.0\nspeed_um_s = 500.0",
            "stage.axes.z.speed_um_s",
            "a 'prior' stage takes no speed_um_s (it is GRBL's jog speed); remove it",
        ),
    ],
)
def test_a_grbl_only_key_with_a_value_of_its_own_is_refused(tmp_path, old, new, field, words):
    path = _write(tmp_path, SAVED_PRIOR.replace(old, new))
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: ") and words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            'type = "sim"\n\n[stage.axes]',
            'type = "sim"\nport = "COM3"\n\n[stage.axes]',
            "stage.port",
        ),
        ("move_timeout_s = 30.0", "move_timeout_s = 60.0", "stage.timing.move_timeout_s"),
        ("index = 0", "index = 2", "camera.index"),
    ],
)
def test_a_simulator_key_of_a_real_device_is_refused(tmp_path, old, new, field):
    path = _write(tmp_path, SAVED_SIM.replace(old, new))
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    assert str(info.value).startswith(f"{path}: {field}: a 'sim' ")
    assert "[simulator" in str(info.value)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_profile_saves_its_kinds_own_keys(name):
    prof = load_profile(name)
    dumped = prof.model_dump(mode="json")
    assert set(dumped["stage"]) == set(type(prof.stage).model_fields)
    assert set(dumped["camera"]) == set(type(prof.camera).model_fields)


def test_the_simulator_opens_whole_not_as_a_bare_stage_or_camera():
    from slidescan.hardware.profile import open_camera, open_stage

    prof = load_profile("simulator")
    with pytest.raises(ProfileError, match="'sim' opens with its simulated microscope"):
        open_stage(prof.stage)
    with pytest.raises(ProfileError, match="'sim' opens with its simulated microscope"):
        open_camera(prof)
