"""Fault injection through the fake controllers: every fault ends in a clear, one-line
exception of the right class and a stopped stage, and the driver never hangs. A stop the
program asks for is no fault: it ends the move quietly, whatever the timing.

Each fault is armed to strike 50 ms into a ~1 s move, the way it would in a scan.
"""

from __future__ import annotations

import threading
import time

import pytest

from slidescan.hardware.base import SoftLimits
from slidescan.hardware.drivers.fakes import fake_controller, halt_controller, open_fake_stage
from slidescan.hardware.errors import ConnectionLost, DeviceError, DeviceTimeout, HardwareError
from slidescan.hardware.registry import serial_stage_kinds

SERIAL_KINDS = [k.name for k in serial_stage_kinds()]

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


@pytest.mark.parametrize("kind", SERIAL_KINDS)
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


@pytest.mark.parametrize("kind", SERIAL_KINDS)
def test_stop_from_another_thread_ends_a_waiting_move(kind):
    """A stop button on the GUI thread must get through while the scan thread waits."""
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


@pytest.mark.parametrize("kind", SERIAL_KINDS)
def test_a_stop_ends_a_waiting_move_quietly_even_when_the_waiter_sees_the_stage_still_first(
    kind, monkeypatch
):
    """The race of a loaded machine, made certain: the stop has taken effect in the controller
    and the waiting scan thread sees the stage still, short of its target, while the thread that
    asked for the stop has not yet heard back from the controller. It is still a stop."""
    stage = open_fake_stage(kind, limits=LIMITS, driver_options=DRIVER[kind], **SLOW[kind])
    errors: list[BaseException] = []
    waiter_done = threading.Event()
    stop_native = stage._stop_native
    stopper = threading.current_thread()

    def stop_descheduled_after_the_controller_stopped() -> None:
        if threading.current_thread() is stopper:
            halt_controller(stage)  # the controller has obeyed: the stage stands still now
            waiter_done.wait(2.0)  # ... and the stopping thread resumes only after the waiter
        stop_native()

    monkeypatch.setattr(stage, "_stop_native", stop_descheduled_after_the_controller_stopped)

    def scan_thread():
        try:
            stage.move_to(x=4000.0)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            waiter_done.set()

    try:
        worker = threading.Thread(target=scan_thread)
        worker.start()
        time.sleep(0.2)
        stage.stop()
        worker.join(2.0)
        assert not worker.is_alive(), "the waiting move did not end after stop()"
        assert errors == []
        assert not fake_controller(stage).is_moving(time.monotonic())
        assert 100.0 < stage.position().x < 3900.0
    finally:
        stage.close()


def _stop_during_the_first_wait(stage, monkeypatch) -> None:
    """Press stop once, as the first leg of the next move starts to be waited for."""
    wait_native = stage._wait_native
    pressed: list[bool] = []

    def wait(timeout_s: float) -> None:
        if not pressed:
            pressed.append(True)
            stage.stop()
        wait_native(timeout_s)

    monkeypatch.setattr(stage, "_wait_native", wait)


@pytest.mark.parametrize("kind", SERIAL_KINDS)
def test_a_stop_ends_the_whole_move_not_just_its_backlash_leg(kind, monkeypatch):
    """With backlash compensation a move down is two legs: past the target, then up to it.
    A stop during the first leg must not be followed by the second."""
    options = {**DRIVER[kind], "backlash_um": {"x": 300.0}}
    stage = open_fake_stage(kind, limits=LIMITS, driver_options=options, **SLOW[kind])
    try:
        stage.move_to(x=1000.0)
        _stop_during_the_first_wait(stage, monkeypatch)
        stage.move_to(x=500.0)  # down: first to 200, then up to 500
        assert not fake_controller(stage).is_moving(time.monotonic())
        x = stage.position().x
        assert x > 700.0, f"the stage went on to x = {x:.1f} after the stop"
    finally:
        stage.close()


@pytest.mark.parametrize("kind", SERIAL_KINDS)
def test_a_stop_ends_the_whole_move_via(kind, monkeypatch):
    """`move_via` (Z to a via point, then to its target) stops whole, too."""
    stage = open_fake_stage(kind, limits=LIMITS, driver_options=DRIVER[kind], **SLOW[kind])
    try:
        _stop_during_the_first_wait(stage, monkeypatch)
        stage.move_via(2000.0, 0.0, 50.0, -100.0)
        assert not fake_controller(stage).is_moving(time.monotonic())
        p = stage.position()
        assert p.x < 1500.0 and abs(p.z - 50.0) > 10.0, f"the move went on after the stop: {p}"
    finally:
        stage.close()
