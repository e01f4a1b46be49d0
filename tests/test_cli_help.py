"""``--help`` works for the program and every subcommand (argument definitions stay importable and valid)."""
from __future__ import annotations

import pytest

from opensim_biopose.cli.main import SUBCOMMANDS, _available_modules, main


def _names() -> list[str]:
    return [mod.NAME for mod in _available_modules()]


def test_every_listed_subcommand_is_importable():
    assert len(_names()) == len(SUBCOMMANDS)


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in _names()]],
                         ids=lambda a: " ".join(a))
def test_help_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: opensim-biopose" in out
    if len(argv) == 2:
        assert argv[0] in out
