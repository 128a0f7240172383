"""The thin click layer: the `mlbench` group, shared option bundles, one-line errors.

Start-up stays fast: this module imports only click and mlbench's light modules; each command's
module is imported when that command is asked for, and imports torch only inside its function.
Errors follow docs/reference.md: bad usage is one line on stderr and exit 2; an interruption exits 3;
a failed measurement or verdict exits 1.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from . import __version__
from .exitcodes import FAILED, INCOMPLETE, USAGE, MlbenchError
from .sizes import SizeError, parse_sizes

# command name -> "module:attribute"; every one must import (a missing module is an error, never a shorter --help).
COMMANDS = {
    "mamf": "mlbench.mamf.cli:command",
    "membw": "mlbench.membw.cli:command",
    "collectives": "mlbench.collectives.cli:command",
    "diskio": "mlbench.diskio.cli:command",
    "report": "mlbench.report.cli:command",
    "specs": "mlbench.specs_cli:command",
    "run": "mlbench.acceptance.cli:command",
    "fabric": "mlbench.fabric.cli:command",
    "burn": "mlbench.burn.cli:command",
    "train": "mlbench.train.cli:command",
    "compare": "mlbench.compare_cli:command",
    "estimate": "mlbench.estimate_cli:command",
}


def _say(prog: str, message: str) -> None:
    first = str(message).strip().splitlines()[0] if str(message).strip() else "error"
    click.echo(f"{prog}: error: {first}", err=True)


class OneLineErrors:
    """Mixin for click commands: every failure becomes one line on stderr and its exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        prog = prog_name or self.name or "mlbench"
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            _say(prog, exc.format_message())
            code = USAGE
        except click.ClickException as exc:
            _say(prog, exc.format_message())
            code = exc.exit_code or USAGE
        except MlbenchError as exc:
            _say(prog, str(exc))
            code = exc.exit_code
        except (click.Abort, KeyboardInterrupt):
            click.echo(f"{prog}: interrupted", err=True)
            code = INCOMPLETE
        except BrokenPipeError:
            code = FAILED
        except Exception as exc:  # a bug or an unexpected failure: still one line unless asked
            if os.environ.get("MLBENCH_DEBUG"):
                raise
            _say(prog, f"{type(exc).__name__}: {exc} (set MLBENCH_DEBUG=1 for the traceback)")
            code = FAILED
        else:
            code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


class Command(OneLineErrors, click.Command):
    pass


class LazyGroup(OneLineErrors, click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self.get_command(ctx, name) is not None]

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


class SizeList(click.ParamType):
    """A click type for mlbench's size grammar (lists and ranges; docs/reference.md)."""

    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_sizes(value)
        except SizeError as exc:
            self.fail(str(exc), param, ctx)


SIZES = SizeList()


def probe_options(function):
    """Options every probe takes (docs/reference.md): --device, --out, --quick, --run-id."""
    function = click.option(
        "--run-id",
        default=None,
        envvar="MLBENCH_RUN_ID",
        help="Run id (default: time-host-random); names the results/<run-id>/ directory.",
    )(function)
    function = click.option("--quick", is_flag=True, help="A small plan that finishes in seconds on a 2-core CPU.")(
        function
    )
    function = click.option(
        "--out",
        default=None,
        metavar="PATH",
        help="JSON Lines file records are appended to (default results/<run-id>/<probe>.jsonl).",
    )(function)
    function = click.option(
        "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (ROCm too), xpu, xpu:N or mps."
    )(function)
    return function


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlbench")
def group():
    """mlbench: what does this hardware really deliver?

    Measures matmul FLOPS, memory bandwidth, collectives, storage, the fabric between nodes and a
    reference training step, with telemetry on every figure and a bitwise burn-in; then compares every
    figure with the advertised specs (or a baseline run) and gives verdicts (exit 1 when one fails).
    """


def main(argv=None):
    group.main(args=argv, prog_name="mlbench")


if __name__ == "__main__":
    main()
