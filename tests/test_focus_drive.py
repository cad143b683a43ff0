"""FocusDrive: clamps every target to the soft limits, refuses NaN, approaches from one side,
and brings Z from below inside someone else's move."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_focus_fakes import FakeFocusDevice

from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import FocusError


def test_targets_beyond_the_limits_are_clamped_and_reported():
    dev = FakeFocusDevice(z_limits=(-10.0, 20.0), z0=0.0)
    guard = FocusDrive(dev, overshoot_um=2.0)
    for wild in (1e9, math.inf, 25.0, -1e12, -math.inf, -11.0):
        move = guard.move_to(wild)
        assert move.clamped
        assert move.z_um in (-10.0, 20.0)
    assert not guard.move_to(5.0).clamped
    assert dev.violations == []
    assert all(-10.0 <= z <= 20.0 for z in dev.commanded)


def test_nan_is_refused_without_moving():
    dev = FakeFocusDevice()
    guard = FocusDrive(dev)
    with pytest.raises(FocusError, match="NaN"):
        guard.move_to(float("nan"))
    assert dev.commanded == []


def test_downward_moves_overshoot_then_come_up():
    dev = FakeFocusDevice(z0=10.0)
    guard = FocusDrive(dev, overshoot_um=3.0)
    move = guard.move_to(4.0)
    assert move.commands == (1.0, 4.0)
    move = guard.move_to(6.0)  # upward: direct
    assert move.commands == (6.0,)
    assert guard.moves == 3
    assert guard.commanded == [1.0, 4.0, 6.0]


def test_overshoot_is_clamped_at_the_lower_limit():
    dev = FakeFocusDevice(z_limits=(0.0, 50.0), z0=10.0)
    guard = FocusDrive(dev, overshoot_um=3.0)
    assert guard.move_to(1.0).commands == (0.0, 1.0)
    dev2 = FakeFocusDevice(z_limits=(0.0, 50.0), z0=10.0)
    assert FocusDrive(dev2, overshoot_um=3.0).move_to(0.0).commands == (0.0,)
    assert dev.violations == dev2.violations == []


def test_staying_put_needs_no_move_once_the_guard_approached():
    dev = FakeFocusDevice(z0=5.0)
    guard = FocusDrive(dev, overshoot_um=2.0)
    # Unknown history: the guard re-approaches even though the drive reports the target.
    assert guard.move_to(5.0).commands == (3.0, 5.0)
    assert guard.move_to(5.0).commands == ()


def test_approach_from_above_and_direct():
    dev = FakeFocusDevice(z0=0.0)
    assert FocusDrive(dev, overshoot_um=2.0, side="above").move_to(4.0).commands == (6.0, 4.0)
    dev = FakeFocusDevice(z0=0.0)
    assert FocusDrive(dev, side="none").move_to(-4.0).commands == (-4.0,)


def test_guarded_positions_are_free_of_backlash():
    """With 1.5 um of backlash, a direct downward move lands defocused; a guarded one does not."""
    rng = np.random.default_rng(0)
    targets = rng.uniform(-20, 20, 30)
    direct = FakeFocusDevice(backlash_um=1.5, noise=0.0)
    guarded = FakeFocusDevice(backlash_um=1.5, noise=0.0)
    g_none = FocusDrive(direct, side="none")
    g_below = FocusDrive(guarded, overshoot_um=3.0)
    err_direct, err_guarded = [], []
    for t in targets:
        direct.truth_um = guarded.truth_um = float(t)
        g_none.move_to(t)
        g_below.move_to(t)
        err_direct.append(direct.snap().meta["defocus_um"])
        err_guarded.append(guarded.snap().meta["defocus_um"])
    assert np.max(np.abs(err_guarded)) == pytest.approx(0.0, abs=1e-12)
    assert np.max(np.abs(err_direct)) == pytest.approx(1.5)
    assert all(guarded.snapped_from_below)


def test_invalid_settings_and_limits_are_refused():
    dev = FakeFocusDevice()
    with pytest.raises(ValueError, match="overshoot"):
        FocusDrive(dev, overshoot_um=-1.0)
    with pytest.raises(ValueError, match="side"):
        FocusDrive(dev, side="sideways")  # type: ignore[arg-type]
    bad = FakeFocusDevice(z_limits=(5.0, -5.0))
    with pytest.raises(FocusError, match="invalid z limits"):
        FocusDrive(bad).move_to(0.0)


def test_snap_at_moves_then_snaps():
    dev = FakeFocusDevice(truth_um=2.0, z0=0.0, noise=0.0)
    frame, move = FocusDrive(dev).snap_at(2.0)
    assert move.z_um == 2.0
    assert frame.meta["defocus_um"] == 0.0


class _Drive(FakeFocusDevice):
    def __init__(self, play, **kw):
        super().__init__(**kw)
        self.z_play_um = play


def test_default_overshoot_follows_the_drives_stated_play():
    from slidescan.focus.drive import DEFAULT_OVERSHOOT_UM, PLAY_MARGIN_UM

    assert FocusDrive(_Drive(3.0, z0=10.0)).overshoot_um == 3.0 + PLAY_MARGIN_UM
    assert FocusDrive(FakeFocusDevice(z0=10.0)).overshoot_um == DEFAULT_OVERSHOOT_UM  # unknown
    assert FocusDrive(_Drive("garbage", z0=10.0)).overshoot_um == DEFAULT_OVERSHOOT_UM
    assert FocusDrive(_Drive(-1.0, z0=10.0)).overshoot_um == DEFAULT_OVERSHOOT_UM
    # no play: a downward target is one direct move, and sitting at it needs none
    free = FocusDrive(_Drive(0.0, z0=10.0))
    assert free.move_to(4.0).commands == (4.0,)
    assert FocusDrive(_Drive(0.0, z0=4.0)).move_to(4.0).commands == ()
    # an explicit overshoot still wins
    assert FocusDrive(_Drive(0.0, z0=10.0), overshoot_um=2.0).move_to(4.0).commands == (2.0, 4.0)


def test_simulated_stage_states_the_play_its_own_compensation_leaves():
    from slidescan.hardware.sim import SimConfig, build_simulator

    def play(**stage):
        cfg = SimConfig(stage=stage, camera={"width": 16, "height": 16})
        return build_simulator(cfg).z_play_um

    assert play(preset="commercial") == 0.0
    assert play(preset="lowcost") == 3.0
    assert play(preset="lowcost", compensate_z_um=5.0) == 0.0


def test_a_real_stage_states_no_play_only_when_it_compensates_itself():
    from slidescan.hardware.base import StageBase

    class Stage(StageBase):
        _read_native = _move_native = _wait_native = _stop_native = lambda *a: None

    assert Stage().z_play_um is None  # unknown: focus methods assume the worst
    assert Stage(backlash_um={"z": 5.0}).z_play_um == 0.0  # the stage approaches from below


def test_a_sub_step_nudge_up_does_not_count_as_an_approach_from_below():
    """On a stepped drive whose play is open (it arrived from above), a target less than a
    step above the reported z is a zero-step move: the guard must go down and come back, or
    the frame is taken a whole play-width too high."""
    from slidescan.hardware.sim import SimConfig, build_simulator

    sim = build_simulator(
        SimConfig(stage={"preset": "lowcost", "z_repeatability_um": 0.0}, camera={"width": 16})
    )
    st = sim.sim_stage
    z0 = st.position().z
    st.move_to(z=z0 + 10.0)
    st.move_to(z=z0)  # downward: the carriage now sits `play` above the command
    assert st.true_position().z == pytest.approx(z0 + 3.0, abs=1e-6)
    guard = FocusDrive(sim)
    move = guard.move_to(z0 + 0.03)  # less than half a 0.1 um step above
    assert len(move.commands) == 2 and move.commands[0] < z0 - 3.0
    assert st.true_position().z == pytest.approx(z0, abs=0.06)
    # once the guard has approached, a nudge is trusted (the play is taken up)
    assert guard.move_to(z0 + 0.04).commands == (z0 + 0.04,)


def _carry(dev, log):
    """A stand-in for the engine's combined stage move: Z to `via`, then to `z`."""

    def carry(z, via):
        log.append((z, via))
        if via is not None:
            dev.move_z(via)
        dev.move_z(z)

    return carry


def test_an_approach_inside_another_move_settles_the_drive():
    """The scan engine brings Z to a method's first position from below during the XY move;
    the drive picks the point below and, when the last leg took up the play and the device
    reports the z, counts itself settled there: the first frame needs no move."""
    dev = FakeFocusDevice(z0=9.0)
    drive = FocusDrive(dev, overshoot_um=3.0)
    assert drive.needed_travel_um == pytest.approx(2.75)
    log: list = []
    assert drive.approach(5.0, _carry(dev, log)) == 5.0
    assert log == [(5.0, 2.0)] and dev.commanded == [2.0, 5.0]
    assert drive.move_to(5.0).commands == ()  # the first frame needs no move
    assert drive.move_to(7.0).commands == (7.0,)
    # clamped to the limits, via point included
    dev = FakeFocusDevice(z_limits=(0.0, 50.0), z0=9.0)
    drive = FocusDrive(dev, overshoot_um=3.0)
    log = []
    assert drive.approach(80.0, _carry(dev, log)) == 50.0 and log == [(50.0, 47.0)]


def test_an_approach_that_did_not_take_up_the_play_is_not_trusted():
    # the lower limit cut the last leg short of the overshoot
    dev = FakeFocusDevice(z_limits=(4.0, 50.0), z0=9.0)
    drive = FocusDrive(dev, overshoot_um=3.0)
    drive.approach(5.0, _carry(dev, []))
    assert drive.move_to(5.0).commands == (4.0, 5.0)
    # the device did not get there (a carry that left Z elsewhere)
    dev = FakeFocusDevice(z0=9.0)
    drive = FocusDrive(dev, overshoot_um=3.0)
    drive.approach(5.0, lambda z, via: dev.move_z(6.0))
    assert drive.move_to(5.0).commands == (2.0, 5.0)
    # a drive that approaches from above cannot be brought from below
    with pytest.raises(FocusError, match="from below"):
        FocusDrive(FakeFocusDevice(), side="above").approach(1.0, _carry(dev, []))
    with pytest.raises(FocusError, match="NaN"):
        FocusDrive(FakeFocusDevice()).approach(math.nan, _carry(dev, []))


def test_the_drive_notices_when_something_else_moved_z():
    dev = FakeFocusDevice(z0=0.0)
    drive = FocusDrive(dev, overshoot_um=3.0)
    drive.move_to(5.0)
    dev.move_z(8.0)  # not through the drive, and left more than a step's rounding away
    dev.move_z(5.6)
    assert drive.move_to(6.0).commands == (3.0, 6.0)  # it takes the play up again


def test_an_approach_survives_the_drives_step_rounding():
    """A stepped drive reports the whole step nearest the target; asking the drive for the
    approached z again must not start a new approach because of that rounding."""
    from slidescan.hardware.sim import SimConfig, build_simulator

    sim = build_simulator(SimConfig(stage="lowcost", camera={"width": 16}))
    st = sim.sim_stage
    x, y, _ = st.position().as_tuple()
    target = st.position().z + 2.03  # between two 0.1 um steps, rounded down by the drive
    drive = FocusDrive(sim)
    drive.approach(target, lambda z, via: sim.move_xyz(x + 300.0, y, z, via_z_um=via))
    assert st.position().z == pytest.approx(target - 0.03, abs=1e-9)
    moves = st.moves
    assert drive.move_to(target).commands == () and st.moves == moves
