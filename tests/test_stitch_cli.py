"""`slidescan stitch` on a small simulated scan with stage XY errors: accuracy against the
simulator's true positions, the result stored in the scan file (surviving a reopen and a kill
half way through a run), and one-line errors for bad files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from slidescan.app.cli import main
from slidescan.app.stitch.mosaic import ScanMosaic
from slidescan.app.store import ScanReader

#: A tissue edge: some tiles empty glass (skipped), some half tissue.
REGION = "20080,9620,20257,9797"


@pytest.fixture(scope="module")
def edge_scan(tmp_path_factory) -> Path:
    """A 5 x 5 scan (160 px camera, 20 % overlap) on a stage with 1 um rms repeatability and
    3 um play, made once for the module through the CLI."""
    from slidescan.hardware.profile import HardwareProfile, load_profile, save_profile

    root = tmp_path_factory.mktemp("stitch-scan")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(root / "config"))
        data = load_profile("simulator").model_dump(mode="json")
        data["simulator"] = {
            **(data.get("simulator") or {}),
            "camera": {"width": 160, "height": 160},
            "stage": {"preset": "commercial", "xy_jitter_um": 1.0, "xy_backlash_um": 3.0},
        }
        data["name"] = "stitch-sim"
        save_profile(HardwareProfile.model_validate(data), "stitch-sim")
        path = root / "edge.h5"
        code = main(["scan", "--profile", "stitch-sim", "--region", REGION, "--overlap", "0.2",
                     "--out", str(path), "--json"])  # fmt: skip
        assert code == 0
    return path


@pytest.fixture
def scan(edge_scan, tmp_path) -> Path:
    path = tmp_path / "scan.h5"
    shutil.copy(edge_scan, path)
    return path


def _stitch_json(capsys, path: Path) -> dict:
    code = main(["stitch", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_stitch_places_tiles_within_a_third_of_a_pixel(scan, capsys):
    s = _stitch_json(capsys, scan)
    with ScanReader(scan) as r:
        cur = r.current()
        imaged = int((~cur["skipped"]).sum())
        assert cur["skipped"].any() and imaged >= 10  # tissue and glass
    assert s["generation"] == 1 and s["tiles"] == imaged
    assert s["tiles_registered"] == imaged and s["tiles_stage"] == 0
    assert s["rms_error_px"] <= 0.3 and s["max_error_px"] <= 1.0, s
    assert s["stage_rms_error_px"] > 3  # what the stage alone would give
    assert s["pairs_used"] >= s["tiles"] - 1
    assert s["flatfield_source"] == "glass" and s["white_balance_source"] == "glass"
    gains = s["white_balance"]["gains"]
    assert max(gains) / min(gains) < 1.02  # the simulator's lamp is white

    code = main(["stitch", str(scan)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "stitching run 2" in out and "by their overlaps" in out and "true positions" in out


def test_stored_result_survives_a_reopen(scan, capsys):
    with ScanReader(scan) as r:
        status = r.status
        assert r.placement() is None and r.stitch_run() is None
        stage_mosaic = ScanMosaic(r)  # never stitched: stage positions, uncorrected
        assert stage_mosaic.generation == 0
    s = _stitch_json(capsys, scan)
    with ScanReader(scan) as r:
        assert r.status == status  # stitching leaves the scan's status alone
        p = r.placement()
        assert r.stitch_generation == 1 and p.size == s["tiles"]
        assert set(p["source"]) == {b"registered"}
        assert np.isfinite(p["residual_px"]).all()
        assert (p["x_px"].min(), p["y_px"].min()) == (0.0, 0.0)
        pairs = r.pairs()
        assert pairs.size == s["pairs"] and pairs["used"].sum() == s["pairs_used"]
        run = r.stitch_run()
        assert run["generation"] == 1 and run["figures"]["rms_error_px"] == s["rms_error_px"]
        flat = r.flatfield()
        assert flat is not None and flat.shape == (160, 160, 3)
        assert 0.9 < flat.mean() < 1.1 and flat.min() < 0.97  # the vignetting
        mosaic = ScanMosaic(r)
        region = mosaic.read(40, 60, 200, 300)
        assert mosaic.info.pixel_size_um == r.pixel_size_um
    with ScanReader(scan) as r:  # a second reader sees the same
        np.testing.assert_array_equal(r.placement(), p)
        np.testing.assert_array_equal(ScanMosaic(r).read(40, 60, 200, 300), region)
    _stitch_json(capsys, scan)
    with ScanReader(scan) as r:
        assert r.stitch_generation == 2
        assert (r.placement()["generation"] == 2).all() and r.placement().size == p.size
        np.testing.assert_allclose(r.placement()["x_px"], p["x_px"])


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from slidescan.app.stitch import stored
    from slidescan.app.stitch.stitcher import stitch
    from slidescan.app.store import ScanReader

    path, stop = sys.argv[1], sys.argv[2]
    with ScanReader(path) as r:
        result = stitch(r)
    result.xy[:, 0] += 7.5  # recognisably another placement

    def step(name):
        sys.stdout.write(f"step {name}\\n")
        sys.stdout.flush()
        if name == stop:
            time.sleep(120)

    print("start", flush=True)
    stored.save(path, result, on_step=step)
    print("done", flush=True)
    """
)


def _snapshot(path: Path) -> tuple[int, np.ndarray, dict, np.ndarray]:
    with ScanReader(path) as r:
        mosaic = ScanMosaic(r)
        return r.stitch_generation, r.placement(), r.stitch_run(), mosaic.read(0, 0, 150, 150)


def test_a_killed_stitch_run_leaves_the_previous_one_in_force(scan, capsys, tmp_path):
    _stitch_json(capsys, scan)
    before = _snapshot(scan)
    script = tmp_path / "kill_stitch.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for stop in ("rows", "flatfield", "run"):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(scan), stop],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.strip() == f"step {stop}" or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        generation, placement, run, pixels = _snapshot(scan)
        assert generation == before[0] == 1, stop
        np.testing.assert_array_equal(placement, before[1])
        assert run == before[2]
        np.testing.assert_array_equal(pixels, before[3])
    with h5py.File(scan, "r", swmr=True) as f:  # the killed runs' rows are there, uncommitted
        assert f["stitch/placement"]["generation"].max() == 4
    # the next run recovers the killed writer's file and commits a fresh generation
    s = _stitch_json(capsys, scan)
    assert s["generation"] == 5
    with ScanReader(scan) as r:
        assert r.stitch_generation == 5 and (r.placement()["generation"] == 5).all()
        assert r.verify() == []


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("slidescan: error: stitch:"), err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_bad_files_give_one_line(tmp_path, scan, capsys):
    code = main(["stitch", str(tmp_path / "missing.h5")])
    _one_line_error(code, capsys.readouterr().err, "no such file")

    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    code = main(["stitch", str(text)])
    _one_line_error(code, capsys.readouterr().err, "notes.h5")

    cut = tmp_path / "cut.h5"
    data = scan.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    code = main(["stitch", str(cut)])
    _one_line_error(code, capsys.readouterr().err)

    code = main(["stitch", str(scan), "--search-um", "-3"])
    _one_line_error(code, capsys.readouterr().err, "--search-um")


def test_refuses_a_file_another_live_process_writes(scan, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with h5py.File(scan, "r+") as f:
            f.attrs.modify("writer_pid", np.int64(sleeper.pid))
        code = main(["stitch", str(scan)])
        _one_line_error(code, capsys.readouterr().err, "being written by process")
    finally:
        sleeper.kill()
        sleeper.wait()
    with ScanReader(scan) as r:
        assert r.stitch_generation == 0


def test_a_file_open_in_another_program_is_refused_before_the_work(scan, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            f"""
            import sys, time
            from slidescan.app.store import ScanReader
            r = ScanReader({str(scan)!r})
            print("open", flush=True)
            time.sleep(60)
            """
        )],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        code = main(["stitch", str(scan)])
        _one_line_error(code, capsys.readouterr().err, "open in another program")
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert main(["stitch", str(scan)]) == 0  # once it is closed
