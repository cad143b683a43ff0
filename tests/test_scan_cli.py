"""`slidescan scan` and `slidescan info` as a user runs them, on a small simulator profile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from slidescan.app.cli import main
from slidescan.app.store import ScanFileError, ScanReader


@pytest.fixture
def tiny_profile() -> str:
    """The shipped simulator profile with a 128 x 128 camera, saved in the (temporary) user
    profile folder, so the CLI and its subprocesses find it by name."""
    from slidescan.hardware.profile import HardwareProfile, load_profile, save_profile

    data = load_profile("simulator").model_dump(mode="json")
    data["simulator"] = {**(data.get("simulator") or {}), "camera": {"width": 128, "height": 128}}
    data["name"] = "tiny-sim"
    save_profile(HardwareProfile.model_validate(data), "tiny-sim")
    return "tiny-sim"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("slidescan: error:"), err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_scan_then_info(tmp_path, capsys, tiny_profile):
    out_file = tmp_path / "x.h5"
    code, out, err = _run(
        capsys, "scan", "--profile", tiny_profile, "--rows", "3", "--cols", "3",
        "--out", str(out_file), "--json",
    )  # fmt: skip
    assert code == 0, err
    s = json.loads(out)
    assert s["reason"] == "completed" and s["status"] == "completed"
    assert s["tiles_done"] == s["tiles_planned"] == 9
    # z-sweep on the simulator's default focal surface, 20x/0.75 (DOF 0.81 um)
    assert s["focus_mae_um"] <= 0.2
    assert 15 <= s["frames_per_tile"] <= 30
    assert s["hardware_s_per_tile"] > 0 and s["compute_s_per_tile"] > 0

    code, out, err = _run(capsys, "info", str(out_file), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["tiles_done"] == 9 and info["status"] == "completed"
    assert info["focus_mae_um"] == pytest.approx(s["focus_mae_um"])
    assert info["plan"]["focus"]["method"] == "zsweep" and info["tile_shape"] == [128, 128, 3]
    assert info["file_bytes"] > 9 * 128 * 128 * 3

    code, out, err = _run(capsys, "info", str(out_file))
    assert code == 0 and "9/9 done" in out and "completed" in out and "MAE" in out

    with ScanReader(out_file) as r:
        assert r.profile["name"] == "tiny-sim"
        t = r.tiles
        assert (abs(t["z_um"] - t["true_focus_um"]) < 0.5).all()
        assert r.verify() == []

    # refuses to overwrite; --overwrite replaces
    code, out, err = _run(
        capsys, "scan", "--profile", tiny_profile, "--rows", "1", "--cols", "1",
        "--out", str(out_file),
    )  # fmt: skip
    _one_line_error(code, err, "exists", "--overwrite")
    code, out, err = _run(
        capsys, "scan", "--profile", tiny_profile, "--rows", "1", "--cols", "2",
        "--focus", "none", "--out", str(out_file), "--overwrite", "--json",
    )  # fmt: skip
    assert code == 0, err and json.loads(out)["tiles_done"] == 2


def test_focusmap_scan(tmp_path, capsys, tiny_profile):
    out_file = tmp_path / "fm.h5"
    code, out, err = _run(
        capsys, "scan", "--profile", tiny_profile, "--rows", "3", "--cols", "4",
        "--focus", "focusmap", "--survey-points", "6", "--surface", "plane",
        "--out", str(out_file), "--json",
    )  # fmt: skip
    assert code == 0, err
    s = json.loads(out)
    assert s["tiles_done"] == 12
    with ScanReader(out_file) as r:
        assert r.survey().size == 6
        t = r.tiles
        assert set(t["method"].tolist()) == {b"focusmap"}
        assert (t["frames"] == 0).all()  # no per-tile focusing
    # a plane through 6 points over a ~0.3 mm patch follows the surface to well under a DOF
    assert s["focus_mae_um"] < 0.4


def test_tissue_detection_skips_the_glass_around_the_section(tmp_path, capsys, tiny_profile):
    """A strip across the section's left edge at 10x: glass tiles are skipped, tissue taken."""
    from slidescan.hardware.profile import load_profile, open_microscope

    out_file = tmp_path / "edge.h5"
    code, out, err = _run(
        capsys, "scan", "--profile", tiny_profile, "--objective", "10x/0.30",
        "--region", "19000,9960,21000,10040", "--overlap", "0", "--focus", "none",
        "--out", str(out_file), "--json",
    )  # fmt: skip
    assert code == 0, err
    scope = open_microscope(load_profile(tiny_profile), objective="10x/0.30")
    with ScanReader(out_file) as r:
        t = r.tiles
        mask = np.array(
            [scope.tissue_mask(np.array([x]), np.array([y])).mean() for x, y in t[["x_um", "y_um"]]]
        )
        assert t.size == 25 and t["skipped"].sum() >= 5 and (~t["skipped"]).sum() >= 5
        assert not t["skipped"][mask > 0.5].any()  # every tile over tissue was taken
        assert t["skipped"][mask == 0].mean() > 0.8  # and (nearly) all glass was skipped
        assert all(r.image(i) is None for i in np.flatnonzero(t["skipped"]))
        assert (t["tile_frames"][t["skipped"]] == 1).all()
    assert json.loads(out)["tiles_skipped"] == int(t["skipped"].sum())


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--rows", "2", "--cols", "2"], "--out"),
        (["--region", "1,2,3", "--out", "{d}/a.h5"], "four numbers"),
        (["--region", "5,0,1,1", "--out", "{d}/a.h5"], "x1 > x0"),
        (["--rows", "2", "--region", "0,0,10,10", "--out", "{d}/a.h5"], "give one of"),
        (["--focus", "bogus", "--out", "{d}/a.h5"], "unknown focus method"),
        (["--focus-param", "nope", "--out", "{d}/a.h5"], "KEY=VALUE"),
        (["--focus-param", "wrong=1", "--out", "{d}/a.h5"], "no parameter"),
        (["--overlap", "0.9", "--out", "{d}/a.h5"], "overlap"),
        (["--rows", "0", "--cols", "3", "--out", "{d}/a.h5"], "at least 1"),
        (["--cols", "-2", "--out", "{d}/a.h5"], "at least 1"),
        (["--focus-param", "step_um=-1", "--out", "{d}/a.h5"], "step_um"),
        (["--out", "{d}/missing/a.h5"], "does not exist"),
        (["--resume", "{d}/none.h5"], "no such file"),
        (["--profile", "no-such-profile", "--out", "{d}/a.h5"], "unknown profile"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, capsys, tiny_profile, args, fragment):
    argv = ["scan", *[a.format(d=tmp_path) for a in args]]
    if "--profile" not in argv:
        argv += ["--profile", tiny_profile]
    code, out, err = _run(capsys, *argv)
    _one_line_error(code, err, fragment)
    assert not (tmp_path / "a.h5").exists()


def test_info_errors(tmp_path, capsys):
    code, _, err = _run(capsys, "info", str(tmp_path / "nope.h5"))
    _one_line_error(code, err, "no such file")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    code, _, err = _run(capsys, "info", str(tmp_path / "junk.h5"))
    _one_line_error(code, err, "junk.h5")


def test_ctrl_c_cancels_cleanly_and_resume_finishes(tmp_path, tiny_profile):
    out_file = tmp_path / "c.h5"
    cmd = [sys.executable, "-m", "slidescan.app.cli", "scan", "--profile", tiny_profile]
    proc = subprocess.Popen(
        [*cmd, "--rows", "6", "--cols", "6", "--out", str(out_file), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
        # a test run started in the background of a non-interactive shell (`pytest &`) ignores
        # SIGINT, and a child inherits that (Python then leaves Ctrl-C ignored, as it should);
        # the user's terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until a few tiles are in the file
        time.sleep(0.02)
        if out_file.exists():
            try:
                with ScanReader(out_file) as r:
                    if r.n_tiles >= 2:
                        break
            except ScanFileError:  # the writer holds it locked while it creates it: try again
                continue
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (err, out[-300:])
    s = json.loads(out)
    assert s["reason"] == "cancelled" and 2 <= s["tiles_done"] < 36
    with ScanReader(out_file) as r:
        assert r.status == "cancelled" and r.verify() == []
    done = subprocess.run(
        [sys.executable, "-m", "slidescan.app.cli", "scan", "--resume", str(out_file), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with ScanReader(out_file) as r:
        assert r.status == "completed"
        assert sorted(r.tiles["index"].tolist()) == list(range(36))


def test_a_damaged_file_is_reported_and_resume_salvages_it(tmp_path, capsys, tiny_profile):
    """The first 60 % of a finished 9-tile file (a copy cut short): `info` says it is damaged
    and what is readable; `scan --resume` copies every intact tile into a new file beside it,
    leaves the damaged one as it is, and finishes the scan there."""
    import hashlib

    whole = tmp_path / "whole.h5"
    code, _, err = _run(
        capsys, "scan", "--profile", tiny_profile, "--rows", "3", "--cols", "3",
        "--out", str(whole), "--json",
    )  # fmt: skip
    assert code == 0, err
    cut = tmp_path / "cut.h5"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(0.6 * len(data))])
    digest = hashlib.sha256(cut.read_bytes()).hexdigest()

    code, out, _ = _run(capsys, "info", str(cut))
    assert code == 1 and "DAMAGED" in out and "cut short" in out
    readable = int(out.split("readable: ", 1)[1].split(" of 9", 1)[0])
    assert 1 <= readable < 9
    code, out, _ = _run(capsys, "info", str(cut), "--json")
    assert code == 1 and json.loads(out)["readable_tiles"] == readable

    code, out, err = _run(capsys, "scan", "--resume", str(cut), "--json")
    assert code == 0, err
    salvaged = tmp_path / "cut.salvaged.h5"
    assert f"salvaged {readable} of 9" in err and str(salvaged) in err
    summary = json.loads(out)
    assert summary["tiles_done"] == 9 and summary["path"] == str(salvaged)
    assert summary["tiles_this_run"] == 9 - readable
    assert hashlib.sha256(cut.read_bytes()).hexdigest() == digest  # left as it was
    with ScanReader(salvaged) as r, ScanReader(whole) as w:
        assert r.status == "completed" and r.verify() == []
        kept = [i for i in range(readable)]
        for i in kept:  # the salvaged tiles are the original ones, bit for bit
            assert r.tiles["index"][i] == w.tiles["index"][i]
            np.testing.assert_array_equal(r.image(i), w.image(i))


@pytest.fixture
def small_slide_profile() -> str:
    """A simulator with a small slide (2.4 x 1.6 mm of tissue area) at 10x with a 256 px
    camera: a whole-slide tissue scan in about a hundred tiles."""
    from slidescan.hardware.profile import HardwareProfile, load_profile, save_profile

    data = load_profile("simulator").model_dump(mode="json")
    data["simulator"] = {
        **(data.get("simulator") or {}),
        "camera": {"width": 256, "height": 256},
        "specimen": {"bounds_um": [20000.0, 6000.0, 22400.0, 7600.0]},
    }
    data["objectives"] = [{"name": "10x/0.30"}]
    data["default_objective"] = "10x/0.30"
    data["name"] = "small-slide"
    save_profile(HardwareProfile.model_validate(data), "small-slide")
    return "small-slide"


def test_scan_tissue_covers_the_tissue_and_keeps_the_overview(
    tmp_path, capsys, small_slide_profile
):
    out_file = tmp_path / "t.h5"
    code, out, err = _run(
        capsys, "scan", "--profile", small_slide_profile, "--tissue",
        "--focus", "none", "--no-tissue-detection", "--out", str(out_file), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert "tissue: 1 region(s)" in err
    s = json.loads(out)
    assert s["status"] == "completed" and s["tiles_done"] == s["tiles_planned"]
    with ScanReader(out_file) as r:
        assert r.plan.region.kind == "polygons"
        overview = r.overview()
        assert overview is not None and overview.image.shape[2] == 3
        tiles = r.planned_tiles
        fov = r.fov_um
    from slidescan.hardware.sim import SimConfig, build_simulator

    sim_ = build_simulator(
        SimConfig(specimen={"bounds_um": [20000.0, 6000.0, 22400.0, 7600.0]},
                  camera={"width": 16, "height": 16})
    )  # fmt: skip
    # every point of tissue (the simulator's truth, on a 40 um grid) lies in some tile
    xs = np.arange(19000.0, 23400.0, 40.0)
    ys = np.arange(5000.0, 8600.0, 40.0)
    mask = sim_.tissue_mask(xs, ys) > 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    px, py = xx[mask], yy[mask]
    cx = np.array([t.x_um for t in tiles])
    cy = np.array([t.y_um for t in tiles])
    covered = (np.abs(px[:, None] - cx) <= fov[0] / 2) & (np.abs(py[:, None] - cy) <= fov[1] / 2)
    assert covered.any(axis=1).mean() > 0.999
    # and it takes fewer tiles than the bounding box of the slide's tissue area would
    box = (2400 / (fov[0] * 0.9) + 1) * (1600 / (fov[1] * 0.9) + 1)
    assert len(tiles) < box
    code, _, err = _run(capsys, "scan", "--profile", small_slide_profile, "--tissue",
                        "--rows", "2", "--out", str(tmp_path / "x.h5"))  # fmt: skip
    _one_line_error(code, err, "one of --tissue, --region or --rows/--cols")
