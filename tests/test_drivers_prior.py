"""Prior ProScan III driver against the fake ProScan: standard mode, `R` on completion,
replies overtaking a pending `R`, error codes."""

from __future__ import annotations

import time

import pytest

from slidescan.hardware.base import AxisCalibration, SoftLimits
from slidescan.hardware.drivers.fakes import fake_controller, open_fake_stage
from slidescan.hardware.drivers.prior import PriorStage
from slidescan.hardware.errors import DeviceError, DeviceTimeout

LIMITS = SoftLimits(x=(-5000.0, 5000.0), y=(-5000.0, 5000.0), z=(-200.0, 200.0))


@pytest.fixture
def stage():
    s = open_fake_stage("prior", limits=LIMITS, xy_speed=4000)
    yield s
    s.close()


def test_standard_mode_is_selected_first(stage):
    assert fake_controller(stage).lines_received[0] == "COMP,0"
    assert stage.firmware == "ProScan version 100"


def test_a_controller_left_in_compatibility_mode_is_switched_back():
    """In compatibility mode a move answers R at once; a driver that forgot COMP,0 would take
    that for arrival and snap images while the stage still moves."""
    s = open_fake_stage("prior", limits=LIMITS, comp=1, xy_speed=4000)
    try:
        fake = fake_controller(s)
        t0 = time.monotonic()
        s.move_to(x=1000.0)
        assert time.monotonic() - t0 > 0.2  # 1 mm at 4 mm/s
        assert not fake.is_moving(time.monotonic())
        assert s.position().x == 1000.0
    finally:
        s.close()


def test_a_move_finishes_with_r_and_queries_overtake_it(stage):
    stage.move_to(x=2000.0, wait=False)
    assert stage.connection.pending_moves == 1
    x_mid = stage.position().x  # 'P' is answered while the R is still to come
    assert 0.0 < x_mid < 2000.0
    assert stage.is_moving()
    stage.wait()
    assert stage.connection.pending_moves == 0
    assert stage.position().x == 2000.0


def test_xy_and_z_are_separate_moves_each_with_its_r(stage):
    fake = fake_controller(stage)
    stage.move_to(x=10.0, y=20.0, z=-5.0)
    i = fake.lines_received.index("G,10,20")
    assert fake.lines_received[i : i + 3] == ["G,10,20", "GZ,-5", "$"]  # '$': sync marker
    stage.move_to(y=30.0)
    assert "GY,30" in fake.lines_received


def test_z_in_tenths_of_a_micron_with_a_calibration():
    s = open_fake_stage(
        "prior",
        limits=LIMITS,
        res_z=0.1,
        driver_options={"calibration": {"z": AxisCalibration(10.0)}},
    )
    try:
        s.move_to(z=12.3)
        assert "GZ,123" in fake_controller(s).lines_received
        assert s.position().z == pytest.approx(12.3)
    finally:
        s.close()


def test_a_refused_move_fails_at_once_even_without_waiting(stage):
    fake_controller(stage).fail_next_move()
    with pytest.raises(DeviceError, match=r"value out of range \(E,8\)"):
        stage.move_to(x=100.0, wait=False)
    assert stage.connection.pending_moves == 0
    stage.move_to(x=100.0)
    assert stage.position().x == 100.0


def test_silence_is_a_timeout_not_a_hang():
    with pytest.raises(DeviceTimeout, match="no reply"):
        PriorStage("fakegrbl://?boot_s=10", reply_timeout_s=0.1)  # a board still booting


def test_another_controller_is_not_taken_for_a_proscan():
    with pytest.raises(DeviceError, match="no Prior ProScan on fakeasi://"):
        PriorStage("fakeasi://", reply_timeout_s=0.1)


def test_a_filter_wheel_on_the_same_controller_does_not_keep_the_stage_moving():
    """`$` also carries the controller's other axes (bits 8 and up): a wheel that is turning
    or never reports settled must not hold a stage move or a stop."""
    s = open_fake_stage("prior", limits=LIMITS, other_axes=3)
    try:
        s.move_to(x=500.0, z=20.0)
        assert not s.is_moving()
        s.stop()
        assert (s.position().x, s.position().z) == pytest.approx((500.0, 20.0), abs=1.0)
    finally:
        s.close()


def test_a_controller_unit_other_than_the_profiles_is_refused_at_connect():
    """RES,z says 0.1 um per unit but the profile assumes 1 um: every Z move would be 10x off
    and the soft limits would not be the real travel."""
    with pytest.raises(DeviceError, match=r"counts Z in 0.1 um \(RES,z\).*10 units per um"):
        open_fake_stage("prior", limits=LIMITS, res_z=0.1)


def test_a_controller_that_knows_no_resolution_is_taken_at_the_profiles_word(caplog):
    s = open_fake_stage("prior", limits=LIMITS, res_s="none", res_z="none")
    try:
        s.move_to(x=100.0)
        assert s.position().x == pytest.approx(100.0)
        assert "RES,s not answered" in caplog.text
    finally:
        s.close()
