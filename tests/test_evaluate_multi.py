"""`slidescan focus eval` over several stack files: per-file rows identical to one-file runs,
pooled numbers that are the numbers of all the trials, fallbacks counted and pooled apart,
folders expanded, files with other optics refused, and the markdown table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from slidescan.app.cli import main
from slidescan.app.commands import focus as focus_cmd
from slidescan.app.tools.eval_report import (
    EvalSummary,
    PooledReport,
    TrialRecord,
    check_poolable,
)
from slidescan.app.tools.evaluate import evaluate_method
from slidescan.focus import registry
from slidescan.focus.protocol import (
    Fallback,
    FocusMethod,
    FocusParams,
    FocusResult,
    depth_of_field_um,
)
from slidescan.hardware.optics import OpticalPath, get_objective
from slidescan.hardware.stackfile import FocusStack, write_stacks

OPTICS = OpticalPath(get_objective("20x/0.75"))
DOF = depth_of_field_um(0.75, 1.0)
FAR = 2.5  # the fake method falls back when its hint is further than this from focus


def _stacks(truths: tuple[float, ...], seed: int) -> list[FocusStack]:
    """Tiny noise stacks (the fake methods read the truth from the frame metadata); ids repeat
    from file to file, as they do in real held-out sets."""
    rng = np.random.default_rng(seed)
    out = []
    for k, truth in enumerate(truths):
        z = truth + np.arange(-6.0, 6.01, 0.5)
        images = rng.integers(0, 256, size=(len(z), 8, 8), dtype=np.uint8)
        out.append(FocusStack(f"{k:04d}", images, z, true_focus_um=truth))
    return out


class HalfWayParams(FocusParams):
    far: float = FAR


class HalfWay(FocusMethod):
    """Goes half the way from the hint to the true focus, so every error depends on the hint
    draw; hands far hints to a 'zsweep' (a `Fallback`, as diffcnn does) and lands 0.05 um from
    focus then. Every instance made is kept in `made`."""

    name = "halfway"
    Params = HalfWayParams
    made: list[HalfWay] = []

    def __init__(self, params: HalfWayParams | None = None, /, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.far = self.params.far
        HalfWay.made.append(self)

    def focus(self, drive, hint):
        truth = drive.device.snap().meta["true_focus_um"]
        if abs(hint.z_um - truth) > self.far:
            return FocusResult(
                truth + 0.05, 1, 0.0, 0.0, 0.5, message="far", fallback=Fallback("zsweep", "far")
            )
        return FocusResult(truth + (hint.z_um - truth) / 2, 1, 0.0, 0.0, 1.0)


@pytest.fixture
def fake_registry():
    """ "halfway" in the focus registry for the CLI to find; yields the instances it makes."""
    HalfWay.made.clear()
    registry.register("halfway", HalfWay)
    yield HalfWay.made
    registry._REGISTRY.pop("halfway", None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three specimen files with different stack counts, plus a file that is not a stack file."""
    d = tmp_path_factory.mktemp("holdout")
    for name, truths, seed in (
        ("c_ihc.h5", (0.5, -1.0), 3),
        ("a_he.h5", (1.0, -2.0, 3.0), 1),
        ("b_he_real.h5", (-0.25,), 2),
    ):
        write_stacks(d / name, _stacks(truths, seed), OPTICS, source="test")
    (d / "notes.txt").write_text("not a stack file")
    return d


def _run(capsys, argv: list[str]) -> str:
    assert main(["focus", "eval", "--mode", "halfway", *argv]) == 0
    return capsys.readouterr().out


def _without_wall_time(trials: list[dict]) -> list[dict]:
    return [{k: v for k, v in t.items() if k != "compute_s"} for t in trials]


def _records(trials: list[dict]) -> list[TrialRecord]:
    return [TrialRecord(**t) for t in trials]


# -- the CLI -----------------------------------------------------------------------------------
def test_each_file_row_is_the_one_file_run_and_pooled_is_all_trials(folder, capsys, fake_registry):
    files = [folder / n for n in ("a_he.h5", "b_he_real.h5", "c_ihc.h5")]
    common = ["--trials", "4", "--seed", "5", "--json"]
    alone = [json.loads(_run(capsys, ["--stacks", str(f), *common])) for f in files]
    together = json.loads(_run(capsys, ["--stacks", *map(str, files), *common]))
    assert set(together) == {"files", "pooled", "pooled_no_fallback"}
    assert len(together["files"]) == 3
    for one, part in zip(alone, together["files"], strict=True):
        assert _without_wall_time(part["trials"]) == _without_wall_time(one["trials"])
        same = {k: v for k, v in part["summary"].items() if not k.startswith("compute")}
        assert same == {k: v for k, v in one["summary"].items() if not k.startswith("compute")}
        assert part["stacks_source"] == one["stacks_source"]
    # a fresh method per file: nothing a method remembers can leak between files
    assert len(fake_registry) == 3 + 1 + 2  # 3 alone, then the validated one + 2 fresh

    all_trials = [t for part in together["files"] for t in part["trials"]]
    expected = EvalSummary.of(_records(all_trials), DOF)
    pooled = together["pooled"]
    for key, value in dataclasses.asdict(expected).items():
        if key != "stacks":
            assert pooled[key] == pytest.approx(value), key
    assert pooled["stacks"] == 6  # ids repeat across files: (file, id) pairs are counted
    err = np.array([t["error_um"] for t in all_trials])
    assert pooled["trials"] == 24 and pooled["mae_um"] == pytest.approx(np.abs(err).mean())
    assert pooled["bias_um"] == pytest.approx(err.mean())


def test_repeating_the_flag_is_the_same_as_listing_the_files(folder, capsys, fake_registry):
    a, b = str(folder / "a_he.h5"), str(folder / "c_ihc.h5")
    listed = json.loads(_run(capsys, ["--stacks", a, b, "--json"]))
    repeated = json.loads(_run(capsys, ["--stacks", a, "--stacks", b, "--json"]))
    assert [f["stacks_source"] for f in listed["files"]] == [a, b]
    assert _without_wall_time(listed["files"][1]["trials"]) == _without_wall_time(
        repeated["files"][1]["trials"]
    )


def test_a_folder_is_every_h5_in_it_sorted(folder, capsys, fake_registry):
    paths, pooled = focus_cmd.stack_paths([str(folder)])
    assert [p.name for p in paths] == ["a_he.h5", "b_he_real.h5", "c_ihc.h5"] and pooled
    by_folder = json.loads(_run(capsys, ["--stacks", str(folder), "--trials", "2", "--json"]))
    by_name = json.loads(_run(capsys, ["--stacks", *map(str, paths), "--trials", "2", "--json"]))
    assert [Path(f["stacks_source"]).name for f in by_folder["files"]] == [p.name for p in paths]
    for x, y in zip(by_folder["files"], by_name["files"], strict=True):
        assert _without_wall_time(x["trials"]) == _without_wall_time(y["trials"])
    # a folder is pooled output even when it holds one file; one plain file is not
    solo = folder.parent / "solo"
    solo.mkdir()
    write_stacks(solo / "only.h5", _stacks((0.0,), 9), OPTICS, source="test")
    assert focus_cmd.stack_paths([str(solo)])[1] is True
    assert focus_cmd.stack_paths([str(solo / "only.h5")])[1] is False


def test_fallbacks_are_counted_and_pooled_apart(folder, capsys, fake_registry):
    argv = ["--stacks", str(folder), "--trials", "6", "--seed", "1"]
    report = json.loads(_run(capsys, [*argv, "--json"]))
    trials = [t for f in report["files"] for t in f["trials"]]
    far = [abs(t["hint_z_um"] - t["true_focus_um"]) > FAR for t in trials]
    assert 0 < sum(far) < len(trials)  # the seed gives both kinds
    assert [t["fallback"] for t in trials] == ["zsweep" if f else "" for f in far]
    for f in report["files"]:
        assert f["summary"]["fallbacks"] == sum(bool(t["fallback"]) for t in f["trials"])
    assert report["pooled"]["fallbacks"] == sum(far)
    settled = [t for t, f in zip(trials, far, strict=True) if not f]
    expected = EvalSummary.of(_records(settled), DOF)
    alone = report["pooled_no_fallback"]
    assert alone["trials"] == len(settled) and alone["fallbacks"] == 0
    assert alone["mae_um"] == pytest.approx(expected.mae_um)
    assert alone["p95_abs_um"] == pytest.approx(expected.p95_abs_um)
    # halfway errors are up to 1.25 um, the fallback's 0.05: the pooled MAE mixes both
    assert alone["mae_um"] > report["pooled"]["mae_um"]

    table = _run(capsys, argv).splitlines()
    rows = {line.split()[0]: line.split() for line in table if line[:1].isalnum()}
    assert rows["ALL"][1] == str(len(trials)) and rows["ALL"][-1] == str(sum(far))
    assert rows["a_he.h5"][-1] == str(report["files"][0]["summary"]["fallbacks"])
    no_fallback = [line for line in table if line.startswith("no fallback")]
    assert len(no_fallback) == 1 and no_fallback[0].split()[2] == str(len(settled))
    assert "within DOF/2" in table[5] and " ".join(rows["ALL"][9:11]) == "(<= 0.406)"


def test_no_fallback_row_only_when_some_trials_fell_back(folder, capsys, fake_registry):
    argv = ["--stacks", str(folder), "--trials", "2", "--param", "far=100"]
    report = json.loads(_run(capsys, [*argv, "--json"]))
    assert report["pooled"]["fallbacks"] == 0 and report["pooled_no_fallback"] is None
    assert "no fallback" not in _run(capsys, argv)
    assert "no fallback" not in _run(capsys, [*argv, "--markdown"])
    everything = json.loads(_run(capsys, [*argv[:-1], "far=-1", "--json"]))  # all fall back
    assert everything["pooled"]["fallbacks"] == everything["pooled"]["trials"]
    assert everything["pooled_no_fallback"] is None


def test_markdown_has_the_header_a_row_per_file_and_all(folder, capsys, fake_registry):
    lines = _run(capsys, ["--stacks", str(folder), "--trials", "6", "--markdown"]).splitlines()
    assert lines[0].startswith("| file | trials | MAE um | median | p95 | max | bias |")
    assert lines[0].endswith("| hardware s | compute ms (median) | fallbacks |")
    assert set(lines[1]) == {"|", "-"} and lines[1].count("|") == lines[0].count("|")
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names == ["a_he.h5", "b_he_real.h5", "c_ihc.h5", "**ALL**", "no fallback"]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    all_row = [c.strip() for c in lines[5].split("|")]
    assert all_row[2] == str(6 * 6) and all_row[8].endswith("% (<= 0.41)")
    # one file with --markdown: its row and ALL
    one = _run(
        capsys, ["--stacks", str(folder / "b_he_real.h5"), "--markdown", "--param", "far=100"]
    ).splitlines()
    assert [line.split("|")[1].strip() for line in one[2:]] == ["b_he_real.h5", "**ALL**"]


def test_one_file_keeps_the_one_file_report(folder, capsys, fake_registry):
    out = _run(capsys, ["--stacks", str(folder / "a_he.h5"), "--trials", "2"])
    assert out.startswith("method halfway on 3 stacks x 2 trials") and "ALL" not in out
    report = json.loads(_run(capsys, ["--stacks", str(folder / "a_he.h5"), "--json"]))
    assert "summary" in report and "files" not in report


def _one_line_error(capsys, code: int, argv: list[str]) -> str:
    assert main(["focus", "eval", "--mode", "halfway", *argv]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("slidescan: error:") and captured.err.count("\n") == 1
    return captured.err


def test_files_with_other_optics_are_refused_before_any_trial(
    folder, tmp_path, capsys, fake_registry
):
    other = write_stacks(
        tmp_path / "x_20x050.h5",
        _stacks((0.0,), 4),
        OpticalPath(get_objective("20x/0.50")),
        source="test",
    )
    err = _one_line_error(capsys, 1, ["--stacks", str(folder / "a_he.h5"), str(other)])
    assert "different optics" in err and "a_he.h5" in err and "x_20x050.h5" in err
    assert "NA 0.5" in err and "DOF/2 0.406" in err
    assert len(fake_registry) == 1  # the validation's method only: no file was evaluated
    with pytest.raises(ValueError, match="different optics"):
        check_poolable([("a", 0.75, 1.0), ("b", 0.75, 1.0), ("c", 0.75, 1.52)])
    check_poolable([("a", 0.75, 1.0), ("b", 0.75, 1.0)])


def test_bad_file_lists_are_one_line_errors(folder, tmp_path, capsys, fake_registry):
    good = str(folder / "a_he.h5")
    assert "/no/file.h5" in _one_line_error(capsys, 1, ["--stacks", good, "/no/file.h5"])
    (tmp_path / "empty").mkdir()
    assert "holds no .h5" in _one_line_error(capsys, 1, ["--stacks", str(tmp_path / "empty")])
    assert "named twice" in _one_line_error(capsys, 2, ["--stacks", str(folder), good])
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    assert "bad.h5" in _one_line_error(capsys, 1, ["--stacks", good, str(bad)])
    err = _one_line_error(
        capsys, 1, ["--stacks", good, str(folder / "c_ihc.h5"), "--hint-range", "7"]
    )
    assert "a_he.h5: stack" in err and "reaches outside" in err
    assert "not allowed" in _one_line_error(capsys, 2, ["--stacks", good, "--json", "--markdown"])


# -- the library -------------------------------------------------------------------------------
def test_pooled_report_of_in_memory_reports():
    reports = [
        evaluate_method(HalfWay(), _stacks(t, s), 5.0, 5, seed=2, optics=OPTICS)
        for t, s in (((0.0, 1.0), 0), ((2.0,), 1))
    ]
    pooled = PooledReport.of(reports, ["one", "two"])
    records = [r for rep in reports for r in rep.records]
    assert pooled.pooled == dataclasses.replace(EvalSummary.of(records, DOF), stacks=3)
    assert [name for name, _ in pooled.rows()][:3] == ["one", "two", "ALL"]
    assert pooled.to_dict(include_trials=False)["files"][0].get("trials") is None
    with pytest.raises(ValueError, match="labels"):
        PooledReport.of(reports, ["one"])


def test_the_fallback_is_read_from_the_result_never_its_message():
    class SaysSo(FocusMethod):
        name = "says"

        def focus(self, drive, hint):
            truth = drive.device.snap().meta["true_focus_um"]
            return FocusResult(truth, 1, 0.0, 0.0, 1.0, message="it fell back to brent")

    report = evaluate_method(SaysSo(), _stacks((0.0,), 0), 1.0, 2, seed=0, optics=OPTICS)
    assert all(r.fallback == "" for r in report.records)  # the words are not the field
    near = HalfWay(far=0.0)
    report = evaluate_method(near, _stacks((0.0,), 0), 1.0, 2, seed=0, optics=OPTICS)
    assert all(r.fallback == "zsweep" for r in report.records)
