"""Every command's ``--help`` shows what its source says: units in brackets (``[s]``, ``[min]``;
rich markup would read a lower-case bracket as a style and drop it) and no raw backticks."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from scheduler.drivers.cli import app

UNIT = re.compile(r"\\?\[([^\]]+)\]")


def _commands(group, path: tuple[str, ...] = ()):
    if hasattr(group, "commands"):  # a group (typer ships its own click)
        for name, command in group.commands.items():
            yield from _commands(command, (*path, name))
    else:
        yield path, group


COMMANDS = dict(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_keeps_every_unit_and_shows_no_backticks(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "`" not in shown, f"raw backticks in greensched {' '.join(path)} --help"
    for param in COMMANDS[path].params:
        for unit in UNIT.findall(getattr(param, "help", None) or ""):
            assert f"[{unit}]" in shown, f"{param.name}: [{unit}] missing from --help"
