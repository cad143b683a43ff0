"""Benchmarks (app/bench.py, `slidescan bench`): the physical bound, the writer, small scans."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from slidescan.app.cli import main
from slidescan.app.plan import Tile
from slidescan.app.tools.bench import (
    grid_shape,
    physical_bound_s,
    run_scan_bench,
    run_writer_bench,
    three_exposure_bound_s,
)


def test_physical_bound_is_mean_move_plus_one_frame():
    calls = []

    def move_duration_s(**d):
        calls.append(d)
        return 0.001 * abs(d["x"]) + 0.002 * abs(d["y"])

    scope = SimpleNamespace(
        stage=SimpleNamespace(move_duration_s=move_duration_s),
        camera=SimpleNamespace(frame_time_ms=8.1, exposure_ms=10.0),
    )
    tiles = [Tile(0, 0, 0, 0, 0), Tile(1, 0, 1, 100, 0), Tile(2, 1, 1, 100, 50)]
    # moves: 100 um in x (0.1 s), 50 um in y (0.1 s); averaged over 3 tiles; plus 8.1 ms
    assert physical_bound_s(scope, tiles) == pytest.approx(0.2 / 3 + 0.0081)
    assert calls == [{"x": 100, "y": 0}, {"x": 0, "y": 50}]
    no_model = SimpleNamespace(stage=object(), camera=SimpleNamespace(exposure_ms=10.0))
    assert physical_bound_s(no_model, tiles) == pytest.approx(0.010)


def test_three_exposure_bound_adds_two_frames_two_z_steps_and_the_play():
    def move_duration_s(**d):
        return sum(0.001 * abs(v) for v in d.values()) + (0.01 if "z" in d else 0.0)

    tiles = [Tile(0, 0, 0, 0, 0), Tile(1, 0, 1, 100, 0)]
    cam = SimpleNamespace(frame_time_ms=8.0, exposure_ms=10.0)
    stage = SimpleNamespace(move_duration_s=move_duration_s, z_play_um=3.0)
    scope = SimpleNamespace(stage=stage, camera=cam)
    b = three_exposure_bound_s(scope, tiles, dz_um=2.0)
    base = 0.1 / 2 + 0.008  # the no-focus bound: mean XY move + one frame
    assert b["strict_s"] == pytest.approx(base + 2 * 0.008 + 2 * (0.002 + 0.01))
    assert b["with_play_s"] == pytest.approx(b["strict_s"] + 0.003 + 0.01)
    # a stage that cannot run a Z via point within the XY move takes the play up after it
    assert b["backlash_s"] == b["with_play_s"]
    no_play = SimpleNamespace(stage=SimpleNamespace(move_duration_s=move_duration_s), camera=cam)
    b0 = three_exposure_bound_s(no_play, tiles, dz_um=2.0)
    assert b0["with_play_s"] == b0["backlash_s"] == b0["strict_s"] == pytest.approx(b["strict_s"])


def test_the_backlash_bound_runs_the_z_reversal_inside_the_xy_move():
    """Between tiles Z goes down past the next first frame (2 dz below focus) by the play and
    back up by the play, within the XY move: it costs only what the two Z legs outlast XY."""
    calls = []

    def move_duration_s(z_via=None, **d):
        calls.append((z_via, d))
        xy = 0.001 * max(abs(d.get("x", 0.0)), abs(d.get("y", 0.0)))
        z = d.get("z", 0.0)
        zt = 0.01 * (abs(z_via) + abs(z - z_via)) if z_via is not None else 0.01 * abs(z)
        return max(xy, zt) + 0.005

    tiles = [Tile(0, 0, 0, 0, 0), Tile(1, 0, 1, 100, 0), Tile(2, 0, 2, 200, 0)]
    cam = SimpleNamespace(frame_time_ms=8.0, exposure_ms=10.0)
    for play, step_s in ((3.0, 0.01 * (7.0 + 3.0) + 0.005), (20.0, 0.01 * (24.0 + 20.0) + 0.005)):
        stage = SimpleNamespace(move_duration_s=move_duration_s, z_play_um=play, blends_z_via=1)
        b = three_exposure_bound_s(SimpleNamespace(stage=stage, camera=cam), tiles, dz_um=2.0)
        # per tile: 2 of 3 tiles move; the XY move (0.105 s) is replaced by the via move
        step = max(0.1, step_s - 0.005) + 0.005
        assert b["backlash_s"] == pytest.approx(b["strict_s"] + 2 * (step - 0.105) / 3)
        assert (None, {"x": 100, "y": 0}) in calls
        assert (-(4.0 + play), {"x": 100, "y": 0, "z": -4.0}) in calls
        # 3 um: the legs (0.1 s) just fit in the XY move; 20 um: they outlast it
        assert (b["backlash_s"] > b["strict_s"]) is (play > 3.0)


def test_writer_bench_reports_throughput(tmp_path):
    r = run_writer_bench(n_tiles=4, tile_shape=(256, 256, 3), folder=tmp_path)
    assert r["tiles"] == 4 and r["image_mb"] == pytest.approx(4 * 256 * 256 * 3 / 1e6)
    assert r["file_mb"] >= r["image_mb"] and r["mb_per_s"] > 0 and r["seconds"] > 0
    assert r["raw_disk_mb_per_s"] > 0 and r["fraction_of_raw"] > 0
    assert list(tmp_path.iterdir()) == []  # the temporary scan file is gone


def test_scan_bench_on_the_simulator():
    rows = run_scan_bench(
        methods=("zsweep", "none"), profiles=("commercial",), n_tiles=4, camera_shape=(64, 64)
    )
    by = {r["method"]: r for r in rows}
    assert set(by) == {"zsweep", "none"}
    for r in rows:
        assert r["tiles"] == 4 and r["peak_memory_mb"] > 0
        # nothing beats the stage: every tile needs at least one move and one exposure
        assert r["hardware_s_per_tile"] >= r["bound_s_per_tile"] * 0.999
        assert 0 < r["ratio_to_bound"] <= 1.001
    assert by["none"]["frames_per_tile"] == 1 and by["zsweep"]["frames_per_tile"] >= 15
    for r in rows:  # no per-slide calibration: the steady figures are those of every tile
        assert r["calibration_tiles"] == 0
        assert r["steady_frames_per_tile"] == r["frames_per_tile"]
        assert r["steady_hardware_s_per_tile"] == pytest.approx(r["hardware_s_per_tile"])
    assert by["none"]["ratio_to_bound"] > 5 * by["zsweep"]["ratio_to_bound"]
    assert by["zsweep"]["focus_mae_um"] < by["none"]["focus_mae_um"]
    with pytest.raises(ValueError, match="unknown timing profile"):
        run_scan_bench(methods=("none",), profiles=("warp-drive",), n_tiles=1)


def test_bench_cli(capsys):
    assert main(["bench", "writer", "--writer-tiles", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["writer"][0]["tiles"] == 2 and out["writer"][0]["mb_per_s"] > 0
    for argv, fragment in (
        (["bench", "bogus"], "invalid choice"),
        (["bench", "scan", "--camera", "10x"], "--camera"),
        (["bench", "scan", "--methods", ","], "--methods"),
    ):
        assert main(argv) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0]


def test_grid_shape_is_exact_and_squarish():
    assert grid_shape(36) == (6, 6) and grid_shape(50) == (5, 10) and grid_shape(500) == (20, 25)
    assert grid_shape(7) == (1, 7)
    with pytest.raises(ValueError):
        grid_shape(0)
