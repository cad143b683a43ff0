"""One contract for every stage: the simulator's and each serial driver over its fake controller.

Moves reach their targets, positions read back, soft limits refuse a target before anything
is commanded, stop halts a move under way, and a move that overruns its time raises
`DeviceTimeout` and leaves the stage stopped.

The stages under test are the registry's stage kinds, so a newly registered kind is in the
contract at once: a serial kind runs against its fake controller, with the per-kind settings
below where it has them (a kind without them runs on its defaults).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from slidescan.hardware.base import Position, SoftLimits, Stage
from slidescan.hardware.drivers.fakes import fake_controller, open_fake_stage
from slidescan.hardware.errors import DeviceTimeout, LimitExceeded
from slidescan.hardware.registry import stage_kind, stage_kinds

LIMITS = SoftLimits(x=(-5000.0, 5000.0), y=(-5000.0, 5000.0), z=(-200.0, 200.0))
#: Slow fake motion so a long move lasts ~1 s: time to stop it halfway (the fakes' URL options).
SLOW = {"grbl": {}, "prior": {"xy_speed": 4000}, "asi": {"xy_speed": 40000, "z_speed": 20000}}
#: ... and the driver options to the same end.
SLOW_DRIVER = {"grbl": {"speed_um_s": {"x": 4000.0, "y": 4000.0, "z": 2000.0}}}
#: How close a position reads back: GRBL reports 1 um steps with 3 decimals in mm; Prior
#: counts integer units; ASI tenths of a micron.
TOLERANCE_UM = {"grbl": 1.0, "prior": 1.0, "asi": 0.1}
#: How each controller's motion commands begin (to tell that a refused move sent none).
MOTION_PREFIXES = {"grbl": ("$J=", "G0", "G1"), "prior": ("G", "U", "D", "V"), "asi": ("M", "R")}


@dataclass
class Harness:
    """A stage under test, where it may move, and how to tell the motion commands sent."""

    stage: Stage
    origin: Position
    tolerance_um: float
    #: Number of motion commands the controller has received so far (None: cannot tell).
    commands_sent: Callable[[], int] | None = None
    #: Let hardware time pass: real sleep for the fakes, the virtual clock for the simulator.
    pass_time: Callable[[float], None] = time.sleep

    def at(self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> tuple[float, float, float]:
        o = self.origin
        return o.x + dx, o.y + dy, o.z + dz

    def assert_at(self, x: float, y: float, z: float) -> None:
        p = self.stage.position()
        for axis, want in zip("xyz", (x, y, z), strict=True):
            assert p.get(axis) == pytest.approx(want, abs=self.tolerance_um), (axis, p)


def _motion_counter(stage, kind: str) -> Callable[[], int] | None:
    if kind not in MOTION_PREFIXES:
        return None
    fake = fake_controller(stage)
    prefixes = MOTION_PREFIXES[kind]

    def count() -> int:
        return sum(1 for line in fake.lines_received if line.upper().startswith(prefixes))

    return count


def _fake_harness(kind: str) -> Iterator[Harness]:
    options = dict(SLOW.get(kind, {}))
    driver = SLOW_DRIVER.get(kind, {})
    stage = open_fake_stage(kind, limits=LIMITS, driver_options=driver, **options)
    tol = TOLERANCE_UM.get(kind, max(stage.axis_tolerance_um(a) for a in "xyz"))
    try:
        yield Harness(stage, Position(0.0, 0.0, 0.0), tol, _motion_counter(stage, kind))
    finally:
        stage.close()


def _sim_harness() -> Iterator[Harness]:
    from slidescan.hardware.sim import SimConfig, build_simulator

    config = SimConfig.model_validate(
        {
            "camera": {"width": 64, "height": 64},
            "stage": {
                "preset": "commercial",
                "x_limits_um": LIMITS.x,
                "y_limits_um": LIMITS.y,
                "z_limits_um": LIMITS.z,
                "xy_jitter_um": 0.0,
                "z_repeatability_um": 0.0,
                "xy_speed_um_s": 4000.0,  # slow, as for the fakes: a long move lasts ~1 s
                "xy_accel_um_s2": 40000.0,
            },
        }
    )
    scope = build_simulator(config)
    stage = scope.stage
    stage.move_to(0.0, 0.0, 0.0)
    try:
        yield Harness(stage, Position(0.0, 0.0, 0.0), 0.06, None, scope.clock.sleep)
    finally:
        scope.close()


IMPLEMENTATIONS = [k.name for k in stage_kinds()]


@pytest.fixture(params=IMPLEMENTATIONS)
def h(request) -> Iterator[Harness]:
    kind = stage_kind(request.param)
    if kind.serial is not None:
        yield from _fake_harness(kind.name)
    elif kind.name == "sim":
        yield from _sim_harness()
    else:
        pytest.fail(f"stage kind {kind.name!r} has no harness in the contract suite: add one")


def test_every_registered_kind_is_under_contract():
    assert {"sim", "grbl", "prior", "asi"} <= set(IMPLEMENTATIONS)


class TestStageContract:
    def test_satisfies_the_stage_protocol(self, h: Harness):
        assert isinstance(h.stage, Stage)
        assert h.stage.limits.range("z") == LIMITS.range("z")

    def test_move_to_reaches_every_axis_target(self, h: Harness):
        target = h.at(120.0, -80.0, 15.0)
        h.stage.move_to(*target)
        h.assert_at(*target)
        assert not h.stage.is_moving()

    def test_single_axis_move_leaves_the_others(self, h: Harness):
        h.stage.move_to(*h.at(50.0, 60.0, 5.0))
        h.stage.move_to(z=h.at(dz=-12.0)[2])
        h.assert_at(*h.at(50.0, 60.0, -12.0))

    def test_move_by_is_relative(self, h: Harness):
        h.stage.move_to(*h.at(10.0, 10.0, 0.0))
        h.stage.move_by(dx=25.0, dz=3.0)
        h.assert_at(*h.at(35.0, 10.0, 3.0))

    def test_downward_moves_arrive_too(self, h: Harness):
        h.stage.move_to(*h.at(300.0, 300.0, 40.0))
        h.stage.move_to(*h.at(100.0, 200.0, -40.0))
        h.assert_at(*h.at(100.0, 200.0, -40.0))

    @pytest.mark.parametrize(
        "target",
        [{"x": 5000.5}, {"y": -5001.0}, {"z": 200.001}, {"z": -250.0}, {"z": float("nan")}],
    )
    def test_target_outside_the_soft_limits_is_refused_before_anything_moves(
        self, h: Harness, target
    ):
        h.stage.move_to(*h.at(20.0, 20.0, 2.0))
        before = h.commands_sent() if h.commands_sent else None
        with pytest.raises(LimitExceeded):
            h.stage.move_to(**target)
        if h.commands_sent:
            assert h.commands_sent() == before, "a refused move must command nothing"
        h.assert_at(*h.at(20.0, 20.0, 2.0))

    def test_move_by_past_a_limit_is_refused(self, h: Harness):
        h.stage.move_to(z=190.0)
        with pytest.raises(LimitExceeded):
            h.stage.move_by(dz=20.0)
        assert h.stage.position().z == pytest.approx(190.0, abs=h.tolerance_um)

    def test_stop_halts_a_move_under_way(self, h: Harness):
        h.stage.move_to(x=-4000.0, wait=False)
        h.pass_time(0.15)
        assert h.stage.is_moving()
        h.stage.stop()
        assert not h.stage.is_moving()
        x = h.stage.position().x
        assert -4000.0 + 100 < x < -100.0, f"stopped at {x}: it should be part way"
        h.pass_time(0.1)
        assert h.stage.position().x == pytest.approx(x, abs=h.tolerance_um), "still moving"
        h.stage.wait(timeout_s=1.0)  # nothing pending: returns at once

    def test_wait_timeout_raises(self, h: Harness):
        h.stage.move_to(x=4000.0, wait=False)
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout):
            h.stage.wait(timeout_s=0.1)
        assert time.monotonic() - t0 < 2.0
        h.stage.stop()  # the serial drivers have stopped already; stop() is always safe
        assert not h.stage.is_moving()
        x = h.stage.position().x
        assert 0.0 < x < 3900.0
        h.pass_time(0.1)
        assert h.stage.position().x == pytest.approx(x, abs=h.tolerance_um)

    def test_move_timeout_applies_to_waited_moves(self, h: Harness):
        h.stage.move_timeout_s = 0.1  # type: ignore[attr-defined]
        with pytest.raises(DeviceTimeout):
            h.stage.move_to(y=4000.0)
        h.stage.stop()
        assert not h.stage.is_moving()
        assert h.stage.position().y < 3900.0
