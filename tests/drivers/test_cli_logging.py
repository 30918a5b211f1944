"""What a command logs off a terminal (a cron job's log, a pipe): plain ``LEVEL message`` lines,
not rich's panels padded to the width tables get there."""

from __future__ import annotations

from tests.conftest import URUMQI_EPW, greensched, needs_real_weather


@needs_real_weather
def test_warnings_off_a_terminal_are_plain_unpadded_lines(tmp_path):
    result = greensched("plan", "--verbose", "--weather", f"qingyang={URUMQI_EPW}",
                        "--out", str(tmp_path / "plan"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    warnings = [line for line in lines if line.startswith("WARNING ")]
    assert any("is 1921 km from site 'qingyang'" in line for line in warnings)
    assert any(line.startswith("INFO generated ") for line in lines)
    assert not [line for line in lines if line != line.rstrip()]  # rich padded every line
