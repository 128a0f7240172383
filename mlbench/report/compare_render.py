"""Running and showing a comparison: both runs judged, the tables (Markdown/HTML sections), the plots and files.

`compare_runs` loads and judges a baseline and a new run (as `mlbench report` does) and matches their
checks (`compare.compare_checks`). `compare_sections` are the tables of `mlbench compare`; `baseline_section`
the one `mlbench report --baseline` adds. Plots: `plot_change` (each check of the new run as % of the
baseline, bars side by side with the baseline's 100%, the allowed regression marked) and `side_by_side` (each
probe's plot of the baseline and of the new run, next to each other). pandas and matplotlib only when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .compare import FLEET, Change, Comparison, Tolerances, compare_checks, higher_is_better, run_label
from .render import MAX_ROWS, Section, fmt, text

MAX_BARS = 30
CHANGE_COLOURS = {Change.REGRESSED: "tab:red", Change.IMPROVED: "tab:green", Change.UNCHANGED: "tab:blue"}


@dataclass(frozen=True)
class Judged:
    """One run: its paths, records, checks (verdicts) and how it is named."""

    paths: tuple
    frame: object  # pandas.DataFrame of records
    checks: object  # pandas.DataFrame of check rows
    label: str


def judge_run(paths, registry, thresholds, on_warning: Optional[Callable[[str], None]] = None) -> Judged:
    """Load and judge one run like `mlbench report` (a UsageError when it has no records)."""
    from ..exitcodes import UsageError
    from .api import evaluate
    from .loader import load

    frame = load(paths, on_warning=on_warning)
    if frame.empty:
        raise UsageError(f"no records found in {', '.join(map(str, paths))}")
    checks, _ = evaluate(frame, registry, thresholds)
    return Judged(tuple(paths), frame, checks, run_label(frame, paths))


def compare_runs(base: Judged, new: Judged, tolerances: Tolerances) -> Comparison:
    return compare_checks(base.checks, new.checks, tolerances)


def _pct(value) -> str:
    return "" if value is None or value != value else f"{value:+.1f}%"


def _pair(a, b) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def _table(rows, by_node: bool, verdicts: bool = True) -> tuple:
    header = ["host", "device", "check", "baseline", "new", "unit", "change", "allowed"]
    if not by_node:
        header = [
            "check",
            "devices",
            "baseline median",
            "new median",
            "unit",
            "change",
            "allowed",
            "lowest (baseline / new)",
            "devices (baseline / new)",
        ]
    if verdicts:
        header.append("spec verdict (baseline -> new)")
    body = []
    for r in rows.itertuples(index=False):
        cells = [r.host, r.device, r.check] if by_node else [r.check, text(r.device_name)]
        cells += [fmt(r.base_value), fmt(r.new_value), text(r.unit), _pct(r.change_pct), f"{r.allowed_pct:g}%"]
        if not by_node:
            cells += [_pair(r.base_min, r.new_min), f"{r.base_count} / {r.new_count}"]
        if verdicts:
            cells.append(f"{r.base_verdict or '-'} -> {r.new_verdict or '-'}")
        body.append(cells)
    return header, body


SECTIONS = (
    (Change.REGRESSED, "Regressions"),
    (Change.MISSING, "Missing checks"),
    (Change.IMPROVED, "Improvements"),
    (Change.NEW, "New checks"),
    (Change.UNCHANGED, "Unchanged"),
)


def compare_sections(comparison: Comparison) -> list[Section]:
    """The tables of `mlbench compare`: regressions, missing, improvements, new, unchanged (empty ones left out)."""
    out = []
    for change, title in SECTIONS:
        part = comparison.rows[comparison.rows["change"] == change]
        if part.empty:
            continue
        notes = []
        if len(part) > MAX_ROWS:
            notes.append(f"{len(part) - MAX_ROWS} more in compare.csv.")
            part = part.head(MAX_ROWS)
        header, body = _table(part, comparison.by_node)
        if change in (Change.MISSING, Change.NEW):
            header, body = header + ["reason"], [b + [r] for b, r in zip(body, part["reason"])]
        out.append(Section(title, header, body, notes))
    if not out:
        out.append(Section("Checks", [], [], ["No check was measured in either run."]))
    return out


def baseline_section(comparison: Comparison, base_label: str) -> Section:
    """`mlbench report --baseline`: each check's baseline verdict next to its spec verdict, the worst first."""
    from .compare import BASELINE_VERDICT

    rows = comparison.rows
    notes = [
        f"Baseline: {base_label}; {comparison.matching()}. Change = (new - baseline) / baseline; a check worse "
        f"than the baseline by more than the allowed % FAILs (max regression {comparison.tolerances.describe()})."
    ]
    if len(rows) > MAX_ROWS:
        notes.append(f"{len(rows) - MAX_ROWS} more in baseline.csv.")
        rows = rows.head(MAX_ROWS)
    header, body = _table(rows, comparison.by_node, verdicts=False)
    header += ["baseline verdict", "spec verdict"]
    body = [
        b + [str(BASELINE_VERDICT[Change(r.change)]), r.new_verdict or ""]
        for b, r in zip(body, rows.itertuples(index=False))
    ]
    return Section("Against the baseline", header, body, notes)


def plot_change(comparison: Comparison, path: Path, base_label: str, new_label: str) -> Optional[Path]:
    """Bars side by side per check: the baseline (100%) and the new run as % of it; the allowed regression as a
    tick, regressions red, improvements green. The `MAX_BARS` largest changes when there are more."""
    from .plots import _pyplot, _save

    rows = comparison.rows[comparison.rows["change_pct"].notna()]
    if rows.empty:
        return None
    rows = rows.assign(_size=rows["change_pct"].astype(float).abs()).sort_values("_size", ascending=False)
    rows = rows.head(MAX_BARS).sort_values(["check", "host", "device"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 5))
    positions = range(len(rows))
    new_pct = 100 + rows["change_pct"].astype(float)
    ax.bar(
        [p - 0.2 for p in positions], [100] * len(rows), width=0.4, color="lightgrey", label=f"baseline {base_label}"
    )
    ax.bar(
        [p + 0.2 for p in positions],
        new_pct,
        width=0.4,
        color=[CHANGE_COLOURS.get(Change(c), "tab:blue") for c in rows["change"]],
        label=f"new {new_label}",
    )
    for p, allowed, unit in zip(positions, rows["allowed_pct"], rows["unit"]):
        limit = 100 - allowed if higher_is_better(unit) else 100 + allowed
        ax.hlines(limit, p - 0.4, p + 0.4, colors="black", linestyles="dashed", linewidth=1)
    labels = [r.check if r.host == FLEET else f"{r.check}\n{r.host}:{r.device}" for r in rows.itertuples()]
    ax.set_xticks(list(positions), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("% of the baseline")
    ax.set_title("New run as % of the baseline (dashed: the largest regression allowed)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path, plt)


def side_by_side(base: Judged, new: Judged, out_dir: Path) -> list[Path]:
    """Each probe's plot of the baseline and of the new run, next to each other, as compare-<probe>.png."""
    import tempfile

    from .plots import _pyplot, _save, write_plots

    written = []
    with tempfile.TemporaryDirectory(prefix="mlbench-compare-") as tmp:
        base_dir, new_dir = Path(tmp, "base"), Path(tmp, "new")
        base_dir.mkdir()
        new_dir.mkdir()
        base_plots = {p.name: p for p in write_plots(base.frame, base_dir, base.checks)}
        new_plots = {p.name: p for p in write_plots(new.frame, new_dir, new.checks)}
        plt = _pyplot()
        for name in sorted(set(base_plots) | set(new_plots)):
            fig, axes = plt.subplots(1, 2, figsize=(16, 5.5))
            for ax, plots, label in (
                (axes[0], base_plots, f"baseline: {base.label}"),
                (axes[1], new_plots, f"new: {new.label}"),
            ):
                ax.axis("off")
                ax.set_title(label, fontsize=10)
                if name in plots:
                    ax.imshow(plt.imread(plots[name]))
                else:
                    ax.text(0.5, 0.5, "not measured", ha="center", va="center")
            written.append(_save(fig, out_dir / f"compare-{name}", plt))
    return written


@dataclass(frozen=True)
class BaselineView:
    """What `mlbench report --baseline` adds: the checks with the baseline rows, the comparison, its text."""

    checks: object  # the verdicts frame with one `baseline:<check>` row per compared check
    comparison: Comparison
    label: str

    def summary_line(self, strict: bool = False) -> str:
        from .compare import summary_line

        return summary_line(self.comparison, self.label, strict)

    def section(self) -> Section:
        return baseline_section(self.comparison, self.label)

    def write(self, out_dir: Path, plots: bool, new_label: str) -> tuple[list, list]:
        """(files, images): baseline.csv in `out_dir`, and with `plots` plots/baseline.png."""
        self.comparison.rows.to_csv(out_dir / "baseline.csv", index=False)
        image = (
            plot_change(self.comparison, out_dir / "plots" / "baseline.png", self.label, new_label) if plots else None
        )
        return [out_dir / "baseline.csv"], [image] if image else []

    def insert_section(self, sections: list, after_title: Optional[str]) -> list:
        """The sections with the baseline's placed after the section titled `after_title` (else first)."""
        titles = [s.title for s in sections]
        at = titles.index(after_title) + 1 if after_title in titles else 0
        return sections[:at] + [self.section()] + sections[at:]


def judge_baseline(
    baseline_paths,
    checks,
    registry,
    thresholds,
    tolerances: Tolerances,
    on_warning: Optional[Callable[[str], None]] = None,
) -> BaselineView:
    """Judge the baseline run, compare the current checks with it, and add the baseline rows to the checks."""
    import pandas as pd

    from .checks import rows_frame
    from .compare import baseline_rows

    base = judge_run(list(baseline_paths), registry, thresholds, on_warning)
    comparison = compare_checks(base.checks, checks, tolerances)
    extra = rows_frame(baseline_rows(comparison, base.label))
    combined = pd.concat([checks, extra], ignore_index=True) if len(extra) else checks
    return BaselineView(combined, comparison, base.label)
