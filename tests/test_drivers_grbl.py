"""GRBL 1.1 driver against the fake GRBL: framing, character counting, polling, alarms, resets."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from slidescan.hardware.base import SoftLimits
from slidescan.hardware.drivers.fake_grbl import RX_BUFFER_SIZE
from slidescan.hardware.drivers.fakes import fake_controller, open_fake_stage
from slidescan.hardware.drivers.grbl import MAX_LINE_CHARS, GrblStage
from slidescan.hardware.errors import (
    ConnectionLost,
    DeviceError,
    DeviceTimeout,
    NotSupportedError,
)

LIMITS = SoftLimits(x=(-5000.0, 5000.0), y=(-5000.0, 5000.0), z=(-200.0, 200.0))


@pytest.fixture
def stage():
    s = open_fake_stage("grbl", limits=LIMITS)
    yield s
    s.close()


def test_connect_waits_for_the_banner_so_no_byte_is_lost():
    s = open_fake_stage("grbl", limits=LIMITS, boot_s=0.3)  # a slow Arduino boot
    try:
        fake = fake_controller(s)
        assert fake.bytes_lost_booting == 0
        assert fake.lines_received[:2] == ["$I", "$$"]
        assert s.firmware.startswith("GRBL 1.1h")
        assert s.connection.rx_buffer_size == RX_BUFFER_SIZE  # read from [OPT:...]
    finally:
        s.close()


def test_a_board_that_does_not_reboot_is_soft_reset_to_sync():
    s = open_fake_stage("grbl", limits=LIMITS, autoreset=0, driver_options={"boot_timeout_s": 0.1})
    try:
        fake = fake_controller(s)
        assert b"\x18" in fake.received
        assert s.firmware.startswith("GRBL 1.1h")
    finally:
        s.close()


def test_no_grbl_on_the_port_is_a_clear_timeout():
    with pytest.raises(DeviceTimeout, match="no GRBL banner"):
        GrblStage("fakeprior://", boot_timeout_s=0.1, reply_timeout_s=0.1)


def test_lines_end_in_lf_only(stage):
    """CR LF would be two line ends to GRBL: two `ok`s per line and a broken count."""
    stage.move_to(x=10.0)
    fake = fake_controller(stage)
    assert b"\r" not in fake.received
    assert fake.ok_count == len(fake.lines_received)


def test_moves_are_jogs_in_machine_coordinates_in_mm(stage):
    stage.move_to(x=1234.5, y=-20.0, z=7.2)
    line = fake_controller(stage).lines_received[-1]
    assert line.startswith("$J=G53")
    assert "X1.2345" in line and "Y-0.0200" in line and "Z0.0072" in line
    p = stage.position()
    assert (p.x, p.y, p.z) == pytest.approx((1234.5, -20.0, 7.2), abs=1.0)


def test_character_counting_never_overflows_the_128_byte_buffer(stage):
    """Stream jogs without waiting: the planner fills (15 blocks), lines back up in GRBL's
    receive buffer, and the connection must hold back before the buffer overflows."""
    fake = fake_controller(stage)
    conn = stage.connection
    for i in range(40):  # 20 um at 120 mm/min: 10 ms each
        conn.send(f"$J=G53X{0.02 * (i + 1):.4f}F120", wait=False)
    high = fake.rx_high_water
    assert fake.overflow_bytes == 0
    assert high <= RX_BUFFER_SIZE - 1
    assert conn.max_bytes_in_flight <= RX_BUFFER_SIZE - 1
    assert high > 64, f"the buffer was never put to work (high-water {high} bytes)"
    stage.wait()
    assert stage.position().x == pytest.approx(800.0, abs=1.0)
    assert fake.error_codes == []
    assert fake.ok_count == len(fake.lines_received)


def test_lines_longer_than_grbls_line_buffer_are_refused_before_sending(stage):
    before = bytes(fake_controller(stage).received)
    with pytest.raises(DeviceError, match="line too long"):
        stage.connection.send("G1" + "X1.0" * 20)
    assert bytes(fake_controller(stage).received) == before
    assert MAX_LINE_CHARS < 79


def test_status_is_polled_at_5_hz_or_less_with_production_settings():
    s = open_fake_stage(
        "grbl",
        limits=LIMITS,
        quick=False,
        boot_s=0.01,
        driver_options={"speed_um_s": {"x": 1000.0}, "boot_timeout_s": 0.5},
    )
    try:
        fake = fake_controller(s)
        fake.status_times.clear()
        s.move_to(x=1000.0)  # about 1 s
        gaps = np.diff(fake.status_times)
        assert len(gaps) >= 3
        assert gaps.min() >= 0.19, f"polled {1 / gaps.min():.1f} Hz"
    finally:
        s.close()


def test_work_position_reports_are_converted_to_machine_position():
    s = open_fake_stage("grbl", limits=LIMITS, report="wpos")
    try:
        s.move_to(x=250.0, y=-125.0, z=10.0)
        p = s.position()
        assert (p.x, p.y, p.z) == pytest.approx((250.0, -125.0, 10.0), abs=1.0)
    finally:
        s.close()


def test_alarm_stops_and_is_never_unlocked_by_the_driver(stage):
    fake = fake_controller(stage)
    fake.arm_fault("alarm", after_s=0.02)
    with pytest.raises(DeviceError, match="hard limit"):
        stage.move_to(x=3000.0)
    with pytest.raises(DeviceError, match="motion refused"):
        stage.move_to(x=0.0)
    assert not any(line.startswith("$X") for line in fake.lines_received)
    assert not fake.is_moving(time.monotonic())
    stage.unlock()  # a person decided
    assert fake.lines_received[-1] == "$X"
    stage.move_to(x=100.0)
    assert stage.position().x == pytest.approx(100.0, abs=1.0)


def test_a_reset_fails_the_move_and_blocks_motion_until_a_person_acts(stage):
    fake = fake_controller(stage)
    stage.move_to(x=500.0)
    fake.arm_fault("reset", after_s=0.02)
    with pytest.raises(ConnectionLost, match="reset itself"):
        stage.move_to(x=3000.0)
    assert not stage.connection.inflight
    assert stage.position().x == pytest.approx(0.0, abs=1.0)  # a power cycle zeroes GRBL
    with pytest.raises(DeviceError, match="reset since it was connected"):
        stage.move_to(x=10.0)
    stage.unlock()
    stage.move_to(x=10.0)
    assert stage.position().x == pytest.approx(10.0, abs=1.0)


def test_homing_enabled_boots_locked_and_homes():
    s = open_fake_stage(
        "grbl", limits=SoftLimits(x=(-5000, 0), y=(-5000, 0), z=(-200, 0)), homing=1
    )
    try:
        assert s.can_home
        with pytest.raises(DeviceError, match="locked at start-up"):
            s.move_to(x=-100.0)
        s.home()
        s.move_to(x=-100.0, y=-50.0)
        assert s.position().x == pytest.approx(-100.0, abs=1.0)
    finally:
        s.close()


def test_stored_startup_lines_neither_break_the_connection_nor_set_the_units():
    """A machine whose startup line ($N0=G20) runs at every boot: its echo is no reply, and
    jogs say G21 themselves, so an inch-mode parser moves no axis 25.4x too far."""
    s = open_fake_stage("grbl", limits=LIMITS, startup="G54G20")
    try:
        assert "startup line G54G20:ok" in s.connection.messages
        s.move_to(x=1000.0, z=50.0)
        p = s.position()
        assert (p.x, p.z) == pytest.approx((1000.0, 50.0), abs=1.0)
        assert "G21" in fake_controller(s).lines_received[-1]
    finally:
        s.close()


def test_homing_runs_the_startup_lines_before_its_ok():
    s = open_fake_stage(
        "grbl",
        limits=SoftLimits(x=(-5000, 0), y=(-5000, 0), z=(-200, 0)),
        homing=1,
        startup="G20;G54",
    )
    try:
        s.home()
        assert "startup line G20:ok" in s.connection.messages
        s.move_to(x=-100.0, z=-20.0)
        assert (s.position().x, s.position().z) == pytest.approx((-100.0, -20.0), abs=1.0)
    finally:
        s.close()


def test_stop_aborts_a_homing_cycle_at_once():
    """GRBL answers nothing (not even `?`) while it homes, and only a soft reset stops it:
    stop() must not wait for the cycle, and the machine stays locked until homed again."""
    import threading

    s = open_fake_stage(
        "grbl",
        limits=SoftLimits(x=(-5000, 0), y=(-5000, 0), z=(-200, 0)),
        homing=1,
        home_s=30,
        speedup=1,
    )
    try:
        failure: list[BaseException] = []

        def home():
            try:
                s.home()
            except BaseException as exc:
                failure.append(exc)

        t = threading.Thread(target=home)
        t.start()
        time.sleep(0.3)
        assert s.is_moving()  # homing, without asking GRBL
        t0 = time.monotonic()
        s.stop()
        assert time.monotonic() - t0 < 2.0
        t.join(5)
        assert not t.is_alive()
        assert failure and "homing stopped" in str(failure[0])
        assert fake_controller(s).alarm == 6
        with pytest.raises(DeviceError):
            s.move_to(x=-100.0)
    finally:
        s.close()


def test_home_without_homing_is_not_supported(stage):
    assert not stage.can_home
    with pytest.raises(NotSupportedError):
        stage.home()


def test_stop_also_cancels_jogs_still_waiting_in_the_receive_buffer(stage):
    """Jog cancel (0x85) empties the planner, not the receive buffer: stop must keep cancelling
    until nothing is left, or the queued jogs would start again."""
    fake = fake_controller(stage)
    for i in range(30):
        stage.connection.send(f"$J=G53X{0.05 * (i + 1):.4f}F120", wait=False)
    assert len(fake.rx) > 0, "no jog was waiting in the receive buffer"
    stage.stop()
    assert not stage.connection.inflight
    assert fake.rx == bytearray()
    stopped_at = fake.position(time.monotonic())["x"]
    time.sleep(0.1)
    assert not fake.is_moving(time.monotonic())
    assert fake.position(time.monotonic())["x"] == stopped_at < 1.5


def test_backlash_compensation_approaches_from_below():
    s = open_fake_stage("grbl", limits=LIMITS, driver_options={"backlash_um": {"z": 20.0}})
    try:
        fake = fake_controller(s)
        s.move_to(z=100.0)
        n = len(fake.lines_received)
        s.move_to(z=50.0)
        jogs = fake.lines_received[n:]
        assert [j.split("Z")[1].split("F")[0] for j in jogs] == ["0.0300", "0.0500"]
        assert s.position().z == pytest.approx(50.0, abs=1.0)
    finally:
        s.close()


def test_a_lost_ok_is_resynchronised_while_idle(stage):
    """Noise that eats an `ok` leaves the character count one line too high; once GRBL is
    idle the driver resets it (position kept) and carries on."""
    fake = fake_controller(stage)
    fake.corrupt_next_ok = True
    with pytest.raises(DeviceError, match="garbled"):
        stage.move_to(x=300.0)
    assert not stage.connection.inflight
    assert b"\x18" in fake.received
    stage.move_to(x=100.0)
    assert stage.position().x == pytest.approx(100.0, abs=1.0)


def test_queued_moves_wait_for_planner_room_longer_than_a_reply_timeout():
    """With the planner full, GRBL answers the next line only when a move finishes: that is
    no reply timeout, however short the reply timeout is."""
    s = open_fake_stage(
        "grbl",
        limits=LIMITS,
        driver_options={"reply_timeout_s": 0.02, "speed_um_s": {"x": 500.0}},
    )
    try:
        fake = fake_controller(s)
        waits = []
        for i in range(30):  # 200 ms each, queued every ~25 ms
            t0 = time.monotonic()
            s.move_to(x=100.0 * (i + 1), wait=False)
            waits.append(time.monotonic() - t0)
        assert max(waits) > 0.1  # the last ones waited for a move to finish ...
        assert fake.rx_high_water > 64  # ... with lines queued in GRBL's buffer
        assert fake.overflow_bytes == 0
        s.stop()
        assert not fake.is_moving(time.monotonic())
    finally:
        s.close()


def _feed(line: str) -> float:
    return float(line.rsplit("F", 1)[1])


def _coords(line: str) -> dict[str, float]:
    import re

    return {a.lower(): float(v) * 1000.0 for a, v in re.findall(r"([XYZ])(-?[\d.]+)", line)}


def test_a_z_via_point_is_two_jogs_planned_as_one_motion():
    """`move_via` on GRBL: XY halfway with Z to the via point, then the rest with Z up to its
    target; each jog's feed keeps every axis within its own speed, so XY does not crawl at
    Z's speed."""
    s = open_fake_stage(
        "grbl", limits=LIMITS, driver_options={"speed_um_s": {"x": 5000.0, "y": 5000.0, "z": 200.0}}
    )
    try:
        s.move_to(x=0.0, y=0.0, z=10.0)
        fake = fake_controller(s)
        n = len(fake.lines_received)
        s.move_via(400.0, 300.0, 8.0, 4.5)
        first, second = fake.lines_received[n:]
        assert first.startswith("$J=G53") and second.startswith("$J=G53")
        assert _coords(first) == pytest.approx({"x": 200.0, "y": 150.0, "z": 4.5})
        assert _coords(second) == pytest.approx({"x": 400.0, "y": 300.0, "z": 8.0})
        speed = {a: v / 0.06 for a, v in s.speed_mm_min.items()}  # um/s
        assert speed["z"] < speed["x"]
        start = {"x": 0.0, "y": 0.0, "z": 10.0}
        for line in (first, second):
            end = _coords(line)
            delta = {a: abs(end[a] - start[a]) for a in "xyz"}
            length = math.sqrt(sum(d * d for d in delta.values()))
            f = _feed(line) / 0.06  # um/s along the path
            use = [f * delta[a] / length / speed[a] for a in "xyz"]
            assert max(use) == pytest.approx(1.0, abs=0.01), use  # no axis over its speed,
            assert f > speed["z"]  # and XY does not crawl at Z's
            start = end
        p = s.position()
        assert (p.x, p.y, p.z) == pytest.approx((400.0, 300.0, 8.0), abs=1.0)
        with pytest.raises(Exception, match="limit"):
            s.move_via(0.0, 0.0, 0.0, -500.0)  # the via point is checked as well
        assert len(fake.lines_received) == n + 2
    finally:
        s.close()
