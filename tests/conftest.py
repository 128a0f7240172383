"""Shared test helpers: run the real entry points (in-process CliRunner and subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_module(*args, cwd=None, env=None, timeout=300, input=None) -> subprocess.CompletedProcess:
    """`python -m <args>` in a subprocess, the way a user runs it."""
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONPATH", str(REPO))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def read_jsonl(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture
def cli():
    """Invoke the real `mlbench` click group in-process: cli("mamf", "--quick", ...) -> click Result."""
    from click.testing import CliRunner

    from mlbench.cli import group

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(group, list(args), prog_name="mlbench", catch_exceptions=False)

    return invoke


def parse_options(command, options_class, argv):
    """The options object a probe's own click command builds from `argv` (parsed, not run)."""
    return options_class(**command.make_context(command.name, list(argv)).params)


def direct_io_works(directory: Path) -> bool:
    """Whether the file system under `directory` accepts O_DIRECT (tmpfs and some overlays refuse it)."""
    path = directory / "dio-check"
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR))
    try:
        os.close(os.open(path, os.O_RDWR | os.O_DIRECT))
        return True
    except OSError:
        return False
    finally:
        os.unlink(path)


@pytest.fixture
def iodir(tmp_path):
    """A fresh directory on a file system with O_DIRECT (the test is skipped where there is none)."""
    if not direct_io_works(tmp_path):
        pytest.skip(f"O_DIRECT not supported on {tmp_path}")
    d = tmp_path / "io"
    d.mkdir()
    return d
