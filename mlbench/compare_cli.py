"""`mlbench compare BASE NEW`: a run against a baseline run; each check's change, regressions fail (exit 1).

The matching and the rules are `mlbench.report.compare`; the tables, plots and files
`mlbench.report.compare_render`. Light at import time (click only): pandas and matplotlib are imported
when the command runs. Exit codes: 0 no check regressed; 1 one did (or, with --strict, one is missing);
2 bad usage (no such path, no records, a bad --max-regression), one line on stderr and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli import Command

TITLE = "mlbench compare"


def default_out_dir(new: str) -> Path:
    """The new run's directory when NEW is one, else ./compare."""
    return Path(new) if Path(new).is_dir() else Path("compare")


@click.command(cls=Command, name="compare", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("base", metavar="BASE")
@click.argument("new", metavar="NEW")
@click.option(
    "--max-regression",
    "max_regression",
    multiple=True,
    metavar="FRACTION",
    help="Largest regression accepted [0.05]; per family too: 0.05,mamf=0.03,storage=0.15.",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    metavar="DIR",
    help="Where compare.md, compare.csv, compare.html and plots go (default: NEW when a directory).",
)
@click.option(
    "--specs",
    "specs_files",
    multiple=True,
    metavar="FILE",
    help="CSV of extra or overriding spec rows (the spec verdicts shown next to each change).",
)
@click.option("--strict", is_flag=True, help="A check measured in BASE and not in NEW fails too (exit 1).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the Markdown (files are still written).")
def command(base, new, max_regression, out_dir, specs_files, strict, no_plots, quiet):
    """Compare a run (NEW) with a baseline run (BASE): each check's change in %.

    BASE and NEW are run directories or .jsonl files. Checks are matched by node name, or by the
    fleet's distribution when the node sets differ. A check worse than the baseline by more than
    --max-regression fails (exit 1); improvements, new and missing checks are listed.
    """
    from .report.compare import Tolerances

    tolerances = Tolerances.parse(max_regression)
    from .report import render
    from .report.api import _write, check_out_dir, load_registry
    from .report.compare import Change
    from .report.compare_render import compare_runs, compare_sections, judge_run, plot_change, side_by_side
    from .report.loader import check_paths

    check_paths([base])
    check_paths([new])
    registry = load_registry(specs_files)
    out = check_out_dir(Path(out_dir) if out_dir is not None else default_out_dir(new))

    def warn(message: str) -> None:
        click.echo(f"mlbench compare: warning: {message}", err=True)

    from .report.verdicts import Thresholds, Verdict

    base_run = judge_run([base], registry, Thresholds(), warn)
    new_run = judge_run([new], registry, Thresholds(), warn)
    comparison = compare_runs(base_run, new_run, tolerances)
    code = comparison.exit_code(strict)
    counts = comparison.counts()
    verdict = Verdict.FAIL if code else Verdict.PASS
    summary = [
        f"**Verdict: {verdict}** (exit {code}): " + ", ".join(f"{counts[c]} {c}" for c in Change) + ".",
        "",
        f"Baseline: {base_run.label} ({base}); new: {new_run.label} ({new}).",
        f"Max regression {tolerances.describe()}; {comparison.matching()}.",
    ]
    sections = compare_sections(comparison)
    markdown = render.markdown(TITLE, summary, sections)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    if not no_plots:
        (out / "plots").mkdir(exist_ok=True)
        change = plot_change(comparison, out / "plots" / "compare.png", base_run.label, new_run.label)
        images = ([change] if change else []) + side_by_side(base_run, new_run, out / "plots")
    files = _write(out / "compare.md", markdown)
    comparison.rows.to_csv(out / "compare.csv", index=False)
    files.append(out / "compare.csv")
    files += _write(out / "compare.html", render.html_page(TITLE, summary, sections, images, verdict))
    if not quiet:
        click.echo(markdown, nl=False)
    click.echo(f"mlbench compare: exit {code}; wrote {', '.join(map(str, files))} (+ {len(images)} plot(s))", err=True)
    return code
