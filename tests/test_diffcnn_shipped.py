"""The shipped diffcnn weights on the simulator, the registry entry, and `slidescan train`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from slidescan.app.cli import main
from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned.diffcnn import DiffCNNFocus
from slidescan.focus.learned.diffcnn_model import (
    DiffCNNPredictor,
    load_diffcnn,
    shipped_weights_path,
)
from slidescan.focus.protocol import FocusHint
from slidescan.focus.registry import get_method

SHIPPED = shipped_weights_path("20x/0.75")


def test_shipped_weights_are_small_and_self_describing():
    assert SHIPPED.is_file(), f"shipped weights missing: {SHIPPED}"
    assert SHIPPED.stat().st_size < 5e6
    model, meta = load_diffcnn(SHIPPED)
    assert meta.objective == "20x/0.75" and meta.na == 0.75
    assert meta.delta_um > 0 and meta.y_min_um - meta.delta_um > 0  # both shots below focus
    assert meta.trained["seed"] == 0 and "slidescan train diffcnn" in meta.trained["command"]
    assert SHIPPED.with_suffix(".md").is_file()  # the model card


def test_registry_builds_diffcnn_with_shipped_weights_and_params(tmp_path):
    method = get_method("diffcnn")
    assert method.name == "diffcnn" and method.predictor.path == SHIPPED
    assert get_method("diffcnn", max_pairs=1, min_confidence=0.3).max_pairs == 1


@pytest.fixture(scope="module")
def held_out_sim(tissue_dir):
    """A simulator on the real H&E image, which the shipped model was never trained on."""
    from slidescan.hardware.sim import SimConfig, build_simulator

    config = SimConfig(
        seed=11,
        specimen={"kind": "image", "image_path": tissue_dir / "he_nanozoomer_0.227um.png"},
        camera={"width": 384, "height": 384},
        optics={"fft_workers": 1},
    )
    return build_simulator(config)


def test_shipped_model_reads_the_distance_to_focus_on_unseen_tissue(held_out_sim):
    sim = held_out_sim
    predictor = DiffCNNPredictor()
    x, y = 25_000.0, 10_000.0
    z_focus = sim.true_focus_um(x, y)
    rng = np.random.default_rng(0)
    delta = predictor.meta.delta_um
    errors = []
    for distance in (3.5, 6.0, 9.0):
        z1 = z_focus - distance
        a = sim.render(x, y, z1, rng=rng)
        b = sim.render(x, y, z1 + delta, rng=rng)
        pred = predictor.predict(a, b, sim.optics.pixel_size_um)
        assert pred.n_patches >= 4
        errors.append(pred.distance_um - distance)
    # Physics, not a lookup: near focus it is accurate, and the farther the pair the larger
    # the distance it reports.
    assert abs(errors[0]) < 0.5
    assert all(abs(e) < 1.5 for e in errors)


def test_method_focuses_the_simulator_in_three_frames(held_out_sim):
    sim = held_out_sim
    x, y = 25_500.0, 9_500.0
    sim.move_xy(x, y)
    z_focus = sim.true_focus_um(x, y)
    method = DiffCNNFocus(calibrate_tiles=0)  # the bare method: no per-slide sweep
    result = method.focus(FocusDrive(sim), FocusHint(z_um=z_focus + 1.0, range_um=2.0))
    assert result.ok, result.message
    assert abs(result.z_um - z_focus) < 0.4
    assert result.frames in (3, 5)
    assert result.final_frame is not None
    lo, hi = sim.z_limits
    assert lo <= result.z_um <= hi


@pytest.mark.parametrize("stage", ["commercial", "lowcost"])
def test_after_the_engines_approach_a_tile_is_two_short_upward_moves(tissue_dir, stage):
    """What the scan engine does: Z goes to `first_z` (the first shot) from below during the
    XY move, through the drive's overshoot point, and the hint says so. The first shot then
    needs no move: one move up to the second shot and one up to focus. Without the approach
    (a drive that does not know how it got there) it takes the play up itself, one move more."""
    from slidescan.hardware.sim import SimConfig, build_simulator

    def scope():
        return build_simulator(
            SimConfig(
                seed=11,
                stage=stage,
                specimen={"kind": "image", "image_path": tissue_dir / "he_nanozoomer_0.227um.png"},
                camera={"width": 256, "height": 256},
                optics={"fft_workers": 1},
            )
        )

    x, y = 25_500.0, 9_500.0
    for told in (True, False):
        sim = scope()
        z_focus = sim.true_focus_um(x, y)
        method = DiffCNNFocus(calibrate_tiles=0)
        drive = FocusDrive(sim)
        hint = FocusHint(z_um=z_focus + 0.3, range_um=1.0)
        first = method.first_z(drive, hint)
        drive.approach(first, lambda z, via, s=sim: s.move_xyz(x, y, z, via_z_um=via))
        if told:
            hint = FocusHint(hint.z_um, hint.range_um, start_z_um=first)
        else:
            drive = FocusDrive(sim)  # a drive that does not know how Z got here
        commanded: list[float] = []

        def move_z(z, _move=sim.move_z, _log=commanded):
            _log.append(z)
            _move(z)

        sim.move_z = move_z  # type: ignore[method-assign]
        moves_before = sim.sim_stage.moves
        result = method.focus(drive, hint)
        assert result.ok and result.frames == 3, result.message
        assert result.curve.z_um[0] == pytest.approx(first, abs=1e-9)
        moves = sim.sim_stage.moves - moves_before
        if told or sim.z_play_um == 0:
            assert np.all(np.diff([first, *commanded]) >= 0), commanded
            assert moves == 2
        else:  # not told: down and back up to the first shot before the pair
            assert commanded[0] < first and np.all(np.diff(commanded) >= 0), commanded
            assert moves == 4
        # The final frame is where the method said, up to the drive's steps and repeatability
        # (the low-cost stage's 3 um play is taken up) ...
        assert abs(sim.sim_stage.true_position().z - result.z_um) < 0.3
        # ... and, uncalibrated on a specimen it never saw, within one depth of field of focus
        # (held-out p95 without calibration: 0.58 um; the accuracy is measured by focus eval).
        assert abs(sim.sim_stage.true_position().z - z_focus) < 0.81


@dataclass
class _Optics:
    na: float
    immersion_n: float = 1.0


def test_axial_scale_stretches_distances_for_an_untrained_na():
    method = DiffCNNFocus()
    assert method.axial_scale(_Optics(0.75)) == 1.0
    s = method.axial_scale(_Optics(0.50))
    expected = math.tan(math.asin(0.75)) / math.tan(math.asin(0.50))
    assert s == pytest.approx(expected)
    assert DiffCNNFocus(na_scaling=False).axial_scale(_Optics(0.5)) == 1.0


# -- CLI -------------------------------------------------------------------------------------------
def test_train_help_and_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "diffcnn", "--help"])
    assert e.value.code == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["train"]) == 2
    assert "choose a model" in capsys.readouterr().err
    assert main(["train", "diffcnn", "--objective", "63x/1.4"]) == 2
    err = capsys.readouterr().err
    assert "unknown objective" in err and err.count("\n") == 1
    assert main(["train", "diffcnn", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert main(["train", "diffcnn", "--tissue", "/nonexistent/tissue"]) == 1
    assert "not found" in capsys.readouterr().err
