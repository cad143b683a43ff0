"""Fault injection through the fake controllers: every fault ends in a clear, one-line
exception of the right class and a stopped stage, and the driver never hangs.

Each fault is armed to strike 50 ms into a ~1 s move, the way it would in a scan.
"""

from __future__ import annotations

import time

import pytest

from slidescan.hardware.base import SoftLimits
from slidescan.hardware.drivers.fakes import fake_controller, open_fake_stage
from slidescan.hardware.errors import ConnectionLost, DeviceError, DeviceTimeout, HardwareError

LIMITS = SoftLimits(x=(-5000.0, 5000.0), y=(-5000.0, 5000.0), z=(-200.0, 200.0))
SLOW = {"grbl": {}, "prior": {"xy_speed": 4000}, "asi": {"xy_speed": 40000}}
DRIVER = {"grbl": {"speed_um_s": {"x": 4000.0, "y": 4000.0}}, "prior": {}, "asi": {}}

CASES = [
    # (driver, fault, expected exception, words the message must contain)
    ("grbl", "mute", DeviceTimeout, "no reply"),
    ("prior", "mute", DeviceTimeout, "no reply"),
    ("asi", "mute", DeviceTimeout, "no reply"),
    ("grbl", "garbage", DeviceError, "garbled"),
    ("prior", "garbage", DeviceError, "garbled"),
    ("asi", "garbage", DeviceError, "garbled"),
    ("grbl", "vanish", ConnectionLost, "serial port failed"),
    ("prior", "vanish", ConnectionLost, "serial port failed"),
    ("asi", "vanish", ConnectionLost, "serial port failed"),
    ("grbl", "error", DeviceError, "error:15"),
    ("prior", "error", DeviceError, "E,8"),
    ("asi", "error", DeviceError, ":N-4"),
    ("grbl", "alarm", DeviceError, "alarm 1 (hard limit"),
    ("grbl", "reset", ConnectionLost, "reset itself"),
    ("prior", "reset", DeviceError, "without finishing"),
    ("asi", "reset", DeviceError, "from the target"),
]


@pytest.mark.parametrize(("kind", "fault", "exc_type", "words"), CASES)
def test_fault_mid_move_raises_clearly_and_leaves_the_stage_stopped(kind, fault, exc_type, words):
    stage = open_fake_stage(
        kind,
        limits=LIMITS,
        driver_options=DRIVER[kind],
        fault=fault,
        fault_after=0.05,
        **SLOW[kind],
    )
    fake = fake_controller(stage)
    try:
        t0 = time.monotonic()
        with pytest.raises(exc_type) as info:
            stage.move_to(x=4000.0)
        elapsed = time.monotonic() - t0
        message = str(info.value)
        assert words in message
        assert "\n" not in message and len(message) < 300
        assert elapsed < 3.0, f"took {elapsed:.2f} s to give up"
        now = time.monotonic()
        assert not fake.is_moving(now), "the stage must be stopped after a fault"
        time.sleep(0.05)
        assert fake.position(now) == fake.position(time.monotonic()), "still moving"
    finally:
        stage.close()


@pytest.mark.parametrize("kind", ["grbl", "prior", "asi"])
def test_a_vanished_port_fails_fast_afterwards(kind):
    stage = open_fake_stage(kind, limits=LIMITS)
    fake_controller(stage).vanish()
    with pytest.raises(ConnectionLost):
        stage.move_to(x=1.0)
    t0 = time.monotonic()
    for call in (stage.wait, stage.stop, lambda: stage.move_to(x=2.0)):
        with pytest.raises(ConnectionLost):
            call()
    assert time.monotonic() - t0 < 0.1, "a lost connection must not wait for timeouts"
    stage.close()


@pytest.mark.parametrize("kind", ["prior", "asi"])
def test_driver_recovers_after_garbage(kind):
    """Line noise fails the call that met it; the next command resynchronises and works."""
    stage = open_fake_stage(kind, limits=LIMITS)
    fake = fake_controller(stage)
    try:
        fake.inject_garbage()
        with pytest.raises(DeviceError, match="garbled"):
            stage.position()
        stage.move_to(x=100.0, y=50.0)
        assert stage.position().x == pytest.approx(100.0, abs=0.5)
    finally:
        stage.close()


@pytest.mark.parametrize("kind", ["prior", "asi"])
def test_driver_recovers_after_a_late_reply(kind):
    """A reply that comes after its timeout must not be taken as the next command's answer."""
    stage = open_fake_stage(kind, limits=LIMITS)
    fake = fake_controller(stage)
    try:
        stage.move_to(x=300.0)
        fake.mute()
        with pytest.raises(DeviceTimeout):
            stage.position()
        fake.unmute()
        fake.emit("123,456,789\r" if kind == "prior" else ":A 1 2 3\r\n")  # the late answer
        assert stage.position().x == pytest.approx(300.0, abs=0.5)
    finally:
        stage.close()


def test_fault_url_option_reaches_the_fake():
    stage = open_fake_stage("asi", limits=LIMITS, fault="error")
    try:
        with pytest.raises(DeviceError, match="parameter out of range"):
            stage.move_to(x=10.0)
        stage.move_to(x=10.0)  # the error was for one command only
    finally:
        stage.close()


def test_every_fault_is_a_hardware_error():
    for _, _, exc_type, _ in CASES:
        assert issubclass(exc_type, HardwareError)


@pytest.mark.parametrize("kind", ["grbl", "prior", "asi"])
def test_stop_from_another_thread_ends_a_waiting_move(kind):
    """A stop button on the GUI thread must get through while the scan thread waits."""
    import threading

    stage = open_fake_stage(kind, limits=LIMITS, driver_options=DRIVER[kind], **SLOW[kind])
    errors: list[BaseException] = []

    def scan_thread():
        try:
            stage.move_to(x=4000.0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        worker = threading.Thread(target=scan_thread)
        worker.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        stage.stop()
        worker.join(2.0)
        assert not worker.is_alive(), "the waiting move did not end after stop()"
        assert time.monotonic() - t0 < 1.5
        assert errors == []
        assert not fake_controller(stage).is_moving(time.monotonic())
        assert 100.0 < stage.position().x < 3900.0
    finally:
        stage.close()
