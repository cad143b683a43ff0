"""The device registry: every kind registered once, with facts that agree with its driver, its
fake and its shipped profile; lookups that name the known kinds; and no import side effects."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import textwrap
from typing import Literal

import pytest

from slidescan.hardware.profile import load_profile
from slidescan.hardware.registry import (
    CameraConfig,
    CameraKind,
    GrblStageConfig,
    StageConfig,
    StageKind,
    camera_kind,
    camera_kinds,
    fake_schemes,
    register_camera_kind,
    register_stage_kind,
    serial_driver,
    serial_stage_kinds,
    stage_kind,
    stage_kinds,
)

SERIAL = [k.name for k in serial_stage_kinds()]


def test_the_known_kinds_are_registered():
    assert [k.name for k in stage_kinds()][:4] == ["sim", "grbl", "prior", "asi"]
    assert {k.name for k in camera_kinds()} >= {"sim", "opencv"}
    assert set(SERIAL) >= {"grbl", "prior", "asi"} and "sim" not in SERIAL
    assert fake_schemes() >= {"fakegrbl", "fakeprior", "fakeasi"}
    for kind in (*stage_kinds(), *camera_kinds()):
        assert kind.label and "\n" not in kind.label
        assert kind.config.model_fields["type"].default == kind.name


@pytest.mark.parametrize(
    ("lookup", "name", "words"),
    [
        (stage_kind, "tiger", "unknown stage type 'tiger'; known: sim, grbl, prior, asi"),
        (camera_kind, "flir", "unknown camera type 'flir'; known: sim, opencv, basler"),
        (serial_driver, "sim", "'sim' is not a serial stage type; serial stages: grbl, prior"),
    ],
)
def test_an_unknown_kind_is_one_line_naming_the_known_ones(lookup, name, words):
    with pytest.raises(ValueError) as info:
        lookup(name)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", SERIAL)
def test_serial_facts_agree_with_the_driver_the_fake_and_the_shipped_profile(name):
    serial = serial_driver(name)
    driver = serial.load()
    assert driver.kind == name
    assert inspect.signature(driver).parameters["baudrate"].default == serial.default_baud
    protocol = f"slidescan.hardware.drivers.protocol_{serial.fake_scheme}"
    assert importlib.util.find_spec(protocol) is not None, f"no pyserial handler {protocol}"
    example = load_profile(serial.example_profile)
    assert example.stage.type == name
    assert set(serial.quick_options) <= set(inspect.signature(driver).parameters)


def test_grbl_poll_floor_is_the_drivers():
    from slidescan.hardware.drivers.grbl import MIN_POLL_INTERVAL_S
    from slidescan.hardware.registry import GRBL_MIN_POLL_INTERVAL_S

    assert GRBL_MIN_POLL_INTERVAL_S == MIN_POLL_INTERVAL_S


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError, match="'grbl' is already registered"):
        register_stage_kind(stage_kind("grbl"))
    with pytest.raises(ValueError, match="'opencv' is already registered"):
        register_camera_kind(camera_kind("opencv"))


def test_a_registration_that_contradicts_itself_is_refused():
    with pytest.raises(ValueError, match="must default to 'grbl2'"):
        register_stage_kind(StageKind("grbl2", "twin", GrblStageConfig, lambda c: c))
    assert "grbl2" not in [k.name for k in stage_kinds()]

    class TwinCameraConfig(CameraConfig):
        type: Literal["twin"] = "twin"

    with pytest.raises(ValueError, match="give an opener"):
        register_camera_kind(CameraKind("twin", "no way to open it", TwinCameraConfig))
    assert "twin" not in [k.name for k in camera_kinds()]


LIMITS = {"x_um": [0, 1], "y_um": [0, 1], "z_um": [0, 1]}


@pytest.mark.parametrize("name", SERIAL)
def test_validating_through_the_base_picks_the_kinds_model(name):
    config = StageConfig.model_validate({"type": name, "port": "COM3", "limits": LIMITS})
    assert type(config) is stage_kind(name).config
    assert config.model_dump()["type"] == name
    camera = CameraConfig.model_validate({"type": "opencv", "sensor_pixel_um": 3.45})
    assert type(camera) is camera_kind("opencv").config


def test_grbl_keeps_its_own_keys_and_others_do_not_take_them():
    grbl = StageConfig.model_validate(
        {
            "type": "grbl",
            "port": "COM3",
            "limits": LIMITS,
            "axes": {"x": {"speed_um_s": 500.0}},
            "timing": {"boot_timeout_s": 1.0, "home_timeout_s": 60.0},
        }
    )
    dumped = grbl.model_dump()
    assert dumped["axes"]["x"]["speed_um_s"] == 500.0
    assert dumped["timing"]["boot_timeout_s"] == 1.0
    options = grbl.driver_options(0.001)
    assert options["speed_um_s"] == {"x": 500.0} and options["home_timeout_s"] == 60.0
    asi = StageConfig.model_validate({"type": "asi", "port": "COM3", "limits": LIMITS})
    assert "boot_timeout_s" not in asi.model_dump()["timing"]
    assert "speed_um_s" not in asi.driver_options(10.0)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_the_drivers_registers_nothing_with_pyserial_until_a_fake_is_opened():
    """A fresh interpreter: the import leaves pyserial's handler list alone; opening a fake
    URL then registers the fakes (once) and works."""
    result = _run(
        """
        import serial
        before = list(serial.protocol_handler_packages)
        import slidescan.hardware.drivers
        assert serial.protocol_handler_packages == before, serial.protocol_handler_packages
        from slidescan.hardware.drivers.grbl import GrblStage
        assert serial.protocol_handler_packages == before, serial.protocol_handler_packages
        stage = GrblStage("fakegrbl://?boot_s=0.01", boot_timeout_s=0.5)
        stage.move_to(x=10.0)
        assert abs(stage.position().x - 10.0) <= 1.0
        stage.close()
        GrblStage("fakegrbl://?boot_s=0.01", boot_timeout_s=0.5).close()
        added = [p for p in serial.protocol_handler_packages if p not in before]
        assert added == ["slidescan.hardware.drivers"], added
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_opening_a_simulator_profile_imports_no_serial_driver():
    result = _run(
        """
        import sys
        from slidescan.hardware.profile import load_profile
        from slidescan.hardware.registry import stage_kinds
        prof = load_profile("simulator")
        stage_kinds()
        drivers = sorted(m for m in sys.modules if m.startswith("slidescan.hardware.drivers"))
        assert drivers == [], drivers
        assert "serial" not in sys.modules
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
