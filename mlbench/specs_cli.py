"""`mlbench specs`: list the advertised-spec registry, filtered, or show which row a device name matches.

Pure Python (no pandas, no torch): the registry is `mlbench.specs`, this is only its window.
"""

from __future__ import annotations

import csv
import json
import re
import sys

import click

from .cli import Command
from .exitcodes import UsageError

# The columns shown by default: the figures the report compares with.
DEFAULT_COLUMNS = (
    "key",
    "name",
    "tflops_bf16",
    "tflops_fp8",
    "mamf_bf16_tflops",
    "mem_gib",
    "hbm_tbps",
    "link_gbps",
    "tdp_w",
)


def select(registry, pattern: str | None):
    """Rows whose key, name, vendor or match pattern contain `pattern` (a case-insensitive regex)."""
    if not pattern:
        return list(registry)
    try:
        wanted = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise UsageError(f"bad filter {pattern!r}: {exc}") from None
    fields = ("key", "name", "vendor", "match")
    return [s for s in registry if any(wanted.search(s.row.get(f) or "") for f in fields)]


def text_table(rows: list[dict], columns: list[str]) -> str:
    """A plain aligned table (numbers right-aligned); blank cells for figures the registry lacks."""
    cells = [[str(row.get(c) or "") for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r[i]) or not r[i] for r in cells) for i in range(len(columns))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@click.command(cls=Command, name="specs", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pattern", required=False)
@click.option(
    "--specs",
    "specs_files",
    multiple=True,
    metavar="FILE",
    help="A CSV of extra or overriding rows (by key), e.g. the figures a provider agreed to.",
)
@click.option(
    "--match",
    "device_name",
    default=None,
    metavar="DEVICE_NAME",
    help="Show the row that a device name (as torch reports it) matches, e.g. 'NVIDIA H100 80GB HBM3'.",
)
@click.option("--columns", default=None, metavar="COL[,COL...]", help="Columns to show; 'all' for every one.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def command(pattern, specs_files, device_name, columns, fmt):
    """The advertised-spec registry: dense peaks, HBM, links, TDP, published MAMF, sources.

    PATTERN filters rows by key, name or vendor (a case-insensitive regular expression). Decimal
    units: TFLOPS, TB/s, GB/s per direction; memory in GiB, last-level cache in MiB.
    """
    from . import specs

    try:
        registry = specs.load(specs_files)
    except specs.SpecsError as exc:
        raise UsageError(str(exc)) from None
    if device_name is not None:
        found = specs.lookup(device_name, registry)
        if found is None:
            click.echo(
                f"no spec matches {device_name!r}: its figures are reported without efficiency "
                "(add a row with --specs)",
                err=True,
            )
            return 1
        chosen = [found]
    else:
        chosen = select(registry, pattern)
    all_columns = list(dict.fromkeys(c for s in registry for c in s.row))
    if columns is None:
        wanted = list(DEFAULT_COLUMNS) if device_name is None else all_columns
    elif columns.strip() == "all":
        wanted = all_columns
    else:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in all_columns]
        if unknown:
            raise UsageError(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(all_columns)}")
    rows = [{c: s.row.get(c, "") for c in wanted} for s in chosen]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=wanted, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    elif device_name is not None:
        width = max(len(c) for c in wanted)
        click.echo("\n".join(f"{c.ljust(width)}  {rows[0][c]}" for c in wanted))
    else:
        click.echo(text_table(rows, wanted))
        if not rows:
            click.echo(f"(no row matches {pattern!r})", err=True)
    return 0
