"""The focus yardstick: statistics on cases whose answer is known, and honest failure scoring."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from slidescan.app.tools.evaluate import evaluate_method
from slidescan.focus.protocol import (
    FocusError,
    FocusHint,
    FocusMethod,
    FocusResult,
    SlideCalibrated,
    depth_of_field_um,
)
from slidescan.hardware.optics import OpticalPath, get_objective
from slidescan.hardware.replay import ReplayTiming
from slidescan.hardware.stackfile import FocusStack, open_stacks, write_stacks

OPTICS = OpticalPath(get_objective("20x/0.75"))  # DOF 0.812 um, threshold 0.406 um


def _stacks(n=3, half_range=8.0, step=0.5, seed=0) -> list[FocusStack]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        truth = 10.0 * k - 3.3
        z = truth + np.arange(-half_range, half_range + step / 2, step)
        images = rng.integers(0, 256, size=(len(z), 8, 8), dtype=np.uint8)
        out.append(FocusStack(f"s{k}", images, z, true_focus_um=truth))
    return out


def _result(z, frames=0, ok=True, message=""):
    return FocusResult(
        z_um=z, frames=frames, hardware_s=0, compute_s=0, confidence=1, ok=ok, message=message
    )


class Peek(FocusMethod):
    """Snaps once and returns the true focus from the frame metadata plus a known offset."""

    name = "peek"

    def __init__(self, offsets):
        self.offsets = itertools.cycle(offsets)

    def focus(self, drive, hint: FocusHint) -> FocusResult:
        truth = drive.device.snap().meta["true_focus_um"]
        return _result(truth + next(self.offsets), frames=1)


class ReturnHint(FocusMethod):
    name = "hint"

    def focus(self, drive, hint):
        return _result(hint.z_um)


def test_constant_offset_gives_exactly_that_error():
    report = evaluate_method(Peek([0.3]), _stacks(), 5.0, 4, seed=0, optics=OPTICS)
    s = report.summary
    assert s.trials == 12 and s.stacks == 3
    for stat in (s.mae_um, s.median_abs_um, s.p95_abs_um, s.max_abs_um, s.bias_um, s.rmse_um):
        assert stat == pytest.approx(0.3, abs=1e-12)
    assert s.within_fraction == 1.0 and s.threshold_um == depth_of_field_um(0.75, 1.0) / 2
    assert s.frames_mean == 1 and s.failed == 0 and s.out_of_range == 0


def test_known_error_distribution_gives_known_statistics():
    offsets = [-0.1, 0.2, -0.5, 1.0]  # cycled over 2 stacks x 4 trials: each appears twice
    report = evaluate_method(Peek(offsets), _stacks(2), 5.0, 4, seed=1, optics=OPTICS)
    s = report.summary
    a = np.abs(offsets * 2)
    assert s.mae_um == pytest.approx(0.45)
    assert s.median_abs_um == pytest.approx(0.35)
    assert s.p95_abs_um == pytest.approx(np.percentile(a, 95))
    assert s.max_abs_um == pytest.approx(1.0)
    assert s.bias_um == pytest.approx(0.15)
    assert s.within_fraction == pytest.approx(0.5)  # 0.1 and 0.2 are within 0.406 um
    assert [r.error_um for r in report.records] == pytest.approx(offsets * 2)


def test_hints_are_seeded_uniform_and_scored_exactly():
    stacks = _stacks()
    r1 = evaluate_method(ReturnHint(), stacks, 5.0, 50, seed=3, optics=OPTICS)
    r2 = evaluate_method(ReturnHint(), stacks, 5.0, 50, seed=3, optics=OPTICS)
    r3 = evaluate_method(ReturnHint(), stacks, 5.0, 50, seed=4, optics=OPTICS)
    hints = [r.hint_z_um for r in r1.records]
    assert hints == [r.hint_z_um for r in r2.records] != [r.hint_z_um for r in r3.records]
    err = np.array([r.error_um for r in r1.records])
    assert np.all(np.abs(err) <= 5.0)
    assert err == pytest.approx([r.hint_z_um - r.true_focus_um for r in r1.records])
    assert r1.summary.mae_um == pytest.approx(2.5, abs=0.35)  # E|U(-5, 5)| = 2.5
    assert r1.summary.frames_mean == 0 and r1.summary.hardware_s_mean == 0


def test_result_outside_the_stack_is_scored_not_clipped():
    class Overshoot(FocusMethod):
        name = "overshoot"

        def focus(self, drive, hint):
            return _result(drive.device.z_limits[1] + 2.0)

    report = evaluate_method(Overshoot(), _stacks(1), 2.0, 3, seed=0, optics=OPTICS)
    assert report.summary.out_of_range == 3
    assert report.summary.mae_um == pytest.approx(8.0 + 2.0)
    assert not any(r.in_range for r in report.records)


def test_failed_results_are_counted_and_scored_at_their_z():
    class Fails(FocusMethod):
        name = "fails"

        def focus(self, drive, hint):
            return _result(hint.z_um + 0.1, ok=False, message="no signal")

    report = evaluate_method(Fails(), _stacks(2), 3.0, 5, seed=0, optics=OPTICS)
    assert report.summary.failed == 10 and report.summary.scored_at_hint == 0
    assert [r.error_um for r in report.records] == pytest.approx(
        [r.hint_z_um + 0.1 - r.true_focus_um for r in report.records]
    )
    assert report.records[0].message == "no signal"


def test_raising_or_nan_methods_fail_at_the_hint_and_bugs_propagate():
    class Wanders(FocusMethod):
        name = "wanders"

        def focus(self, drive, hint):
            drive.device.move_z(drive.device.z_limits[1] + 1.0)  # the replay refuses this
            return _result(0.0)

    class GivesUp(FocusMethod):
        name = "gives-up"

        def focus(self, drive, hint):
            raise FocusError("flat image")

    class Nan(FocusMethod):
        name = "nan"

        def focus(self, drive, hint):
            return _result(float("nan"))

    for method in (Wanders(), GivesUp(), Nan()):
        report = evaluate_method(method, _stacks(1), 3.0, 2, seed=0, optics=OPTICS)
        assert report.summary.failed == report.summary.scored_at_hint == 2
        for r in report.records:
            assert r.z_um == r.hint_z_um and not r.ok and r.message
    assert (
        "LimitExceeded"
        in evaluate_method(Wanders(), _stacks(1), 1.0, 1, seed=0, optics=OPTICS).records[0].message
    )

    class Buggy(FocusMethod):
        name = "buggy"

        def focus(self, drive, hint):
            raise TypeError("bug")

    with pytest.raises(TypeError):
        evaluate_method(Buggy(), _stacks(1), 1.0, 1, seed=0, optics=OPTICS)


def test_hardware_time_and_frames_come_from_the_replay():
    class TwoShots(FocusMethod):
        name = "two-shots"

        def focus(self, drive, hint):
            z = drive.device.get_z()
            drive.device.snap()
            drive.device.move_z(z + 2.0)
            drive.device.snap()
            return _result(z, frames=2)

    timing = ReplayTiming(
        z_speed_um_per_s=200.0,
        z_accel_um_per_s2=None,
        z_settle_s=0.03,
        exposure_ms=10,
        readout_s=0.005,
    )
    report = evaluate_method(TwoShots(), _stacks(1), 3.0, 4, seed=0, optics=OPTICS, timing=timing)
    for r in report.records:
        assert r.frames == r.reported_frames == 2 and r.moves == 1
        assert r.hardware_s == pytest.approx(2 * 0.015 + 2.0 / 200 + 0.03)
        assert r.compute_s > 0


def test_bad_set_ups_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="reaches outside"):
        evaluate_method(ReturnHint(), _stacks(1), 9.0, 1, seed=0, optics=OPTICS)
    no_truth = FocusStack("u", np.zeros((3, 4, 4), np.uint8), [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="no true_focus_um"):
        evaluate_method(ReturnHint(), [no_truth], 0.5, 1, seed=0, optics=OPTICS)
    with pytest.raises(ValueError, match="needs the optics"):
        evaluate_method(ReturnHint(), _stacks(1), 1.0, 1, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_method(ReturnHint(), _stacks(1), 1.0, 0, seed=0, optics=OPTICS)


class VarianceOfLaplacianSweep(FocusMethod):
    """A plain z-sweep over the stack's planes, scoring each frame by Laplacian variance."""

    name = "vol-sweep"

    def focus(self, drive, hint):
        lo, hi = drive.device.z_limits
        zs = np.arange(lo, hi + 1e-9, 0.25)
        scores = []
        for z in zs:
            drive.device.move_z(float(z))
            scores.append(ndimage.laplace(drive.device.snap().image.astype(float)).var())
        return _result(float(zs[int(np.argmax(scores))]), frames=len(zs))


def test_a_real_sweep_on_a_file_finds_the_blur_minimum(tmp_path, tissue_dir):
    import cv2

    grey = cv2.imread(str(tissue_dir / "he_nanozoomer_0.227um.png"), cv2.IMREAD_GRAYSCALE)
    stacks = []
    for k, truth in enumerate((1.75, -2.5)):
        z = truth + np.arange(-3.0, 3.01, 0.5)
        field = grey[100 * k : 100 * k + 48, 200:248].astype(float)
        planes = [ndimage.gaussian_filter(field, 1.5 * abs(d)) for d in z - truth]
        images = np.clip(np.rint(planes), 0, 255).astype(np.uint8)
        stacks.append(FocusStack(f"t{k}", images, z, true_focus_um=truth))
    path = write_stacks(tmp_path / "s.h5", stacks, OPTICS, source="test")
    with open_stacks(path) as f:
        report = evaluate_method(VarianceOfLaplacianSweep(), f, 2.0, 2, seed=0)
    assert report.summary.max_abs_um == pytest.approx(0.0, abs=1e-9)
    assert report.summary.within_fraction == 1.0
    assert report.summary.frames_mean == 25
    d = report.to_dict()
    assert d["stacks_source"].endswith("s.h5") and len(d["trials"]) == 4
    assert "DOF/2" in d["threshold"] and "within DOF/2" in report.format_table()


class SlideBiased(FocusMethod, SlideCalibrated):
    """Reads the truth from the frame and misses it by a slide bias plus a per-field error;
    while calibrating it measures (truth - its estimate), like diffcnn against its sweep."""

    name = "biased"

    def __init__(self, field_error, slide_bias=0.5, calibrate_tiles=2):
        self.field_error = field_error
        self.slide_bias = slide_bias
        self.calibrate_tiles = calibrate_tiles
        self.calibration_frozen = False
        self.offsets: list[float] = []
        self.calibrated_on: list[str] = []
        self.resets = 0

    def reset_calibration(self):
        self.offsets.clear()
        self.resets += 1

    def calibration_count(self):
        return len(self.offsets)

    def focus(self, drive, hint):
        meta = drive.device.snap().meta
        truth, sid = meta["true_focus_um"], meta["stack_id"]
        estimate = truth + self.slide_bias + self.field_error[sid]
        if len(self.offsets) < self.calibrate_tiles and not self.calibration_frozen:
            self.offsets.append(truth - estimate)
            self.calibrated_on.append(sid)
            return _result(truth, frames=5, message="calibration")
        return _result(estimate + (float(np.median(self.offsets)) if self.offsets else 0.0), 1)


def test_slide_calibration_is_leave_one_field_out():
    stacks = _stacks(4, half_range=10.0, step=0.25)
    field_error = {"s0": 0.0, "s1": 0.25, "s2": -0.5, "s3": 1.0}
    method = SlideBiased(field_error)
    report = evaluate_method(method, stacks, 2.0, 3, seed=0, optics=OPTICS)
    # Two calibration tiles per stack, each on another field (the next ones in file order).
    assert [r.stack_id for r in report.calibration_records] == [
        "s1",
        "s2",
        "s2",
        "s3",
        "s3",
        "s0",
        "s0",
        "s1",
    ]
    assert report.calibration_kept == {"s0": 2, "s1": 2, "s2": 2, "s3": 2}
    assert all(r.reported_frames == 5 for r in report.calibration_records)
    # Scored trials never calibrate and carry only the other fields' error, not the slide bias.
    for r in report.records:
        assert r.reported_frames == 1
        i = int(r.stack_id[1])
        others = [field_error[f"s{(i + k) % 4}"] for k in (1, 2)]
        expected = field_error[r.stack_id] - float(np.median(others))
        assert r.error_um == pytest.approx(expected, abs=1e-9)
    assert "2.0 tiles kept per stack" in report.calibration_line()
    assert report.calibration_line() in report.format_table()
    assert report.to_dict()["calibration"]["tiles"] == 8
    # Left as found: not frozen, nothing kept.
    assert not method.calibration_frozen and method.calibration_count() == 0
    assert method.resets == 5


def test_one_stack_gives_nothing_to_calibrate_on():
    method = SlideBiased({"s0": 0.1}, slide_bias=0.5)
    report = evaluate_method(method, _stacks(1), 2.0, 2, seed=0, optics=OPTICS)
    assert report.calibration_records == []
    assert "ran uncalibrated" in report.calibration_line()
    # Never calibrated on the field it is scored on: every trial carries the slide bias.
    for r in report.records:
        assert r.reported_frames == 1
        assert r.error_um == pytest.approx(0.6, abs=1e-9)


class KeepsEveryOther(SlideBiased):
    """Keeps only every other calibration tile (as diffcnn drops a tile it did not trust)."""

    def focus(self, drive, hint):
        meta = drive.device.snap().meta
        if not self.calibration_frozen:
            self.tries = getattr(self, "tries", 0) + 1
            if self.tries % 2 == 1:
                self.calibrated_on.append("-" + meta["stack_id"])
                return _result(meta["true_focus_um"], frames=5, message="not kept")
        return super().focus(drive, hint)


def test_calibration_goes_round_the_other_fields_again_but_never_the_scored_one():
    method = KeepsEveryOther({f"s{k}": 0.0 for k in range(3)}, calibrate_tiles=2)
    report = evaluate_method(
        method, _stacks(3, half_range=10.0, step=0.25), 2.0, 1, seed=0, optics=OPTICS
    )
    for sid in ("s0", "s1", "s2"):
        assert report.calibration_kept[sid] == 2
    # For s0: s1 (dropped), s2 (kept), s1 again (dropped), s2 again (kept).
    assert [r.stack_id for r in report.calibration_records][:4] == ["s1", "s2", "s1", "s2"]
    assert all(r.error_um == pytest.approx(0.0, abs=1e-9) for r in report.records)
