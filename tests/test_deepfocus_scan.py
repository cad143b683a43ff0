"""DeepFocus end to end with the shipped network on the simulator: a calibration made on the
microscope, then a scan that focuses every tile with it and a focus-map scan that surveys
with it. The figures that matter (MAE, frames) are measured by `slidescan focus eval` and
`slidescan bench`; this checks the pieces work together and stay inside the frame budget."""

from __future__ import annotations

import numpy as np
import pytest

from slidescan.app.events import FinishReason
from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
from slidescan.app.runner import ScanRunner
from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned.deepfocus_calibrate import calibrate_on_drive
from slidescan.focus.learned.deepfocus_model import load_sharpness, shipped_weights_path
from slidescan.hardware.sim import SimConfig, build_simulator


def _sim():
    return build_simulator(
        SimConfig(seed=3, camera={"width": 256, "height": 256}, optics={"fft_workers": 1})
    )


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    sim = _sim()
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    x, y = (x0 + x1) / 2 + 500, (y0 + y1) / 2 + 500  # not where the scans below go
    sim.move_xy(x, y)
    cal = calibrate_on_drive(
        load_sharpness(), FocusDrive(sim), float(sim.truth.true_focus_um(x, y)), "test"
    )
    return cal, cal.save(tmp_path_factory.mktemp("cal") / "cal.json")


def test_shipped_weights_exist_with_their_card():
    path = shipped_weights_path()
    assert path.is_file() and path.with_suffix(".md").is_file()


def test_calibration_on_the_simulator_has_a_dip_at_focus(calibration):
    cal, _ = calibration
    z = np.asarray(cal.z_um)
    med = np.asarray(cal.median)
    assert abs(z[np.argmin(med)]) < 1.0  # sharpest plane within a micrometre of the fit's focus
    assert med.max() - med.min() > 1.5  # in ln px: the blur width grows over 4.5x
    assert 1.0 < cal.fwhm_um < 15.0 and cal.fit_rms < 0.3


def _scan(tmp_path, focus: FocusSettings, name: str):
    sim = _sim()
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    plan = ScanPlan.grid(
        3,
        2,
        ((x0 + x1) / 2, (y0 + y1) / 2),
        sim.field_of_view_um,
        focus=focus,
        tissue=TissueSettings(enabled=False),
        output=str(tmp_path / f"{name}.h5"),
    )
    runner = ScanRunner(plan, sim)
    runner.start()
    fin = runner.wait(300)
    assert fin.reason is FinishReason.COMPLETED, fin.message
    return fin.summary


def test_a_scan_focuses_every_tile_within_its_budget(tmp_path, calibration):
    _, path = calibration
    s = _scan(
        tmp_path,
        FocusSettings(method="deepfocus", params={"calibration": str(path)}),
        "per_tile",
    )
    assert s["frames_per_tile"] <= 4.0
    assert s["fallbacks"] == 0
    assert s["focus_mae_um"] < 1.0  # a depth of field and a bit (0.81 um at 20x/0.75)


def test_deepfocus_surveys_a_focus_map(tmp_path, calibration):
    _, path = calibration
    s = _scan(
        tmp_path,
        FocusSettings(
            method="deepfocus",
            params={"calibration": str(path)},
            strategy="focusmap",
            survey_points=4,
            surface="plane",
        ),
        "map",
    )
    assert s["focus_mae_um"] < 1.5


def test_a_scan_without_a_calibration_stops_before_the_file_is_made(tmp_path, capsys):
    from slidescan.app.cli import main

    out = tmp_path / "scan.h5"
    code = main(["scan", "--rows", "2", "--cols", "2", "--focus", "deepfocus", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert "no DeepFocus calibration" in err[-1] and "focus calibrate --mode deepfocus" in err[-1]
    assert not out.exists()
