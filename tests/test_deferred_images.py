"""Images made after the tile, off the scan thread (`ImageMaker`, as TSVA fuses two shots).

A method defined here takes two shots around the hint, returns them as a `DeferredImage`, and
makes the tile's image as their mean (so every stored image can be checked against its shots).
It runs through simulated scans: the image worker never holds the scan up, a backlog is
finished after the last tile, a scan killed with SIGKILL while tiles wait for their images
resumes and makes them, and `slidescan refocus` remakes them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import Field

from slidescan.app.events import BacklogProgress, EventLog, FinishReason, ImageMade
from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
from slidescan.app.records import MADE, PENDING
from slidescan.app.runner import ScanRunner
from slidescan.app.store import ScanReader
from slidescan.focus import registry
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import (
    DeferredImage,
    FocusCurve,
    FocusHint,
    FocusMethod,
    FocusParams,
    FocusResult,
    ImageMaker,
    Shot,
)
from slidescan.hardware.sim import SimConfig, build_simulator

REPO = Path(__file__).resolve().parents[1]


class DeferredMeanParams(FocusParams):
    spacing_um: float = Field(default=1.0, gt=0)
    delay_s: float = Field(default=0.0, ge=0, description="seconds each image takes to make")


class DeferredMean(FocusMethod, ImageMaker):
    """Two shots `spacing_um` either side of the hint; the image (their mean) made later."""

    name = "deferredmean"
    Params = DeferredMeanParams
    image_kind = "mean"

    def __init__(self, params=None, /, **kwargs):
        super().__init__(params, **kwargs)
        self.made_on: set[str] = set()

    def first_z(self, drive: FocusDrive, hint: FocusHint) -> float:
        return hint.z_um - self.params.spacing_um

    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        t0 = drive.now()
        f1, m1 = drive.snap_at(hint.z_um - self.params.spacing_um)
        f2, m2 = drive.snap_at(hint.z_um + self.params.spacing_um)
        return FocusResult(
            z_um=hint.z_um,
            frames=2,
            hardware_s=drive.now() - t0,
            compute_s=0.0,
            confidence=0.9,
            curve=FocusCurve(np.array([m1.z_um, m2.z_um]), np.ones(2)),
            method=self.name,
            deferred=DeferredImage((Shot(m1.z_um, f1), Shot(m2.z_um, f2)), self.image_kind),
        )

    def make_image(self, shots):
        self.made_on.add(threading.current_thread().name)
        if self.params.delay_s:
            time.sleep(self.params.delay_s)
        return mean_of([image for _, image in shots])


def mean_of(images) -> np.ndarray:
    a, b = (np.asarray(i, np.uint16) for i in images)
    return ((a + b) // 2).astype(np.uint8)


@pytest.fixture
def deferred_mean():
    registry.register("deferredmean", DeferredMean)
    yield
    registry._REGISTRY.pop("deferredmean", None)


def _sim():
    return build_simulator(
        SimConfig(seed=2, camera={"width": 64, "height": 48}, optics={"fft_workers": 1})
    )


def _plan(path: Path, rows: int = 2, cols: int = 3, **params) -> ScanPlan:
    sim = _sim()
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    return ScanPlan.grid(
        rows,
        cols,
        ((x0 + x1) / 2, (y0 + y1) / 2),
        sim.field_of_view_um,
        focus=FocusSettings(method="deferredmean", params=params),
        tissue=TissueSettings(enabled=False),
        output=str(path),
    )


def check_every_image_is_made_from_its_shots(path: Path, planned: int) -> None:
    with ScanReader(path) as r:
        current = r.current()
        assert len(current) == planned
        assert r.pending() == []
        assert r.verify() == []
        rows = {int(rec["index"]): i for i, rec in enumerate(r.tiles) if not rec["superseded"]}
        for i in rows.values():
            rec = r.tiles[i]
            assert rec["image_source"].decode() == MADE and rec["made_kind"].decode() == "mean"
            shots = r.shots(i)
            assert len(shots) == 2 and shots[0][0] < shots[1][0]
            np.testing.assert_array_equal(r.image(i), mean_of([s for _, s in shots]))


def test_images_are_made_off_the_scan_thread_and_committed_as_new_versions(tmp_path, deferred_mean):
    path = tmp_path / "s.h5"
    method = DeferredMean()
    log = EventLog()
    runner = ScanRunner(_plan(path), _sim(), log, method=method)
    runner.start()
    finished = runner.wait(120)
    assert finished.reason is FinishReason.COMPLETED, finished.message
    assert method.made_on == {"scan-images"}
    check_every_image_is_made_from_its_shots(path, 6)
    with ScanReader(path) as r:
        t = r.tiles
        # each tile: the pending version with its shots, then the made one sharing them
        assert sorted(t["image_source"][t["superseded"]].tolist()) == [PENDING.encode()] * 6
        made = t[~t["superseded"]]
        pending = t[t["superseded"]]
        for rec in made:
            twin = pending[pending["index"] == rec["index"]][0]
            assert (rec["shot_first"], rec["shot_count"]) == (twin["shot_first"], 2)
            assert rec["frames"] == 2 and rec["z_um"] == twin["z_um"]
        assert r.attrs["status"] in (b"completed", "completed")
    assert len(log.of_type(ImageMade)) == 6


def test_a_slow_maker_never_holds_the_scan_up_and_the_backlog_is_finished_after(
    tmp_path, deferred_mean
):
    from slidescan.app.events import FrameWritten

    class Order(EventLog):
        """Notes how many images were made when the last tile was written."""

        made_at_last_tile: int | None = None

        def on_event(self, event):
            super().on_event(event)
            if isinstance(event, FrameWritten) and len(self.of_type(FrameWritten)) == 8:
                self.made_at_last_tile = len(self.of_type(ImageMade))

    path = tmp_path / "s.h5"
    method = DeferredMean(delay_s=2.0)
    log = Order()
    runner = ScanRunner(_plan(path, 2, 4), _sim(), log, method=method)
    runner.start()
    finished = runner.wait(180)
    assert finished.reason is FinishReason.COMPLETED, finished.message
    # 8 tiles at 2 s each: the scan went on while the worker fell behind
    assert log.made_at_last_tile is not None and log.made_at_last_tile <= 4
    progress = log.of_type(BacklogProgress)
    assert progress, "no backlog was reported"
    assert progress[-1].done == progress[-1].total >= 8 - 4 - 2
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    check_every_image_is_made_from_its_shots(path, 8)


def test_a_failed_image_leaves_its_tile_pending_with_a_warning_and_refocus_makes_it(
    tmp_path, deferred_mean, monkeypatch
):
    from slidescan.app.events import ScanWarning
    from slidescan.app.refocus import refocus

    path = tmp_path / "s.h5"
    method = DeferredMean()
    calls = {"n": 0, "bad": None}
    real = method.make_image

    def flaky(shots):
        """Fails on the second tile's shots, every time they come (the backlog tries again)."""
        calls["n"] += 1
        key = shots[0][1].tobytes()
        if calls["n"] == 2:
            calls["bad"] = key
        if key == calls["bad"]:
            raise RuntimeError("out of memory")
        return real(shots)

    monkeypatch.setattr(method, "make_image", flaky)
    log = EventLog()
    runner = ScanRunner(_plan(path), _sim(), log, method=method)
    runner.start()
    assert runner.wait(120).reason is FinishReason.COMPLETED
    warnings = [w.message for w in log.of_type(ScanWarning)]
    failed = [w for w in warnings if "making its image failed (RuntimeError: out of memory)" in w]
    assert len(failed) == 2  # during the scan, and once more in the backlog
    with ScanReader(path) as r:
        assert len(r.pending()) == 1
        stand_in = r.pending()[0]
        i = int(np.flatnonzero((r.tiles["index"] == stand_in) & ~r.tiles["superseded"])[0])
        assert np.array_equal(r.image(i), r.shots(i)[0][1])  # the first shot stands in
    result = refocus(path, pending_only=True)
    assert result.tiles == 1
    check_every_image_is_made_from_its_shots(path, 6)


KILLED_SCAN = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_deferred_images import DeferredMean, _plan, _sim
    from slidescan.app.events import FrameWritten
    from slidescan.app.runner import ScanRunner
    from slidescan.focus import registry

    registry.register("deferredmean", DeferredMean)

    class Print:
        def on_event(self, e):
            if isinstance(e, FrameWritten):
                sys.stdout.write(f"written {e.index}\\n"); sys.stdout.flush()

    # every image takes far longer than the scan: the tiles wait for them when it is killed
    runner = ScanRunner(_plan(sys.argv[1], 2, 3, delay_s=600.0), _sim(), Print(),
                        method=DeferredMean(delay_s=600.0))
    runner.start()
    runner.wait()
    """
)


def test_a_scan_killed_while_tiles_wait_for_their_images_makes_them_on_resume(
    tmp_path, deferred_mean
):
    path = tmp_path / "killed.h5"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCAN, str(path), str(REPO / "tests")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    written = 0
    deadline = time.monotonic() + 120
    try:
        while written < 6 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written += line.startswith("written")
        assert written == 6, proc.stderr.read() if proc.poll() is not None else "too slow"
        time.sleep(0.3)  # the backlog phase has begun: the scan waits for images
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)  # reaps it and closes its pipes
    with ScanReader(path) as r:
        assert sorted(r.done_indices()) == list(range(6))
        assert sorted(r.pending()) == list(range(6))  # nothing was made before the kill
    method = DeferredMean()
    log = EventLog()
    runner = ScanRunner.for_resume(path, _sim(), log, method=method)
    runner.start()
    finished = runner.wait(120)
    assert finished.reason is FinishReason.COMPLETED, finished.message
    assert log.of_type(BacklogProgress)[-1].total == 6
    check_every_image_is_made_from_its_shots(path, 6)
