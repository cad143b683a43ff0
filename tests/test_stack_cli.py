"""`slidescan stack synth|info|sheet` and `slidescan focus eval`: help, bad input, JSON, output."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy import ndimage

from slidescan.app.cli import main
from slidescan.app.tools.stacks import choose_planes, defocus_offsets
from slidescan.focus import registry
from slidescan.focus.protocol import FocusMethod, FocusParams, FocusResult
from slidescan.hardware.optics import OpticalPath, get_objective
from slidescan.hardware.stackfile import FocusStack, write_stacks

OPTICS = OpticalPath(get_objective("20x/0.75"))
TRUTHS = (1.5, -4.0, 7.25)


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory, tissue_dir):
    """Three RGB stacks of real tissue blurred by |defocus|, sharp at known true focus."""
    rgb = cv2.cvtColor(
        cv2.imread(str(tissue_dir / "he_nanozoomer_0.227um.png")), cv2.COLOR_BGR2RGB
    ).astype(np.float64)
    stacks = []
    for k, truth in enumerate(TRUTHS):
        z = truth + np.arange(-6.0, 6.01, 0.5)
        field = rgb[150 * k : 150 * k + 96, 300:396]
        planes = [
            ndimage.gaussian_filter(field, (1.2 * abs(d), 1.2 * abs(d), 0)) for d in z - truth
        ]
        images = np.clip(np.rint(planes), 0, 255).astype(np.uint8)
        stacks.append(
            FocusStack(f"{k:04d}", images, z, truth, meta={"x_um": 1000.0 * k, "y_um": 500.0})
        )
    path = tmp_path_factory.mktemp("stacks") / "s.h5"
    return write_stacks(path, stacks, OPTICS, source="test", source_config={"seed": 3})


def _one_line_error(capsys, code, argv):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("slidescan: error:") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["stack", "--help"],
        ["stack", "synth", "--help"],
        ["stack", "info", "--help"],
        ["stack", "sheet", "--help"],
        ["focus", "--help"],
        ["focus", "eval", "--help"],
    ],
)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("code", "argv", "text"),
    [
        (2, ["stack"], "choose an action"),
        (2, ["focus"], "choose an action"),
        (2, ["stack", "info"], "required"),
        (1, ["stack", "info", "/no/such/file.h5"], "not found"),
        (2, ["stack", "synth", "--out", "x.h5", "--z-step", "0"], "--z-step must be positive"),
        (2, ["stack", "synth", "--out", "x.h5", "--z-step", "0.3"], "whole number"),
        (2, ["stack", "synth", "--out", "x.h5", "--z-min", "3", "--z-max", "1"], "must exceed"),
        (2, ["stack", "synth", "--out", "x.h5", "--positions", "0"], "at least 1"),
        (2, ["focus", "eval", "--mode", "x"], "required"),
        (2, ["focus", "eval", "--mode", "x", "--stacks", "s.h5", "--trials", "0"], "at least 1"),
        (2, ["focus", "eval", "--mode", "x", "--stacks", "s.h5", "--param", "oops"], "KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(capsys, code, argv, text):
    assert text in _one_line_error(capsys, code, argv)


def test_not_hdf5_is_a_clear_error(tmp_path, capsys):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    assert "not an HDF5 file" in _one_line_error(capsys, 1, ["stack", "info", str(junk)])


def test_info_json_and_text(stack_file, capsys):
    assert main(["stack", "info", str(stack_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stacks"] == 3 and info["source"] == "test"
    assert info["shapes"] == [[25, 96, 96, 3]] and info["dtypes"] == ["uint8"]
    assert info["z_steps_um"] == [0.5] and info["planes"] == [25]
    assert info["optics"]["na"] == 0.75
    assert info["true_focus"]["min_um"] == -4.0 and info["true_focus"]["max_um"] == 7.25
    assert info["true_focus"]["mean_um"] == pytest.approx(np.mean(TRUTHS))
    first = info["per_stack"][0]
    assert first["defocus_min_um"] == pytest.approx(-6.0)
    assert first["defocus_max_um"] == pytest.approx(6.0)
    assert first["x_um"] == 0.0 and first["uniform_step"]

    assert main(["stack", "info", str(stack_file)]) == 0
    text = capsys.readouterr().out
    assert "stacks      3" in text and "DOF 0.812 um" in text and "seed=3" in text
    assert "-6.00 .. +6.00" in text


def test_choose_planes_is_symmetric_about_focus():
    z = 2.0 + np.arange(-10, 6.01, 0.5)  # truth 2.0, deeper below than above
    picked = choose_planes(z, 2.0, 5)
    assert list(z[picked] - 2.0) == [-6.0, -3.0, 0.0, 3.0, 6.0]
    assert choose_planes(z[::-1].copy(), 2.0, 5) == [len(z) - 1 - i for i in picked]
    assert choose_planes(z, None, 3) == [0, 16, 32]


def test_sheet_puts_the_sharp_plane_in_the_middle(stack_file, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    argv = ["stack", "sheet", str(stack_file), "--out", str(out), "--stack", "0001"]
    assert main([*argv, "--planes", "5", "--tile", "64"]) == 0
    sheet = cv2.imread(str(out))
    gap, tile = 6, 64
    assert sheet.shape == (30 + 44 + tile + gap, 5 * tile + 6 * gap, 3)
    y = 30 + 44
    tiles = [sheet[y : y + tile, gap + n * (tile + gap) :][:, :tile] for n in range(5)]
    sharp = [
        ndimage.laplace(cv2.cvtColor(t, cv2.COLOR_BGR2GRAY).astype(float)).var() for t in tiles
    ]
    assert int(np.argmax(sharp)) == 2
    assert sharp[0] < sharp[1] < sharp[2] > sharp[3] > sharp[4]
    # the labels are drawn: the band above the tiles is not blank
    assert (sheet[30:y, gap : gap + tile] < 128).any()


def test_sheet_bad_input(stack_file, tmp_path, capsys):
    out = str(tmp_path / "s.png")
    assert "no stack" in _one_line_error(
        capsys, 1, ["stack", "sheet", str(stack_file), "--out", out, "--stack", "zz"]
    )
    assert "out of range" in _one_line_error(
        capsys, 1, ["stack", "sheet", str(stack_file), "--out", out, "--stack", "7"]
    )
    assert ".png" in _one_line_error(
        capsys, 2, ["stack", "sheet", str(stack_file), "--out", str(tmp_path / "s.jpg")]
    )


def test_defocus_offsets_cover_the_range_in_whole_steps():
    o = defocus_offsets(-10, 10, 0.25)
    assert len(o) == 81 and o[0] == -10 and o[-1] == 10 and o[40] == 0


class _OffsetParams(FocusParams):
    offset: float = 0.0


class _Offset(FocusMethod):
    """Reads the truth from the frame and misses it by `offset`."""

    name = "offset"
    Params = _OffsetParams

    def focus(self, drive, hint):
        truth = drive.device.snap().meta["true_focus_um"]
        return FocusResult(truth + self.params.offset, 1, 0.0, 0.0, 1.0)


@pytest.fixture
def fake_registry():
    registry.register("offset", _Offset)
    yield
    registry._REGISTRY.pop("offset", None)


def test_focus_eval_json_reports_the_known_error(stack_file, capsys, fake_registry):
    argv = ["focus", "eval", "--mode", "offset", "--stacks", str(stack_file)]
    assert main([*argv, "--trials", "3", "--param", "offset=0.5", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert captured.err == ""  # no progress bar with --json
    s = report["summary"]
    assert s["trials"] == 9 and s["stacks"] == 3
    assert s["mae_um"] == pytest.approx(0.5) and s["max_abs_um"] == pytest.approx(0.5)
    assert s["within_fraction"] == 0.0 and s["threshold_um"] == pytest.approx(0.406, abs=1e-3)
    assert s["frames_mean"] == 1 and s["hardware_s_mean"] == pytest.approx(0.010 + 0.008)
    assert report["params"] == {"offset": 0.5} and len(report["trials"]) == 9
    assert "DOF/2" in report["threshold"] and report["timing_source"] == "default"


def test_focus_eval_table_and_errors(stack_file, capsys, fake_registry):
    argv = ["focus", "eval", "--mode", "offset", "--stacks", str(stack_file), "--trials", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "MAE 0.000" in out and "within DOF/2  100.0 %" in out and "0002" in out
    assert "reaches outside" in _one_line_error(capsys, 1, [*argv, "--hint-range", "7"])
    assert "unknown focus method 'nope'" in _one_line_error(
        capsys, 2, ["focus", "eval", "--mode", "nope", "--stacks", str(stack_file)]
    )
    assert "not found" in _one_line_error(
        capsys, 1, ["focus", "eval", "--mode", "offset", "--stacks", "/no/file.h5"]
    )


def test_param_values_are_json_or_text():
    from slidescan.app.cli import parse_key_values

    assert parse_key_values(["a=3", "b=0.5", "c=true", "d=brenner", "e=[1, 2]"], "x") == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": "brenner",
        "e": [1, 2],
    }


# -- stack synth (needs the simulator) -------------------------------------------------------

SYNTH = ["--positions", "2", "--size", "64", "--z-min", "-2", "--z-max", "2", "--z-step", "0.5"]


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s.h5"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["stack", "synth", "--out", str(out), *SYNTH, "--seed", "4", "--json"])
    return code, json.loads(buf.getvalue()), out


def test_synth_writes_stacks_around_the_true_focus(synth_run):
    from slidescan.hardware.sim import STAGE_PRESETS
    from slidescan.hardware.stackfile import open_stacks

    code, result, out = synth_run
    assert code == 0 and result["stacks"] == 2 and result["planes"] == 9
    with open_stacks(out) as f:
        assert f.source == "simulator" and f.source_config["seed"] == 4
        assert f.source_config["camera"]["width"] == 64
        assert f.optics.na == 0.75 and f.optics.pixel_size_um == pytest.approx(6.5 / 20)
        timing = json.loads(f.attrs["replay_timing"])
        assert timing["z_settle_s"] == STAGE_PRESETS["commercial"].z_settle_ms / 1000
        positions = []
        for s in f:
            assert s.images.shape == (9, 64, 64, 3) and s.images.dtype == np.uint8
            np.testing.assert_allclose(s.defocus_um, np.arange(-2, 2.01, 0.5), atol=1e-9)
            assert s.meta["tissue_fraction"] >= 0.6
            positions.append((s.meta["x_um"], s.meta["y_um"]))
            # physics: the sharpest plane is the one at (or next to) zero defocus
            grey = s.images.mean(axis=3)
            sharp = [ndimage.laplace(g).var() for g in grey]
            assert abs(s.defocus_um[int(np.argmax(sharp))]) <= 0.5
            assert sharp[0] < sharp[4] > sharp[-1]
        (xa, ya), (xb, yb) = positions
        assert np.hypot(xa - xb, ya - yb) > 1000, "positions should be spread over the slide"


def test_synth_is_deterministic_in_the_seed(synth_run, tmp_path, capsys):
    from slidescan.hardware.stackfile import open_stacks

    _, first, out = synth_run
    again = tmp_path / "again.h5"
    assert main(["stack", "synth", "--out", str(again), *SYNTH, "--seed", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["positions"] == first["positions"]
    with open_stacks(out) as a, open_stacks(again) as b:
        np.testing.assert_array_equal(a[1].images, b[1].images)


def test_synth_bad_choices_are_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "x.h5")
    cases = [
        (2, ["--objective", "15x/0.4"], "unknown objective"),
        (2, ["--stage-preset", "rocket"], "unknown stage preset"),
        (1, ["--specimen", str(tmp_path / "none.png")], "specimen image not found"),
        (2, ["--size", "8"], "--size"),
    ]
    for code, extra, text in cases:
        assert text in _one_line_error(capsys, code, ["stack", "synth", "--out", out, *extra])
    assert "must be an .h5" in _one_line_error(
        capsys, 2, ["stack", "synth", "--out", str(tmp_path / "x.png")]
    )
    assert list(tmp_path.iterdir()) == []


def test_interrupted_synth_leaves_no_file(tmp_path, monkeypatch, capsys):
    from slidescan.hardware.sim import microscope as sim_module

    calls = {"n": 0}
    real_render = sim_module.SimulatedMicroscope.render

    def render_then_interrupt(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 12:  # in the second stack
            raise KeyboardInterrupt
        return real_render(self, *a, **k)

    monkeypatch.setattr(sim_module.SimulatedMicroscope, "render", render_then_interrupt)
    out = tmp_path / "s.h5"
    assert main(["stack", "synth", "--out", str(out), *SYNTH, "--json"]) == 130
    assert calls["n"] == 12 and list(tmp_path.iterdir()) == []


def test_synth_image_specimen_and_text_output(tmp_path, tissue_dir, capsys):
    out = tmp_path / "img.h5"
    image = tissue_dir / "ki67_olympus-vs_0.346um.png"
    argv = ["stack", "synth", "--out", str(out), "--specimen", str(image), "--positions", "1"]
    assert main([*argv, "--size", "48", "--z-min", "-1", "--z-max", "1", "--z-step", "1"]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "1 stacks x 3 planes" in captured.out
    assert main(["stack", "info", str(out)]) == 0
    assert "specimen=ki67_olympus-vs_0.346um.png" in capsys.readouterr().out
