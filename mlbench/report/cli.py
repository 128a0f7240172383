"""`mlbench report PATH...` / `python -m mlbench.report`: the click layer over `api.build_report`.

Light at import time (click only): pandas and matplotlib are imported when the command runs.
Exit codes: 0 every verdict PASS or WARN (INCOMPLETE listed, not fatal unless --strict); 1 a FAIL
(or INCOMPLETE with --strict); 2 bad usage (no such path, bad --specs or acceptance file, no
records), one line on stderr and nothing written.
"""

from __future__ import annotations

import json

import click

from ..cli import Command
from ..exitcodes import UsageError


def parse_pairs(values, option: str) -> dict:
    """`NAME=NUMBER` pairs (repeatable option) -> {name: float}."""
    out = {}
    for text in values:
        name, sep, number = text.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(number)
        except ValueError:
            raise UsageError(f"{option} {text!r}: expected NAME=NUMBER, e.g. {option} mamf=0.75") from None
    return out


def read_acceptance(path: str | None) -> dict:
    """The acceptance file: a JSON object of Thresholds fields (warn_below, expect, minimum, require...)."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"--acceptance {path}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--acceptance {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--acceptance {path}: expected a JSON object of thresholds")
    return data


def make_thresholds(acceptance, strict, expect, minimum, require, warn_below, fail_below, fleet_margin, node_spread):
    from .verdicts import Thresholds

    data = read_acceptance(acceptance)
    data.setdefault("expect", {})
    data.setdefault("minimum", {})
    if not isinstance(data["expect"], dict) or not isinstance(data["minimum"], dict):
        raise UsageError(f"--acceptance {acceptance}: 'expect' and 'minimum' must be objects of NAME: NUMBER")
    data["expect"] = {**data["expect"], **parse_pairs(expect, "--expect")}
    data["minimum"] = {**data["minimum"], **parse_pairs(minimum, "--min")}
    for name, value in (
        ("warn_below", warn_below),
        ("fail_below", fail_below),
        ("fleet_margin", fleet_margin),
        ("node_spread", node_spread),
    ):
        if value is not None:
            data[name] = value
    if require:
        data["require"] = [p.strip() for p in require.split(",") if p.strip()]
    if strict:
        data["strict"] = True
    return Thresholds.from_mapping(data, f"--acceptance {acceptance}" if acceptance else "thresholds")


@click.command(cls=Command, name="report", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--out",
    "out_dir",
    default=None,
    metavar="DIR",
    help="Where report files go (default: the run directory when one is given, else ./report).",
)
@click.option(
    "--specs", "specs_files", multiple=True, metavar="FILE", help="CSV of extra or overriding spec rows (by key)."
)
@click.option(
    "--acceptance",
    default=None,
    metavar="FILE",
    help="JSON thresholds: warn_below, fail_below, expect, minimum, require, strict...",
)
@click.option(
    "--expect",
    multiple=True,
    metavar="FAMILY=EFF",
    help="Expected efficiency override (mamf, hbm, h2d, p2p, busbw), e.g. --expect mamf=0.75.",
)
@click.option(
    "--min",
    "minimum",
    multiple=True,
    metavar="CHECK=VALUE",
    help="Absolute floor in the check's unit, e.g. --min busbw.all_reduce=460 --min storage.seqread=1.5.",
)
@click.option(
    "--require", default=None, metavar="PROBES", help="Comma list of probes that must have run (else INCOMPLETE)."
)
@click.option(
    "--warn-below", type=float, default=None, help="WARN under this fraction of the normal efficiency [0.90]."
)
@click.option(
    "--fail-below", type=float, default=None, help="FAIL under this fraction of the normal efficiency [0.75]."
)
@click.option(
    "--fleet-margin",
    type=float,
    default=None,
    help="Suspect node: ceiling this fraction below the fleet median [0.10].",
)
@click.option("--node-spread", type=float, default=None, help="WARN a GPU this fraction below its node's best [0.10].")
@click.option("--strict", is_flag=True, help="INCOMPLETE verdicts (a probe that did not run or errored) exit 1 too.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (the HTML page then has none).")
@click.option(
    "--baseline",
    default=None,
    metavar="PATH",
    help="A baseline run (directory or .jsonl): each check's change; a regression FAILs.",
)
@click.option(
    "--max-regression",
    "max_regression",
    multiple=True,
    metavar="FRACTION",
    help="With --baseline: largest regression accepted [0.05]; per family too: 0.05,mamf=0.03.",
)
@click.option("--junit", default=None, metavar="FILE", help="Also write the checks as JUnit XML (one testcase each).")
@click.option(
    "--prometheus",
    default=None,
    metavar="FILE",
    help="Also write the figures and verdicts for node_exporter's textfile collector (.prom).",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not print the Markdown report (files are still written).")
def command(
    paths,
    out_dir,
    specs_files,
    acceptance,
    expect,
    minimum,
    require,
    warn_below,
    fail_below,
    fleet_margin,
    node_spread,
    strict,
    no_plots,
    baseline,
    max_regression,
    junit,
    prometheus,
    quiet,
):
    """Compare results with advertised specs: verdicts, tables, plots, fleet view.

    PATH... are run directories (searched for .jsonl files) or .jsonl files, from one node or many.
    Writes report.md, summary.csv, fleet.csv, report.html and plots/ into --out; prints the
    Markdown. Exit 1 when a verdict fails (see --strict for INCOMPLETE).
    """
    thresholds = make_thresholds(
        acceptance, strict, expect, minimum, require, warn_below, fail_below, fleet_margin, node_spread
    )
    from .api import build_report

    result = build_report(
        paths,
        out_dir=out_dir,
        specs_files=specs_files,
        thresholds=thresholds,
        plots=not no_plots,
        on_warning=lambda message: click.echo(f"mlbench report: warning: {message}", err=True),
        baseline=baseline,
        max_regression=max_regression,
        junit=junit,
        prometheus=prometheus,
    )
    if not quiet:
        click.echo(result.markdown, nl=False)
    written = [str(p) for p in result.files if p.suffix in (".md", ".html")]
    more = len(result.files) - len(written)
    click.echo(f"mlbench report: exit {result.exit_code}; wrote {', '.join(written)} (+ {more} more)", err=True)
    return result.exit_code
