"""Low-cost stage mechanics in stack replay: steps, backlash, repeatability, the eval's scoring
of the true z, and `slidescan focus eval --stage`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from slidescan.app.cli import main
from slidescan.app.tools.evaluate import evaluate_method, trial_seed
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import FocusMethod, FocusResult
from slidescan.hardware.optics import OpticalPath, get_objective
from slidescan.hardware.replay import (
    ReplayMechanics,
    ReplayMicroscope,
    ReplayStage,
    ReplayTiming,
)
from slidescan.hardware.sim.config import STAGE_PRESETS
from slidescan.hardware.stackfile import FocusStack, write_stacks

OPTICS = OpticalPath(get_objective("20x/0.75"))
B = 3.0  # the low-cost preset's Z backlash


def _stack(truth: float = 0.0, half: float = 12.0, step: float = 0.25, sid: str = "m0"):
    """Blurred texture, sharpest at `truth`; small so a test stays fast."""
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.uniform(0, 255, (48, 48)), 1.0)
    z = truth + np.arange(-half, half + step / 2, step)
    planes = [ndimage.gaussian_filter(field, 0.8 * abs(d)) for d in z - truth]
    images = np.clip(np.rint(planes), 0, 255).astype(np.uint8)
    return FocusStack(sid, images, z, true_focus_um=truth)


def _mech(**kw) -> ReplayMechanics:
    return ReplayMechanics(**({"arrived_from": "below"} | kw))


def _result(z, frame=None):
    return FocusResult(z, 0 if frame is None else 1, 0.0, 0.0, 1.0, final_frame=frame)


# -- the stage ---------------------------------------------------------------------------------
def test_backlash_lags_after_a_reversal_and_the_camera_sees_the_true_z():
    stack = _stack()
    scope = ReplayMicroscope(stack, OPTICS, start_z_um=0.0, mechanics=_mech(z_backlash_um=B))
    expected_true = []
    for cmd in (2.0, -2.0, -3.0, -1.0, 1.5, 4.0):  # up, reversal down, down, up, up, up
        scope.move_z(cmd)
        assert scope.get_z() == cmd  # the stage reports the command
        expected_true.append(scope.true_z_um)
    # up follows; down lags by b; up again first takes up the play, then follows
    assert expected_true == pytest.approx([2.0, 1.0, 0.0, 0.0, 1.5, 4.0])
    scope.move_z(1.0)
    frame = scope.snap()
    assert scope.true_z_um == pytest.approx(4.0)
    assert frame.position.z == 1.0  # what the drive reports ...
    assert frame.meta["z_um"] == pytest.approx(4.0)  # ... and what the camera really saw
    assert frame.meta["defocus_um"] == pytest.approx(4.0 - stack.true_focus_um)
    assert frame.meta["true_position_um"][2] == pytest.approx(4.0)
    np.testing.assert_array_equal(frame.image, stack.images[64])  # z = 4.0 is plane 64


def test_approaching_from_below_is_unaffected_by_backlash():
    stack = _stack()
    for target in (-1.3, 2.7, 0.4):
        scope = ReplayMicroscope(
            stack, OPTICS, start_z_um=5.0, mechanics=ReplayMechanics(z_backlash_um=B)
        )
        assert scope.true_z_um != pytest.approx(5.0)  # started with the play open
        FocusDrive(scope, overshoot_um=B + 0.5).move_to(target)
        assert scope.true_z_um == pytest.approx(target) and scope.get_z() == pytest.approx(target)


def test_reported_z_is_quantised_to_steps_and_small_moves_are_free():
    timing = ReplayTiming(z_speed_um_per_s=100.0, z_accel_um_per_s2=None, z_settle_s=0.0)
    stage = ReplayStage(
        (0.05, 5.03), start_z_um=1.04, timing=timing, mechanics=_mech(z_step_um=0.1)
    )
    assert stage.position().z == pytest.approx(1.0) and stage.true_z_um == pytest.approx(1.0)
    stage.move_to(z=1.02)  # rounds to the same step: no move, no time
    assert stage.moves == 0 and stage.clock.now() == 0.0
    stage.move_to(z=1.26)
    assert stage.position().z == pytest.approx(1.3) and stage.true_z_um == pytest.approx(1.3)
    assert stage.clock.now() == pytest.approx(0.3 / 100.0)  # time of the quantised move
    stage.move_to(z=5.03)  # nearest step 5.0 ... kept inside the range
    assert stage.position().z == pytest.approx(5.0)
    stage.move_to(z=0.05)  # nearest step 0.1 (0.0 would be outside)
    assert stage.position().z == pytest.approx(0.1)
    assert stage.moves == 3


def test_repeatability_is_seeded_reproducible_and_has_the_stated_spread():
    def run(seed):
        stage = ReplayStage(
            (0.0, 20.0), start_z_um=1.0, mechanics=_mech(z_repeatability_um=0.08, seed=seed)
        )
        out = []
        for k in range(400):
            stage.move_to(z=1.0 + (k % 2))  # alternate 1 <-> 2 (no backlash: only errors)
            out.append(stage.true_z_um - stage.position().z)
        return np.array(out)

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.std(a) == pytest.approx(0.08, rel=0.15) and abs(np.mean(a)) < 0.02
    stage = ReplayStage((0.0, 20.0), start_z_um=1.0, mechanics=_mech(z_repeatability_um=0.08))
    before = stage.true_z_um
    stage.move_to(z=1.0)  # no move: no new error
    assert stage.true_z_um == before


def test_true_z_is_clamped_to_the_stack_and_counted():
    stage = ReplayStage((0.0, 10.0), start_z_um=9.0, mechanics=ReplayMechanics(z_backlash_um=B))
    assert stage.true_z_um == 10.0 and stage.true_z_clamps == 1  # carriage at 12, stack ends at 10
    stage.move_to(z=5.0)
    assert stage.true_z_um == pytest.approx(8.0) and stage.true_z_clamps == 1


def test_presets_give_the_simulator_stage_and_keep_the_recorded_camera():
    recorded = ReplayTiming(exposure_ms=7.0, readout_s=0.02, strobe_ms=0.1)
    lowcost = STAGE_PRESETS["lowcost"]
    t = ReplayTiming.from_stage_preset("lowcost", base=recorded)
    assert (t.z_speed_um_per_s, t.z_accel_um_per_s2) == (
        lowcost.z_speed_um_s,
        lowcost.z_accel_um_s2,
    )
    assert t.z_settle_s == pytest.approx(lowcost.z_settle_ms / 1000.0) and t.strobe_ms is None
    assert (t.exposure_ms, t.readout_s) == (7.0, 0.02)
    m = ReplayMechanics.from_stage_preset("lowcost")
    assert (m.z_step_um, m.z_backlash_um, m.z_repeatability_um) == (0.1, 3.0, 0.08)
    assert ReplayMechanics.from_stage_preset("commercial").z_backlash_um == 0.0
    assert ReplayTiming.from_stage_preset("commercial").strobe_ms == 0.1
    for make in (ReplayTiming.from_stage_preset, ReplayMechanics.from_stage_preset):
        with pytest.raises(ValueError, match="known presets: commercial, lowcost"):
            make("bogus")
    with pytest.raises(ValueError, match="z_backlash_um"):
        ReplayMechanics(z_backlash_um=-1.0)


def test_replay_stage_states_its_play():
    stack = _stack()
    assert (
        ReplayMicroscope(
            stack, OPTICS, mechanics=ReplayMechanics(z_backlash_um=B)
        ).replay_stage.z_play_um
        == B
    )
    assert (
        ReplayMicroscope(stack, OPTICS, mechanics=ReplayMechanics()).replay_stage.z_play_um == 0.0
    )
    compensated = ReplayMechanics(z_backlash_um=B, z_compensate_um=4.0)
    scope = ReplayMicroscope(stack, OPTICS, start_z_um=5.0, mechanics=compensated)
    assert scope.replay_stage.z_play_um == 0.0
    scope.move_z(1.0)  # StageBase goes 4 um further down first, then comes up
    assert scope.true_z_um == pytest.approx(1.0) and scope.moves == 2


# -- the eval ----------------------------------------------------------------------------------
class StraightDown(FocusMethod):
    """Knows the truth and moves straight to it, whatever side it comes from (forgets the
    approach direction); snaps its final frame there."""

    name = "straight"

    def __init__(self, final_frame: bool = True) -> None:
        self.final_frame = final_frame

    def focus(self, drive, hint):
        truth = drive.device.snap().meta["true_focus_um"]
        drive.device.move_z(truth)
        return _result(truth, drive.device.snap() if self.final_frame else None)


def test_a_method_that_forgets_the_approach_direction_scores_worse_with_backlash():
    stacks = [_stack(truth=0.5 * k, sid=f"s{k}") for k in range(3)]
    ideal = evaluate_method(StraightDown(), stacks, 4.0, 4, seed=1, optics=OPTICS)
    rough = evaluate_method(
        StraightDown(),
        stacks,
        4.0,
        4,
        seed=1,
        optics=OPTICS,
        mechanics=ReplayMechanics(z_backlash_um=B),
    )
    assert ideal.summary.max_abs_um == pytest.approx(0.0, abs=1e-9)
    # The drive starts at the hint with the play open (carriage at hint + b); going straight
    # to the truth leaves it at min(max(hint + b, truth), truth + b).
    for r in rough.records:
        expected = min(max(r.hint_z_um + B, r.true_focus_um), r.true_focus_um + B)
        assert r.z_um == pytest.approx(expected)
        assert r.z_commanded_um == pytest.approx(r.true_focus_um)
    assert rough.summary.mae_um > 1.0 and rough.summary.bias_um > 1.0
    assert rough.summary.within_fraction < ideal.summary.within_fraction == 1.0
    assert rough.stage == "custom" and "backlash 3 um" in rough.format_table()
    # Without a final frame the eval takes the final image the way a scan does (from below):
    # the backlash is gone again.
    scan_like = evaluate_method(
        StraightDown(final_frame=False),
        stacks,
        4.0,
        4,
        seed=1,
        optics=OPTICS,
        mechanics=ReplayMechanics(z_backlash_um=B),
    )
    assert scan_like.summary.max_abs_um == pytest.approx(0.0, abs=1e-9)


def test_eval_with_mechanics_is_reproducible_and_draws_differ_per_trial():
    stacks = [_stack(sid="a"), _stack(truth=1.0, sid="b")]
    mech = ReplayMechanics.from_stage_preset("lowcost")
    runs = [
        evaluate_method(StraightDown(False), stacks, 3.0, 3, seed=s, optics=OPTICS, mechanics=mech)
        for s in (2, 2, 3)
    ]
    errors = [[r.error_um for r in run.records] for run in runs]
    assert errors[0] == errors[1] != errors[2]
    assert len(set(errors[0])) == len(errors[0])  # every trial has its own repeatability draws
    assert all(abs(e) < 0.5 for e in errors[0]) and any(e != 0 for e in errors[0])
    seeds = {trial_seed(2, 0, sid, j) for sid in ("a", "b") for j in range(3)}
    assert len(seeds) == 6 and trial_seed(2, 0, "a", 0) == trial_seed(2, 0, "a", 0)


# -- the CLI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    stacks = [_stack(truth=t, half=10.0, sid=f"{k:04d}") for k, t in enumerate((0.5, -2.25))]
    path = tmp_path_factory.mktemp("mech") / "s.h5"
    return write_stacks(path, stacks, OPTICS, source="test")


def test_cli_stage_lowcost_end_to_end(small_file, capsys):
    argv = ["focus", "eval", "--mode", "zsweep", "--stacks", str(small_file), "--hint-range", "2"]
    argv += ["--trials", "2", "--json"]
    assert main(argv) == 0
    ideal = json.loads(capsys.readouterr().out)
    assert main([*argv, "--stage", "lowcost"]) == 0
    low = json.loads(capsys.readouterr().out)
    assert ideal["stage"]["model"] == "ideal" and ideal["stage"]["mechanics"] is None
    assert low["stage"]["model"] == "lowcost"
    assert low["stage"]["mechanics"]["z_backlash_um"] == 3.0
    assert low["timing"]["z_speed_um_per_s"] == 200.0 and "lowcost" in low["timing_source"]
    # zsweep approaches every plane from below: backlash does not hurt it, slow moves do
    assert low["summary"]["within_fraction"] == 1.0
    assert low["summary"]["hardware_s_mean"] > 3 * ideal["summary"]["hardware_s_mean"]
    assert all(t["z_um"] == t["z_commanded_um"] for t in ideal["trials"])
    assert any(t["z_um"] != t["z_commanded_um"] for t in low["trials"])  # true z is scored
    assert main(argv[:-1] + ["--stage", "lowcost"]) == 0
    assert "stage: lowcost (Z step 0.1 um, backlash 3 um" in capsys.readouterr().out


def test_cli_unknown_stage_is_a_one_line_error(small_file, capsys):
    argv = ["focus", "eval", "--mode", "zsweep", "--stacks", str(small_file), "--stage", "cheap"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("slidescan: error:") and err.count("\n") == 1
    assert "unknown --stage 'cheap'" in err and "commercial, lowcost" in err
