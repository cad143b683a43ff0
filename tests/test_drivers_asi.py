"""ASI MS-2000 / Tiger driver against the fake ASI: tenths of a micron, `:A` / `:N-n`, `/`."""

from __future__ import annotations

import pytest

from slidescan.hardware.base import SoftLimits
from slidescan.hardware.drivers.asi import AsiStage
from slidescan.hardware.drivers.fakes import fake_controller, open_fake_stage
from slidescan.hardware.errors import DeviceError, DeviceTimeout

LIMITS = SoftLimits(x=(-5000.0, 5000.0), y=(-5000.0, 5000.0), z=(-200.0, 200.0))


@pytest.fixture
def stage():
    s = open_fake_stage("asi", limits=LIMITS)
    yield s
    s.close()


def test_positions_are_tenths_of_a_micron(stage):
    stage.move_to(x=12.34, y=-0.5, z=1.25)
    fake = fake_controller(stage)
    assert "M X=123.4 Y=-5.0 Z=12.5" in fake.lines_received
    native = fake.position(0.0 + 1e12)
    assert native == pytest.approx({"x": 123.4, "y": -5.0, "z": 12.5})
    p = stage.position()
    assert (p.x, p.y, p.z) == pytest.approx((12.3, -0.5, 1.2), abs=0.051)  # W reports 0.1 um


def test_completion_is_polled_with_status(stage):
    stage.move_to(x=2000.0)
    lines = fake_controller(stage).lines_received
    assert lines.count("/") >= 2
    assert lines[-3:] == ["W X", "W Y", "W Z"]


def test_positions_land_on_their_axes_whatever_order_the_controller_answers_in():
    """A Tiger answers WHERE in its cards' order (here Z first), not in the order asked."""
    s = open_fake_stage("asi", limits=LIMITS, hardware_order="zxy")
    try:
        s.move_to(x=100.0, y=-40.0, z=7.5)
        p = s.position()
        assert (p.x, p.y, p.z) == pytest.approx((100.0, -40.0, 7.5), abs=0.051)
    finally:
        s.close()


def test_error_replies_name_the_meaning():
    s = open_fake_stage("asi", limits=SoftLimits(x=(-2e5, 2e5)), travel=1000)
    try:
        with pytest.raises(DeviceError, match=r"parameter out of range \(:N-4\)"):
            s.move_to(x=150.0)  # 1500 tenths: past the fake's travel
        s.move_to(x=50.0)
        assert s.position().x == pytest.approx(50.0)
    finally:
        s.close()


def test_unknown_command_is_reported(stage):
    with pytest.raises(DeviceError, match=r"unknown command \(:N-1\)"):
        stage.connection.command("FOO")


def test_something_else_on_the_port_is_a_clear_error():
    with pytest.raises((DeviceTimeout, DeviceError)):
        AsiStage("fakegrbl://?boot_s=0", reply_timeout_s=0.1)
