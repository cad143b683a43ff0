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
