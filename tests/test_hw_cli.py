"""`slidescan hw list` and `slidescan hw check`, run against the fake controllers."""

from __future__ import annotations

import json

import pytest

from slidescan.app.cli import main
from slidescan.hardware.registry import serial_stage_kinds

SERIAL = {k.name: k.serial for k in serial_stage_kinds()}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_reports_ports_cameras_fakes_and_profiles(capsys):
    code, out, _ = _run(capsys, "hw", "list", "--json", "--cameras", "2")
    assert code == 0
    report = json.loads(out)
    assert {"serial_ports", "cameras", "fake_ports", "profiles"} <= set(report)
    assert report["fake_ports"] == [s.fake_port for s in SERIAL.values() if s]
    assert "fakegrbl://" in report["fake_ports"]
    assert "simulator" in report["profiles"]
    assert report["camera_probe_timed_out"] is False


def test_list_as_text(capsys):
    code, out, _ = _run(capsys, "hw", "list", "--cameras", "0")
    assert code == 0
    assert "serial ports:" in out and "profiles:" in out


@pytest.mark.parametrize("kind", sorted(SERIAL))
def test_check_a_bare_controller_moves_and_returns(capsys, kind):
    port = f"{SERIAL[kind].fake_port}?speedup=20"
    code, out, _ = _run(capsys, "hw", "check", "--stage", kind, "--port", port, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] and report["stage_type"] == kind
    stage = report["stage"]
    assert stage["firmware"]
    assert [m["axis"] for m in stage["moves"]] == ["x", "y", "z"]
    for m in stage["moves"]:
        step = 10.0 if m["axis"] == "z" else 100.0
        assert abs(m["target_um"] - m["start_um"]) == pytest.approx(step)
        assert abs(m["error_at_target_um"]) <= 1.0
    assert stage["max_return_error_um"] <= 1.0
    assert report["camera"] is None


def test_check_as_text(capsys):
    code, out, _ = _run(capsys, "hw", "check", "--stage", "asi", "--port", "fakeasi://")
    assert code == 0
    assert "Version: USB-9.2n" in out and "check passed" in out


def test_check_a_profile_with_a_fake_port(capsys, tmp_path):
    from slidescan.hardware.profile import load_profile, save_profile

    prof = load_profile("asi-ms2000")
    stage = prof.stage.model_copy(update={"port": "fakeasi://?speedup=20"})
    save_profile(prof.model_copy(update={"stage": stage, "name": "bench"}), "bench")
    code, out, _ = _run(capsys, "hw", "check", "--profile", "bench", "--no-camera", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["profile"] == "bench" and report["objective"] == "20x/0.75"


def test_check_the_simulator_snaps_a_frame(capsys):
    from slidescan.hardware.profile import load_profile, save_profile

    prof = load_profile("simulator")
    small = {**(prof.simulator or {}), "camera": {"width": 64, "height": 48}}
    save_profile(prof.model_copy(update={"simulator": small}), "small-sim")
    code, out, _ = _run(capsys, "hw", "check", "--profile", "small-sim", "--json")
    assert code == 0
    cam = json.loads(out)["camera"]
    assert cam["shape"] == [48, 64, 3] and cam["dtype"] == "uint8"
    assert 0 < cam["mean"] < 255


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("fakegrbl://?fault=alarm&fault_after=0.001", "alarm 1 (hard limit triggered)"),
        ("fakegrbl://?fault=reset&fault_after=0.001", "reset itself"),
        ("fakeasi://?fault=error", "parameter out of range"),
        ("fakeprior://?fault=vanish&fault_after=0.001", "serial port failed"),
    ],
)
def test_check_failures_are_one_line_and_non_zero(capsys, url, words):
    kind = url.split("://")[0].removeprefix("fake")
    code, out, err = _run(capsys, "hw", "check", "--stage", kind, "--port", url)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("slidescan: error: hw check:") and words in line
    assert "Traceback" not in err and "check passed" not in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["hw"], "choose a subcommand"),
        (["hw", "check"], "give --profile NAME"),
        (["hw", "check", "--stage", "grbl"], "needs --port"),
        (["hw", "check", "--profile", "simulator", "--stage", "sim"], "not both"),
        (["hw", "check", "--profile", "no-such-profile"], "unknown profile"),
        (["hw", "check", "--stage", "asi", "--port", "fakeasi://", "--step-um", "-5"], "positive"),
        (["hw", "check", "--stage", "asi", "--port", "fakeasi://?nonsense=1"], "unknown option"),
        (["hw", "check", "--stage", "tiger"], "invalid choice"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, words):
    code, _, err = _run(capsys, *argv)
    assert code != 0
    assert err.count("\n") == 1 and words in err


@pytest.mark.parametrize("sub", ["list", "check"])
def test_subcommands_have_help(capsys, sub):
    with pytest.raises(SystemExit) as exc:
        main(["hw", sub, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out
