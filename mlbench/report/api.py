"""`build_report`: records in, verdicts, exit code and report files out (what the CLI and `mlbench run` call).

    from mlbench.report.api import build_report
    result = build_report(["results/<run-id>"], out_dir="results/<run-id>", specs_files=(), thresholds=None)
    result.exit_code      # 0: every verdict PASS/WARN (INCOMPLETE too unless strict); 1: a FAIL
    result.verdicts       # DataFrame, one row per check (the fields of checks.CheckRow); N/A rows (checks that
                          # cannot run on that device, with the reason) too, which summary.csv leaves out
    result.fleet          # DataFrame, per check and node (fleet.FLEET_COLUMNS)
    result.records        # the tidy records frame (loader.load)
    result.markdown       # the Markdown text; result.files: the paths written

Everything that can be wrong with the input (no such path, a bad spec file, an unwritable output
directory, no records at all) raises `UsageError` (exit 2) before any file is written.
Files written into `out_dir`: report.md, summary.csv (every verdict), fleet.csv (when there is a
fleet table), report.html (plots embedded) and plots/*.png.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..exitcodes import UsageError
from .verdicts import Thresholds, Verdict, exit_code

TITLE = "mlbench report"


@dataclass
class ReportResult:
    records: object  # pandas.DataFrame
    verdicts: object  # pandas.DataFrame
    fleet: object  # pandas.DataFrame
    exit_code: int
    markdown: str
    files: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    comparison: object = None  # compare.Comparison, with a baseline


def default_out_dir(paths: Iterable) -> Path:
    """The run directory when exactly one directory is given, else ./report."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0]
    return Path("report")


def check_out_dir(out_dir: Path) -> Path:
    """A UsageError unless `out_dir` is (or can be created as) a writable directory; creates nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"--out {out_dir}: not a directory")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise UsageError(f"--out {out_dir}: not writable")
        return out_dir
    ancestor = out_dir.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out_dir}: cannot create it under {ancestor}")
    return out_dir


def load_registry(specs_files: Iterable = ()):
    from .. import specs

    try:
        return specs.load(tuple(specs_files))
    except specs.SpecsError as exc:
        raise UsageError(str(exc)) from None


def evaluate(frame, registry, thresholds: Thresholds):
    """(verdicts DataFrame, fleet DataFrame) of a records frame."""
    import pandas as pd

    from .checks import Context, all_checks, rows_frame
    from .fleet import fleet_view

    rows = all_checks(frame, Context(registry, thresholds)) if len(frame) else []
    checks = rows_frame(rows)
    fleet, extra = fleet_view(checks, thresholds)
    if extra:
        checks = pd.concat([checks, rows_frame(extra)], ignore_index=True)
    return checks, fleet


def build_report(
    paths,
    out_dir=None,
    specs_files=(),
    thresholds: Optional[Thresholds] = None,
    *,
    write: bool = True,
    plots: bool = True,
    on_warning: Optional[Callable[[str], None]] = None,
    baseline=None,
    max_regression=(),
    junit=None,
    prometheus=None,
) -> ReportResult:
    """Read records under `paths`, judge them, write the report files; see the module docstring."""
    from . import render
    from .loader import check_paths, load

    thresholds = thresholds or Thresholds()
    check_paths(paths)
    tolerances = check_extras(baseline, max_regression, junit, prometheus)
    registry = load_registry(specs_files)
    out = Path(out_dir) if out_dir is not None else default_out_dir(paths)
    if write:
        check_out_dir(out)
    warnings: list = []

    def warn(message: str) -> None:
        warnings.append(message)
        if on_warning is not None:
            on_warning(message)

    frame = load(paths, on_warning=warn)
    if frame.empty:
        raise UsageError(f"no records found in {', '.join(map(str, paths))}")
    checks, fleet = evaluate(frame, registry, thresholds)
    view = None
    if baseline is not None:  # one baseline:<check> row per compared check, next to the spec verdicts
        from .compare_render import judge_baseline

        view = judge_baseline([baseline], checks, registry, thresholds, tolerances, warn)
        checks = view.checks
    code = exit_code(checks["verdict"], thresholds.strict)
    summary = render.summary_lines(frame, checks, warnings, code)
    secs = render.sections(checks, fleet, warnings)
    if view is not None:
        summary += ["", view.summary_line(thresholds.strict)]
        secs = view.insert_section(secs, getattr(render, "ATTENTION", None))
    text = render.markdown(TITLE, summary, secs)
    files: list = []
    if write:
        out.mkdir(parents=True, exist_ok=True)
        images = []
        if plots:
            from .plots import write_plots

            (out / "plots").mkdir(exist_ok=True)
            images = write_plots(frame, out / "plots", checks)
        if view is not None:
            more_files, more_images = view.write(out, plots, ", ".join(sorted(frame["run_id"].astype(str).unique())))
            files, images = files + more_files, images + more_images
        files += _write(out / "report.md", text)
        checks[checks["verdict"].ne(Verdict.NA)].to_csv(out / "summary.csv", index=False)  # N/A: not a verdict
        files.append(out / "summary.csv")
        if not fleet.empty:
            fleet.to_csv(out / "fleet.csv", index=False)
            files.append(out / "fleet.csv")
        files += _write(
            out / "report.html", render.html_page(TITLE, summary, secs, images, render.overall_verdict(checks))
        )
        files += images
    if junit is not None or prometheus is not None:
        from .exports import write_exports

        files += write_exports(
            checks, junit=junit, prometheus=prometheus, exit_code=code, run_ids=frame["run_id"].unique()
        )
    return ReportResult(frame, checks, fleet, code, text, files, warnings, view.comparison if view else None)


def check_extras(baseline, max_regression, junit, prometheus):
    """UsageErrors before anything is written: the baseline path, --max-regression, the export files.
    Returns the regression tolerances (compare.Tolerances)."""
    from .compare import Tolerances
    from .exports import check_export_path
    from .loader import check_paths

    tolerances = Tolerances.parse(max_regression)
    if max_regression and baseline is None:
        raise UsageError("--max-regression needs --baseline PATH")
    if baseline is not None:
        check_paths([baseline])
    for option, path in (("--junit", junit), ("--prometheus", prometheus)):
        if path is not None:
            check_export_path(path, option)
    return tolerances


def _write(path: Path, text: str) -> list:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return [path]
