"""`mlbench --help` must not import torch, pandas or matplotlib (fast start)."""

import subprocess
import sys

import pytest

CHECK = """
import sys
from click.testing import CliRunner
from mlbench.cli import group
args = sys.argv[1:]
result = CliRunner().invoke(group, args)
assert result.exit_code == 0, result.output
heavy = sorted(m for m in ("torch", "pandas", "matplotlib", "numpy") if m in sys.modules)
print(",".join(heavy))
"""


from mlbench.cli import COMMANDS  # noqa: E402  (light: click only)


@pytest.mark.parametrize("args", [["--help"]] + [[name, "--help"] for name in COMMANDS])
def test_help_imports_nothing_heavy(args):
    out = subprocess.run([sys.executable, "-c", CHECK, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"`mlbench {' '.join(args)}` imported {out.stdout.strip()}"


def test_help_lists_every_command():
    from mlbench.cli import COMMANDS

    out = subprocess.run([sys.executable, "-m", "mlbench", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    listed = {line.split()[0] for line in out.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)


def test_a_missing_command_module_is_an_error_not_a_shorter_help(monkeypatch):
    from click.testing import CliRunner

    from mlbench import cli

    monkeypatch.setitem(cli.COMMANDS, "ghost", "mlbench.ghost.cli:command")
    result = CliRunner().invoke(cli.group, ["--help"])
    assert result.exit_code != 0
    assert "No module named 'mlbench.ghost'" in result.output
