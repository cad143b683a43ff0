"""ScanRunner on a small fake microscope: state machine, events, failures, back-pressure.

The fake renders a fixed random texture blurred by |defocus| over a tilted focal plane, with a
band of empty glass, on a virtual clock; faults are injected where a test needs them. The
simulator-based end-to-end checks live in test_scan_cli.py and test_crash_resume.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from slidescan.app.events import (
    EventLog,
    Finished,
    FinishReason,
    FocusDone,
    FrameWritten,
    Progress,
    RunnerState,
    ScanWarning,
    StateChanged,
    TileStarted,
)
from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
from slidescan.app.runner import ScanRunner
from slidescan.app.store import ScanReader
from slidescan.focus.protocol import FocusMethod, FocusResult
from slidescan.hardware.base import CameraBase, SoftLimits, StageBase
from slidescan.hardware.clock import VirtualClock
from slidescan.hardware.errors import DeviceTimeout
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.optics import OpticalPath, get_objective

H, W = 40, 48
Z_LIMITS = (-40.0, 40.0)


def true_focus(x: float, y: float) -> float:
    return 2.0 + 0.004 * x - 0.003 * y


class FakeStage(StageBase):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(limits=SoftLimits(z=Z_LIMITS))
        self.clock = clock
        self.pos = {"x": 0.0, "y": 0.0, "z": 0.0}
        self.fail_on_move: set[int] = set()
        self.moves = 0
        self.z_commands: list[float] = []

    def _read_native(self) -> dict[str, float]:
        return dict(self.pos)

    def _move_native(self, targets: dict[str, float]) -> None:
        self.moves += 1
        if self.moves in self.fail_on_move:
            raise DeviceTimeout(f"stage did not answer (move {self.moves})")
        dist = max(abs(v - self.pos[a]) for a, v in targets.items())
        self.clock.sleep(0.01 + dist / 10_000.0)
        if "z" in targets:
            self.z_commands.append(targets["z"])
        self.pos.update(targets)

    def _wait_native(self, timeout_s: float) -> None:
        pass

    def _stop_native(self) -> None:
        pass


class FakeCamera(CameraBase):
    def __init__(
        self, stage: FakeStage, clock: VirtualClock, glass_x_above: float, hw=(H, W)
    ) -> None:
        super().__init__(exposure_ms=5.0, clock=clock, position_source=stage.position)
        self.stage = stage
        self.glass_x_above = glass_x_above
        self.hw = hw
        rng = np.random.default_rng(0)
        self.texture = gaussian_filter(rng.uniform(0, 1, hw), 1.0)
        self.texture = (self.texture - self.texture.min()) / np.ptp(self.texture)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.hw, 3)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def pixel_size_um(self) -> float:
        return 0.325

    def _acquire(self) -> tuple[np.ndarray, dict[str, Any]]:
        self.clock.sleep(self.exposure_ms / 1000)
        p = self.stage.position()
        tf = true_focus(p.x, p.y)
        if p.x > self.glass_x_above:
            rgb = np.full((*self.hw, 3), 0.93)
        else:
            grey = 0.35 + 0.5 * gaussian_filter(self.texture, 0.3 + 1.5 * abs(p.z - tf))
            rgb = np.stack([grey * 0.9, grey * 0.6, grey * 0.85], axis=-1)
        return (rgb * 255).astype(np.uint8), {"true_focus_um": tf, "defocus_um": p.z - tf}


def fake_scope(glass_x_above: float = 1e9, hw: tuple[int, int] = (H, W)) -> Microscope:
    clock = VirtualClock()
    stage = FakeStage(clock)
    cam = FakeCamera(stage, clock, glass_x_above, hw)
    return Microscope(stage, cam, OpticalPath(get_objective("20x/0.75")), clock, name="fake")


def plan_for(tmp_path, rows=3, cols=4, hw=(H, W), **kw) -> ScanPlan:
    fov = (hw[1] * 0.325, hw[0] * 0.325)
    kw.setdefault("tissue", TissueSettings(enabled=False))
    return ScanPlan.grid(
        rows, cols, (0.0, 0.0), fov, overlap=0.1, output=str(tmp_path / "s.h5"), **kw
    )


class FixedMethod(FocusMethod):
    """A focus method that reads the truth (and can be told to fail)."""

    name = "fixed"

    def __init__(self, scope: Microscope, fail: set[int] = frozenset(), offset: float = 0.0):
        super().__init__()
        self.scope = scope
        self.fail = fail
        self.offset = offset
        self.calls = 0
        self.hints: list[float] = []

    def focus(self, drive, hint) -> FocusResult:
        self.calls += 1
        self.hints.append(hint.z_um)
        if self.calls in self.fail:
            raise RuntimeError("model file is corrupt")
        p = self.scope.stage.position()
        drive.snap()
        z = true_focus(p.x, p.y) + self.offset
        return FocusResult(z, 1, 0.005, 0.0, 0.9, method="fixed")


def run(runner: ScanRunner, timeout: float = 30) -> Finished:
    runner.start()
    return runner.wait(timeout)


def test_completes_with_events_in_order_and_file(tmp_path):
    scope = fake_scope()
    log = EventLog()
    runner = ScanRunner(plan_for(tmp_path), scope, log, method=FixedMethod(scope))
    assert runner.state is RunnerState.IDLE
    fin = run(runner)
    assert fin.reason is FinishReason.COMPLETED and runner.state is RunnerState.IDLE
    finished = log.of_type(Finished)
    assert finished == [fin] and log.events[-1] is fin
    states = [e.state for e in log.of_type(StateChanged)]
    assert states == [RunnerState.RUNNING, RunnerState.FINISHING, RunnerState.IDLE]
    assert [e.index for e in log.of_type(TileStarted)] == list(range(12))
    assert len(log.of_type(FocusDone)) == 12
    written = log.of_type(FrameWritten)
    assert sorted(e.index for e in written) == list(range(12))
    assert written[0].thumbnail.dtype == np.uint8 and written[0].width_um == pytest.approx(
        W * 0.325
    )
    prog = log.of_type(Progress)
    assert prog[-1].done == prog[-1].total == 12 and prog[-1].eta_s == 0
    assert fin.summary["tiles_done"] == 12 and fin.summary["focus_mae_um"] < 1e-9
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.status == "completed" and r.n_tiles == 12 and r.verify() == []
        t = r.tiles
        np.testing.assert_allclose(
            t["z_um"], [true_focus(x, y) for x, y in zip(t["x_um"], t["y_um"], strict=True)]
        )
        assert (t["tile_hardware_s"] > 0).all()


def test_hints_come_from_the_predictor(tmp_path):
    scope = fake_scope()
    method = FixedMethod(scope)
    fin = run(ScanRunner(plan_for(tmp_path, rows=4, cols=5, start_z_um=0.0), scope, method=method))
    assert fin.reason is FinishReason.COMPLETED
    assert method.hints[0] == 0.0  # nothing known yet: the start z
    with ScanReader(tmp_path / "s.h5") as r:
        t = r.tiles
    err = np.abs(t["hint_z_um"] - t["true_focus_um"])
    # the focal plane is tilted: once a few tiles are known the predictor follows it
    assert err[:1].max() > 1.5 and err[6:].max() < 0.05


def test_failed_autofocus_warns_and_falls_back_to_prediction(tmp_path):
    scope = fake_scope()
    log = EventLog()
    method = FixedMethod(scope, fail={5})
    fin = run(ScanRunner(plan_for(tmp_path), scope, log, method=method))
    assert fin.reason is FinishReason.COMPLETED
    warnings = log.of_type(ScanWarning)
    assert len(warnings) == 1 and "model file is corrupt" in warnings[0].message
    assert warnings[0].index == 4
    with ScanReader(tmp_path / "s.h5") as r:
        rec = r.tiles[4]
        assert rec["fallback"] == b"predicted" and not rec["ok"]
        assert rec["z_um"] == rec["hint_z_um"]
        assert abs(rec["z_um"] - rec["true_focus_um"]) < 0.1  # the predictor was good
    assert fin.summary["fallbacks"] == 1


def test_low_confidence_is_a_fallback(tmp_path):
    scope = fake_scope()

    class Unsure(FixedMethod):
        def focus(self, device, hint):
            r = super().focus(device, hint)
            r.confidence = 0.05
            return r

    log = EventLog()
    fin = run(ScanRunner(plan_for(tmp_path, rows=1, cols=3), scope, log, method=Unsure(scope)))
    assert fin.reason is FinishReason.COMPLETED
    assert len(log.of_type(ScanWarning)) == 3
    assert all(not e.ok or e.fallback == "predicted" for e in log.of_type(FocusDone))


def test_pause_resume_and_cancel_between_tiles(tmp_path):
    scope = fake_scope()
    log = EventLog()
    gate = threading.Event()

    class Pausing:
        def on_event(self, e):
            if isinstance(e, TileStarted) and e.index == 2:
                runner.pause()
            if isinstance(e, StateChanged) and e.state is RunnerState.PAUSED:
                gate.set()

    runner = ScanRunner(plan_for(tmp_path), scope, log, method=FixedMethod(scope))
    runner.add_observer(Pausing())
    runner.start()
    assert gate.wait(10)
    time.sleep(0.2)
    assert runner.state is RunnerState.PAUSED
    # pause takes effect between tiles: the tile in progress (2) finished, 3 did not start
    assert max(e.index for e in log.of_type(TileStarted)) == 2
    runner.resume()
    fin = runner.wait(30)
    assert fin.reason is FinishReason.COMPLETED
    assert len(log.of_type(TileStarted)) == 12

    scope2 = fake_scope()
    log2 = EventLog()
    runner = ScanRunner(
        plan_for(tmp_path / "..", rows=3, cols=4).model_copy(
            update={"output": str(tmp_path / "c.h5")}
        ),
        scope2,
        log2,
        method=FixedMethod(scope2),
    )

    class Cancelling:
        def on_event(self, e):
            if isinstance(e, TileStarted) and e.index == 4:
                runner.cancel()

    runner.add_observer(Cancelling())
    fin = run(runner)
    assert fin.reason is FinishReason.CANCELLED
    assert len(log2.of_type(Finished)) == 1
    with ScanReader(tmp_path / "c.h5") as r:
        assert r.status == "cancelled" and r.n_tiles == 5  # tile 4 completed, then stopped


def test_device_error_pauses_then_resume_retries_the_tile(tmp_path):
    scope = fake_scope()
    scope.stage.fail_on_move = {9}
    log = EventLog()
    paused = threading.Event()

    class Watch:
        def on_event(self, e):
            if isinstance(e, StateChanged) and e.state is RunnerState.PAUSED:
                paused.set()

    runner = ScanRunner(plan_for(tmp_path), scope, log, method=FixedMethod(scope))
    runner.add_observer(Watch())
    runner.start()
    assert paused.wait(10)
    assert runner.state is RunnerState.PAUSED
    msg = [e for e in log.of_type(StateChanged) if e.state is RunnerState.PAUSED][0].message
    assert "device error" in msg and "stage did not answer" in msg
    runner.resume()
    fin = runner.wait(30)
    assert fin.reason is FinishReason.COMPLETED
    with ScanReader(tmp_path / "s.h5") as r:
        assert sorted(r.tiles["index"]) == list(range(12))  # each once: the tile was retried


def test_device_error_then_cancel(tmp_path):
    scope = fake_scope()
    scope.stage.fail_on_move = {5}
    paused = threading.Event()

    class Watch:
        def on_event(self, e):
            if isinstance(e, StateChanged) and e.state is RunnerState.PAUSED:
                paused.set()

    runner = ScanRunner(plan_for(tmp_path), scope, Watch(), method=FixedMethod(scope))
    runner.start()
    assert paused.wait(10)
    runner.cancel()
    fin = runner.wait(10)
    assert fin.reason is FinishReason.CANCELLED
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.status == "cancelled"


def test_storage_error_stops_with_error_and_keeps_tiles(tmp_path, monkeypatch):
    import errno

    from slidescan.app import store

    scope = fake_scope()
    real = store.ScanWriter.append
    calls = {"n": 0}

    def append(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            raise store.StorageError(
                store._storage_message(self.path, OSError(errno.ENOSPC, "No space left on device"))
            )
        return real(self, *a, **k)

    monkeypatch.setattr(store.ScanWriter, "append", append)
    log = EventLog()
    fin = run(ScanRunner(plan_for(tmp_path), scope, log, method=FixedMethod(scope)))
    assert fin.reason is FinishReason.ERROR and "disk full" in fin.message
    assert len(log.of_type(Finished)) == 1
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.status == "error" and r.n_tiles == 5 and r.verify() == []


def test_refuses_existing_file_and_bad_folder_before_moving(tmp_path):
    scope = fake_scope()
    (tmp_path / "s.h5").write_bytes(b"x")
    with pytest.raises(Exception, match="exists"):
        ScanRunner(plan_for(tmp_path), scope, method=FixedMethod(scope)).start()
    bad = plan_for(tmp_path).model_copy(update={"output": str(tmp_path / "nope" / "s.h5")})
    with pytest.raises(Exception, match="does not exist"):
        ScanRunner(bad, scope, method=FixedMethod(scope)).start()
    assert scope.stage.moves == 0


def test_tissue_detection_skips_glass(tmp_path):
    scope = fake_scope(glass_x_above=0.0)  # the right half of the grid is empty glass
    method = FixedMethod(scope)
    log = EventLog()
    plan = plan_for(tmp_path, tissue=TissueSettings(enabled=True))
    fin = run(ScanRunner(plan, scope, log, method=method))
    assert fin.reason is FinishReason.COMPLETED
    with ScanReader(tmp_path / "s.h5") as r:
        t = r.tiles
        assert (t["skipped"] == (t["x_um"] > 0)).all() and t["skipped"].sum() == 6
        assert all(r.image(i) is None for i in np.flatnonzero(t["skipped"]))
        assert (t[t["skipped"]]["tile_frames"] == 1).all()  # one quick look, nothing else
    assert method.calls == 6
    assert sum(e.skipped for e in log.of_type(FrameWritten)) == 6


def test_z_stays_inside_soft_limits(tmp_path):
    scope = fake_scope()
    fin = run(
        ScanRunner(
            plan_for(tmp_path, start_z_um=1000.0), scope, method=FixedMethod(scope, offset=500.0)
        )
    )
    assert fin.reason is FinishReason.COMPLETED
    zs = scope.stage.z_commands
    assert zs and min(zs) >= Z_LIMITS[0] and max(zs) <= Z_LIMITS[1]


def test_runner_is_single_use_and_wait_times_out(tmp_path):
    scope = fake_scope()
    gate = threading.Event()

    class Slow(FixedMethod):
        def focus(self, device, hint):
            gate.wait(10)
            return super().focus(device, hint)

    runner = ScanRunner(plan_for(tmp_path, rows=1, cols=2), scope, method=Slow(scope))
    runner.start()
    with pytest.raises(TimeoutError):
        runner.wait(0.05)
    gate.set()
    assert runner.wait(10).reason is FinishReason.COMPLETED
    with pytest.raises(RuntimeError, match="already run"):
        runner.start()


def test_resume_and_rescan(tmp_path):
    scope = fake_scope()
    runner = ScanRunner(plan_for(tmp_path), scope, method=FixedMethod(scope))

    class Cancelling:
        def on_event(self, e):
            if isinstance(e, TileStarted) and e.index == 6:
                runner.cancel()

    runner.add_observer(Cancelling())
    assert run(runner).reason is FinishReason.CANCELLED
    path = tmp_path / "s.h5"
    method = FixedMethod(scope)
    fin = run(ScanRunner.for_resume(path, scope, method=method))
    assert fin.reason is FinishReason.COMPLETED and method.calls == 5
    fin = run(ScanRunner.for_rescan(path, scope, [2, 3], method=FixedMethod(scope)))
    assert fin.reason is FinishReason.COMPLETED
    with ScanReader(path) as r:
        assert r.status == "completed"
        assert sorted(r.tiles["index"]) == sorted([*range(12), 2, 3])
        assert sorted(r.current()["index"]) == list(range(12))
        assert r.tiles["superseded"].sum() == 2


def test_memory_stays_flat_when_the_writer_is_slow(tmp_path, monkeypatch):
    """A slow disk must block the scan (bounded queue), not pile frames up in memory."""
    from slidescan.app import store

    scope = fake_scope()
    real = store.ScanWriter.append
    depth = []

    def slow_append(self, *a, **k):
        time.sleep(0.02)
        depth.append(runner._writer_thread._queue.qsize())
        return real(self, *a, **k)

    monkeypatch.setattr(store.ScanWriter, "append", slow_append)
    runner = ScanRunner(
        plan_for(tmp_path, rows=3, cols=5), scope, method=FixedMethod(scope), queue_size=2
    )
    assert run(runner).reason is FinishReason.COMPLETED
    assert max(depth) <= 2


def test_focusmap_survey_resumes_where_it_stopped(tmp_path):
    scope = fake_scope()
    plan = plan_for(
        tmp_path,
        rows=3,
        cols=4,
        focus=FocusSettings(strategy="focusmap", survey_points=6, surface="plane"),
    )

    class CancelOnThird(FixedMethod):
        def focus(self, device, hint):
            result = super().focus(device, hint)
            if self.calls == 3:
                runner.cancel()
            return result

    runner = ScanRunner(plan, scope, method=CancelOnThird(scope))
    assert run(runner).reason is FinishReason.CANCELLED
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.survey().size == 3 and r.n_tiles == 0
    method = FixedMethod(scope)
    fin = run(ScanRunner.for_resume(tmp_path / "s.h5", scope, method=method))
    assert fin.reason is FinishReason.COMPLETED
    assert method.calls == 3  # only the three survey points not measured before
    with ScanReader(tmp_path / "s.h5") as r:
        s = r.survey()
        assert s.size == 6 and len({(x, y) for x, y in zip(s["x_um"], s["y_um"], strict=True)}) == 6
        t = r.tiles
        assert sorted(t["index"]) == list(range(12)) and set(t["method"]) == {b"focusmap"}
        # the truth is a plane: the fitted map is exact
        np.testing.assert_allclose(t["z_um"], t["true_focus_um"], atol=1e-6)


class Prepositioned(FixedMethod):
    """Asks the engine to bring Z to `hint - below` during the XY move; records where Z was
    when `focus` began and how many stage moves the tile had made by then."""

    def __init__(self, scope: Microscope, below: float | None = 3.0, fail: bool = False):
        super().__init__(scope)
        self.below = below
        self.broken = fail
        self.z_at_start: list[float] = []
        self.moves_at_start: list[int] = []
        self.returned: list[float] = []
        self.starts: list[float | None] = []

    def first_z(self, drive, hint):
        if self.broken:
            raise RuntimeError("no idea")
        return hint.z_um - self.below

    def focus(self, drive, hint) -> FocusResult:
        self.z_at_start.append(drive.get_z())
        self.moves_at_start.append(self.scope.stage.moves)
        self.starts.append(hint.start_z_um)
        result = super().focus(drive, hint)
        self.returned.append(result.z_um)
        return result


class BlendingStage(FakeStage):
    """A fake stage that runs a Z via point within the XY move (`StageBase.move_via`)."""

    blends_z_via = True

    def _move_via_native(self, targets: dict[str, float], z_via: float) -> None:
        self.z_commands.append(z_via)
        self._move_native(targets)


def test_z_moves_to_the_methods_approach_point_together_with_xy(tmp_path):
    scope = fake_scope()  # its stage does not state its play: the guard overshoots 5 um
    method = Prepositioned(scope, below=6.0)
    fin = run(ScanRunner(plan_for(tmp_path, rows=2, cols=3), scope, method=method))
    assert fin.reason is FinishReason.COMPLETED
    starts = np.array(method.hints) - 6.0
    np.testing.assert_allclose(method.z_at_start, starts, atol=1e-9)
    # Z arrives from below, through a point the drive's overshoot further down, and the
    # method is told so
    assert method.starts == pytest.approx(starts.tolist())
    for z in starts:
        i = scope.stage.z_commands.index(pytest.approx(z - 5.0))
        assert scope.stage.z_commands[i + 1] == pytest.approx(z)
    # per tile: the runner's move up to the returned z for the final frame (this method takes
    # none; 6 um below it the play is surely taken up), the XY move with Z to the via point
    # and, as this stage cannot run both Z legs within the XY move, Z's second leg
    assert np.diff(method.moves_at_start).tolist() == [3] * (len(method.hints) - 1)

    # a stage that can blend them makes the XY move and both Z legs one command
    (tmp_path / "b").mkdir()
    clock = VirtualClock()
    stage = BlendingStage(clock)
    scope = Microscope(
        stage, FakeCamera(stage, clock, 1e9), OpticalPath(get_objective("20x/0.75")), clock
    )
    method = Prepositioned(scope, below=6.0)
    fin = run(ScanRunner(plan_for(tmp_path / "b", rows=2, cols=3), scope, method=method))
    assert fin.reason is FinishReason.COMPLETED
    np.testing.assert_allclose(method.z_at_start, np.array(method.hints) - 6.0, atol=1e-9)
    assert np.diff(method.moves_at_start).tolist() == [2] * (len(method.hints) - 1)


class LeavesZAlone(FocusMethod):
    """Takes the hint as it is, like the "none" method: no frames, no Z move."""

    name = "none"

    def focus(self, drive, hint) -> FocusResult:
        return FocusResult(hint.z_um, 0, 0.0, 0.0, 1.0, method="none")


def test_a_method_that_leaves_z_alone_costs_no_z_move(tmp_path):
    """The engine's drive still knows where it put Z after such a method: every tile after
    the first is one XY move and the final frame, with no re-approach of Z."""
    scope = fake_scope()
    fin = run(ScanRunner(plan_for(tmp_path, rows=2, cols=3), scope, method=LeavesZAlone()))
    assert fin.reason is FinishReason.COMPLETED
    # the first tile: its XY move, then down and up to the fixed z (3 moves); each later
    # tile: its XY move only
    assert scope.stage.moves == 3 + 5


def test_approach_point_is_clamped_and_a_failing_wish_is_ignored(tmp_path):
    scope = fake_scope()
    method = Prepositioned(scope, below=500.0)  # far below the soft limit
    fin = run(ScanRunner(plan_for(tmp_path, rows=1, cols=2), scope, method=method))
    assert fin.reason is FinishReason.COMPLETED
    assert min(scope.stage.z_commands) >= Z_LIMITS[0]
    assert method.z_at_start[0] == Z_LIMITS[0]

    (tmp_path / "b").mkdir()
    scope = fake_scope()
    broken = Prepositioned(scope, fail=True)
    fin = run(ScanRunner(plan_for(tmp_path / "b", rows=1, cols=2), scope, method=broken))
    assert fin.reason is FinishReason.COMPLETED and broken.calls == 2
    # no wish: Z stays where the previous tile's final frame left it, and the method is told
    # nothing
    assert broken.z_at_start[1] == pytest.approx(broken.returned[0], abs=1e-9)
    assert broken.starts == [None, None]


def test_a_focus_map_with_failed_survey_points_falls_back_to_a_plane(tmp_path):
    """Two of six survey points fail (dropped); four cannot carry the planned quadratic: the
    map is a plane, with a warning, and the scan completes (the truth is a plane)."""
    scope = fake_scope()
    plan = plan_for(
        tmp_path,
        rows=3,
        cols=4,
        focus=FocusSettings(strategy="focusmap", survey_points=6, surface="quadratic"),
    )
    log = EventLog()
    fin = run(ScanRunner(plan, scope, log, method=FixedMethod(scope, fail={2, 5})))
    assert fin.reason is FinishReason.COMPLETED, fin.message
    messages = [w.message for w in log.of_type(ScanWarning)]
    assert sum("failed: dropped" in m for m in messages) == 2
    assert any("fitting a plane instead of a quadratic" in m for m in messages)
    with ScanReader(tmp_path / "s.h5") as r:
        t = r.tiles
        np.testing.assert_allclose(t["z_um"], t["true_focus_um"], atol=1e-6)

    (tmp_path / "b").mkdir()
    scope = fake_scope()
    plan = plan.model_copy(update={"output": str(tmp_path / "b" / "s.h5")})
    fin = run(ScanRunner(plan, scope, method=FixedMethod(scope, fail={1, 2, 3, 4})))
    assert fin.reason is FinishReason.ERROR and "at least 3 focused survey points" in fin.message
