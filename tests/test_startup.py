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


@pytest.mark.parametrize("args", [["--help"], ["mamf", "--help"], ["membw", "--help"], ["collectives", "--help"],
                                  ["diskio", "--help"], ["report", "--help"], ["specs", "--help"], ["run", "--help"]])
def test_help_imports_nothing_heavy(args):
    from mlbench.cli import COMMANDS, group
    from click.testing import CliRunner

    if len(args) > 1 and group.get_command(None, args[0]) is None:
        pytest.skip(f"{args[0]} not built yet")
    out = subprocess.run([sys.executable, "-c", CHECK, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"`mlbench {' '.join(args)}` imported {out.stdout.strip()}"


def test_console_script_help_lists_mamf():
    out = subprocess.run([sys.executable, "-m", "mlbench", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "mamf" in out.stdout
