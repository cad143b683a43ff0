"""CLI contract (DESIGN.md): every subcommand has --help; bad input is one line and non-zero."""

from __future__ import annotations

import pytest

from slidescan.app.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return sorted(action.choices)
    return []


def test_unknown_subcommand_is_one_line_error(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slidescan: error:") and err.count("\n") == 1


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_json_output_is_strict_json_with_null_for_figures_that_are_not_finite(capsys):
    import json as _json

    import numpy as np

    from slidescan.app.cli import print_json

    print_json({"psnr_db": float("inf"), "mean": np.float64("nan"), "rows": [1.5, -np.inf]})
    out = capsys.readouterr().out

    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    assert _json.loads(out, parse_constant=refuse) == {
        "psnr_db": None,
        "mean": None,
        "rows": [1.5, None],
    }
