"""A real serial driver failing in the middle of a scan (issue: surviving faults).

The production GRBL and Prior drivers talk to their in-process fake controllers; a fault is
armed after a few tiles. The scan must pause with a clear message, keep every tile taken so far
intact on disk, and a resume on a healthy stage must finish the scan with every tile exactly
once.
"""

from __future__ import annotations

import threading

import pytest
from test_runner import FakeCamera, FixedMethod, plan_for

from slidescan.app.events import FrameWritten, RunnerState, StateChanged
from slidescan.app.runner import ScanRunner
from slidescan.app.store import ScanReader
from slidescan.hardware.base import SoftLimits
from slidescan.hardware.clock import VirtualClock
from slidescan.hardware.drivers.fakes import fake_controller, open_fake_stage
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.optics import OpticalPath, get_objective

LIMITS = SoftLimits(x=(-1000.0, 1000.0), y=(-1000.0, 1000.0), z=(-40.0, 40.0))


def _scope(kind: str) -> Microscope:
    stage = open_fake_stage(kind, limits=LIMITS, speedup=50)
    clock = VirtualClock()
    camera = FakeCamera(stage, clock, glass_x_above=1e9)
    return Microscope(stage, camera, OpticalPath(get_objective("20x/0.75")), clock, name=kind)


class _FaultAfter:
    """Observer: arms a controller fault once `n` tiles are written; notes the pause."""

    def __init__(self, scope: Microscope, n: int, fault: str) -> None:
        self.fake = fake_controller(scope.stage)
        self.n, self.fault = n, fault
        self.written = 0
        self.paused = threading.Event()
        self.pause_message = ""

    def on_event(self, event) -> None:
        if isinstance(event, FrameWritten):
            self.written += 1
            if self.written == self.n:
                if self.fault == "vanish":
                    self.fake.vanish()
                elif self.fault == "mute":
                    self.fake.mute()
                else:
                    self.fake.arm_fault(self.fault, 0.0)
        elif isinstance(event, StateChanged) and event.state is RunnerState.PAUSED:
            self.pause_message = event.message
            self.paused.set()


@pytest.mark.parametrize(
    ("kind", "fault", "words"),
    [
        ("grbl", "vanish", ("device error",)),
        ("grbl", "alarm", ("device error", "alarm")),
        ("prior", "mute", ("device error",)),
    ],
)
def test_driver_fault_mid_scan_pauses_and_the_file_resumes(tmp_path, kind, fault, words):
    scope = _scope(kind)
    plan = plan_for(tmp_path, rows=3, cols=3)
    watch = _FaultAfter(scope, n=3, fault=fault)
    runner = ScanRunner(plan, scope, watch, method=FixedMethod(scope))
    runner.start()
    assert watch.paused.wait(60), "the scan did not pause on the controller fault"
    assert runner.state is RunnerState.PAUSED
    message = watch.pause_message.lower()
    assert all(w in message for w in words), watch.pause_message
    assert "\n" not in watch.pause_message

    # Everything written before the fault is on disk, intact, while the scan is paused.
    with ScanReader(tmp_path / "s.h5") as r:
        before = sorted(int(i) for i in r.tiles["index"])
        assert len(before) >= 3
        assert r.verify() == []  # CRC of every stored image matches
    runner.cancel()
    runner.wait(30)
    scope.stage.close()

    # A person fixes the cable / clears the alarm: resume on a healthy controller.
    healthy = _scope(kind)
    resumed = ScanRunner.for_resume(tmp_path / "s.h5", healthy, method=FixedMethod(healthy))
    resumed.start()
    finished = resumed.wait(60)
    healthy.stage.close()
    assert finished.reason.value == "completed", finished.message
    with ScanReader(tmp_path / "s.h5") as r:
        indices = sorted(int(i) for i in r.tiles["index"])
        assert indices == list(range(9))  # every tile exactly once
        assert set(before) <= set(indices)
        assert r.status == "completed"
        assert r.verify() == []
