"""The seam for focus methods that make the tile's image (TSVA fuses two shots): a method defined
here returns the mean of two shots instead of a z; it runs through a simulated scan, lands in
the scan file as a made image with its raw shots, and shows as such in `slidescan info` and in
review."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import Field

from slidescan.app.cli import main
from slidescan.app.events import EventLog, FinishReason, FocusDone
from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
from slidescan.app.runner import ScanRunner
from slidescan.app.store import ScanReader
from slidescan.focus import registry
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import (
    FocusCurve,
    FocusHint,
    FocusMethod,
    FocusParams,
    FocusResult,
    MadeImage,
    Shot,
)
from slidescan.hardware.sim import SimConfig, build_simulator


class MeanOfTwoParams(FocusParams):
    spacing_um: float = Field(default=1.0, gt=0, description="distance between the shots")


class MeanOfTwo(FocusMethod):
    """Two shots `spacing_um` apart around the hint; the tile is their mean. No z measured."""

    name = "meanoftwo"
    Params = MeanOfTwoParams
    makes_image = True

    def first_z(self, drive: FocusDrive, hint: FocusHint) -> float:
        return hint.z_um - self.params.spacing_um / 2

    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        t0 = drive.now()
        start = hint.start_z_um if hint.start_z_um is not None else self.first_z(drive, hint)
        f1, m1 = drive.snap_at(start)
        f2, m2 = drive.snap_at(m1.z_um + self.params.spacing_um)
        mean = (f1.image.astype(np.uint16) + f2.image) // 2
        made = MadeImage(
            mean.astype(f1.image.dtype), (Shot(m1.z_um, f1), Shot(m2.z_um, f2)), "mean"
        )
        curve = FocusCurve(np.array([m1.z_um, m2.z_um]), np.zeros(2), label="shots")
        return FocusResult(
            z_um=None,
            frames=2,
            hardware_s=drive.now() - t0,
            compute_s=0.0,
            confidence=1.0,
            curve=curve,
            method=self.name,
            made=made,
        )


@pytest.fixture
def mean_of_two():
    registry.register("meanoftwo", MeanOfTwo)
    yield
    registry._REGISTRY.pop("meanoftwo", None)


def _small_sim():
    return build_simulator(
        SimConfig(seed=2, camera={"width": 64, "height": 48}, optics={"fft_workers": 1})
    )


def test_a_made_image_runs_through_a_scan_into_the_file(tmp_path, mean_of_two):
    sim = _small_sim()
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    plan = ScanPlan.grid(
        2,
        2,
        ((x0 + x1) / 2, (y0 + y1) / 2),
        sim.field_of_view_um,
        focus=FocusSettings(method="meanoftwo", params={"spacing_um": 2.0}),
        tissue=TissueSettings(enabled=False),
        output=str(tmp_path / "made.h5"),
    )
    log = EventLog()
    runner = ScanRunner(plan, sim, log)
    runner.start()
    fin = runner.wait(120)
    assert fin.reason is FinishReason.COMPLETED, fin.message
    assert fin.summary["made_images"] == 4 and fin.summary["fallbacks"] == 0
    assert all(e.image_source == "made" for e in log.of_type(FocusDone))
    with ScanReader(tmp_path / "made.h5") as r:
        assert r.format_version == 2 and r.verify() == []
        t = r.tiles
        assert set(t["image_source"]) == {b"made"} and set(t["made_kind"]) == {b"mean"}
        assert (t["shot_count"] == 2).all() and (t["tile_frames"] == 2).all()
        assert np.isnan(t["z_um"]).all()  # no z was measured: none is claimed
        for row in range(r.n_tiles):
            (z1, a), (z2, b) = r.shots(row)
            assert z2 - z1 == pytest.approx(2.0)
            expected = ((a.astype(np.uint16) + b) // 2).astype(a.dtype)
            np.testing.assert_array_equal(r.image(row), expected)
    # the CLI reads it back as such
    assert main(["info", str(tmp_path / "made.h5")]) == 0


def test_info_and_review_say_the_image_was_made(tmp_path, mean_of_two, capsys, qtbot):
    sim = _small_sim()
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    plan = ScanPlan.grid(
        1,
        2,
        ((x0 + x1) / 2, (y0 + y1) / 2),
        sim.field_of_view_um,
        focus=FocusSettings(method="meanoftwo"),
        tissue=TissueSettings(enabled=False),
        output=str(tmp_path / "made.h5"),
    )
    runner = ScanRunner(plan, sim)
    runner.start()
    assert runner.wait(120).reason is FinishReason.COMPLETED
    capsys.readouterr()
    assert main(["info", str(tmp_path / "made.h5")]) == 0
    out = capsys.readouterr().out
    assert "2 made by the focus method from its shots" in out

    from slidescan.app.gui.review import COLUMNS, ReviewWindow

    win = ReviewWindow(tmp_path / "made.h5")
    qtbot.addWidget(win)
    flags = [win.table.item(i, COLUMNS.index("flags")).text() for i in range(win.table.rowCount())]
    assert flags == ["virtual focus: mean from 2 shots"] * 2
    win.close()


def test_a_method_that_makes_no_image_and_no_z_falls_back(tmp_path):
    class Empty(FocusMethod):
        name = "empty"

        def focus(self, drive, hint):
            return FocusResult(None, 0, 0.0, 0.0, 1.0, method=self.name)

    sim = _small_sim()
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    plan = ScanPlan.grid(
        1,
        1,
        ((x0 + x1) / 2, (y0 + y1) / 2),
        sim.field_of_view_um,
        tissue=TissueSettings(enabled=False),
        output=str(tmp_path / "e.h5"),
    )
    runner = ScanRunner(plan, sim, method=Empty())
    runner.start()
    assert runner.wait(60).reason is FinishReason.COMPLETED
    with ScanReader(tmp_path / "e.h5") as r:
        rec = r.tiles[0]
        assert rec["fallback"] == b"predicted" and rec["image_source"] == b"capture"
        assert rec["z_um"] == rec["hint_z_um"]
        assert b"neither a z nor an image" in rec["fallback_reason"]
