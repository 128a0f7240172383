"""`mlbench compare BASE NEW` and `mlbench report --baseline` on the kept reference run, relabelled as an H100 run,
against degraded, improved, shortened and renamed copies of it."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from conftest import run_module
from reference_run import REFERENCE, merged, relabelled, renamed, scaled

DEGRADE = {("mamf", None): 0.9, ("diskio", "seqread"): 0.8, ("collectives", "all_reduce"): 1.2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The relabelled reference (base) and a copy with MAMF -10%, seqread -20%, all_reduce busbw +20%."""
    root = tmp_path_factory.mktemp("runs")
    base = relabelled(root)
    return base, scaled(base, root, "gpu-degraded", DEGRADE)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def by_check(rows: list) -> dict:
    return {r["check"]: r for r in rows}


def test_a_run_against_itself_is_unchanged(runs, tmp_path, cli):
    base, _ = runs
    result = cli("compare", str(base), str(base), "--out", str(tmp_path), "--no-plots")
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "compare.csv")
    assert rows and {r["change"] for r in rows} == {"unchanged"}
    assert {"mamf.bf16", "hbm", "busbw.all_reduce", "storage.seqread"} <= set(by_check(rows))
    assert all(float(r["change_pct"]) == 0 for r in rows)
    assert "matched by node name (1 node(s))" in result.output


@pytest.mark.slow
def test_a_degraded_copy_fails_and_names_the_regressed_checks(runs, tmp_path):
    base, degraded = runs
    proc = run_module(
        "mlbench", "compare", str(base), str(degraded), "--out", str(tmp_path), "--no-plots", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    rows = by_check(read_csv(tmp_path / "compare.csv"))
    assert rows["mamf.bf16"]["change"] == "regressed"
    assert float(rows["mamf.bf16"]["change_pct"]) == pytest.approx(-10.0)
    assert float(rows["mamf.bf16"]["new_value"]) == pytest.approx(0.9 * float(rows["mamf.bf16"]["base_value"]))
    assert rows["storage.seqread"]["change"] == "regressed"
    assert float(rows["storage.seqread"]["change_pct"]) == pytest.approx(-20.0)
    assert rows["busbw.all_reduce"]["change"] == "improved"
    assert float(rows["busbw.all_reduce"]["change_pct"]) == pytest.approx(20.0)
    assert {rows[c]["change"] for c in ("hbm", "busbw.all_gather", "storage.seqwrite")} == {"unchanged"}
    text = proc.stdout
    regressions = text.split("## Regressions")[1].split("## ")[0]
    assert "mamf.bf16" in regressions and "storage.seqread" in regressions and "-10.0%" in regressions
    assert "busbw.all_reduce" in text.split("## Improvements")[1].split("## ")[0]
    assert "2 regressed, 0 missing, 1 improved" in text
    assert "FAIL -> FAIL" in text  # the H100 spec verdict of a CPU's MAMF, next to the change
    assert not (tmp_path / "plots").exists()


@pytest.mark.slow
def test_plots_side_by_side(runs, tmp_path, cli):
    """compare: the change plot and each probe's plot of both runs; report --baseline: the change plot."""
    base, degraded = runs
    result = cli("compare", str(base), str(degraded), "--out", str(tmp_path / "c"), "-q")
    assert result.exit_code == 1
    pngs = sorted((tmp_path / "c" / "plots").glob("*.png"))
    assert [p.name for p in pngs] == [
        "compare-collectives.png",
        "compare-diskio.png",
        "compare-mamf.png",
        "compare-membw.png",
        "compare.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 10_000 for p in pngs)
    page = (tmp_path / "c" / "compare.html").read_text()
    assert "Regressions" in page and page.count("data:image/png;base64,") == 5
    report = cli("report", str(degraded), "--baseline", str(base), "--out", str(tmp_path / "r"), "-q")
    assert report.exit_code == 1
    assert (tmp_path / "r" / "plots" / "baseline.png").stat().st_size > 10_000
    assert "baseline.png" in (tmp_path / "r" / "report.html").read_text()


@pytest.fixture(scope="module")
def judged(runs):
    """The checks of both runs, judged once (for the comparisons run in-process)."""
    from mlbench import specs
    from mlbench.report.compare_render import judge_run
    from mlbench.report.verdicts import Thresholds

    registry = specs.load()
    return [judge_run([run], registry, Thresholds(), lambda message: None).checks for run in runs]


def test_per_family_tolerances(runs, judged, tmp_path, cli):
    from mlbench.report.compare import Tolerances, compare_checks

    base, degraded = runs
    loose = cli(
        "compare",
        str(base),
        str(degraded),
        "--out",
        str(tmp_path),
        "--no-plots",
        "--max-regression",
        "0.05,mamf=0.15,storage=0.25",
    )
    assert loose.exit_code == 0, loose.output
    assert by_check(read_csv(tmp_path / "compare.csv"))["mamf.bf16"]["allowed_pct"] == "15.0"
    only_mamf = compare_checks(*judged, Tolerances.parse(["mamf=0.15"]))
    assert only_mamf.exit_code() == 1
    rows = only_mamf.rows.set_index("check")
    assert rows.loc["mamf.bf16", "change"] == "unchanged" and rows.loc["mamf.bf16", "allowed_pct"] == 15
    assert rows.loc["storage.seqread", "change"] == "regressed" and rows.loc["storage.seqread", "allowed_pct"] == 5
    wide = compare_checks(*judged, Tolerances.parse(["0.25"]))
    assert wide.exit_code() == 0  # -20% is within 25%; the +20% is no longer an improvement either
    assert set(wide.rows["change"]) == {"unchanged"}


@pytest.mark.parametrize("value", ["5", "mamf=abc", "=0.1", "-0.1"])
def test_a_bad_max_regression_is_one_line_and_writes_nothing(runs, tmp_path, value, cli):
    base, degraded = runs
    out = tmp_path / "out"
    result = cli("compare", str(base), str(degraded), "--out", str(out), "--max-regression", value)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--max-regression" in result.stderr
    assert result.stdout == "" and not out.exists()


def test_a_missing_path_is_bad_usage(runs, tmp_path, cli):
    base, _ = runs
    result = cli("compare", str(base), str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no such file or directory" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_and_new_checks_are_listed(runs, tmp_path, cli):
    base, _ = runs
    no_storage = tmp_path / "no-storage"
    no_storage.mkdir()
    for path in base.glob("*.jsonl"):
        if path.name not in ("diskio.jsonl", "collectives.jsonl"):
            (no_storage / path.name).write_bytes(path.read_bytes())
    result = cli("compare", str(base), str(no_storage), "--out", str(tmp_path / "a"), "--no-plots")
    assert result.exit_code == 0, result.output  # listed, not fatal
    rows = by_check(read_csv(tmp_path / "a" / "compare.csv"))
    assert rows["storage.seqread"]["change"] == "missing" and rows["busbw.all_reduce"]["change"] == "missing"
    assert "## Missing checks" in result.output
    strict = cli("compare", str(base), str(no_storage), "--out", str(tmp_path / "b"), "--no-plots", "--strict")
    assert strict.exit_code == 1
    reverse = cli("compare", str(no_storage), str(base), "--out", str(tmp_path / "c"), "--no-plots")
    assert reverse.exit_code == 0
    assert by_check(read_csv(tmp_path / "c" / "compare.csv"))["storage.seqread"]["change"] == "new"
    assert "## New checks" in reverse.output


def test_different_node_sets_compare_the_fleet_distribution(runs, tmp_path, cli):
    """Baseline node vm; new nodes a and b, b's MAMF 30% lower: the median of (x, 0.7x) is 0.85x, -15%."""
    base, _ = runs
    a = renamed(base, tmp_path, "a", {"vm": "a"})
    b = scaled(renamed(base, tmp_path, "b0", {"vm": "b"}), tmp_path, "b", {("mamf", None): 0.7})
    fleet = merged(tmp_path, "fleet", [a, b])
    result = cli("compare", str(base), str(fleet), "--out", str(tmp_path / "out"), "--no-plots")
    assert result.exit_code == 1, result.output
    rows = by_check(read_csv(tmp_path / "out" / "compare.csv"))
    mamf = rows["mamf.bf16"]
    assert mamf["host"] == "fleet" and mamf["change"] == "regressed"
    assert float(mamf["change_pct"]) == pytest.approx(-15.0)
    assert (mamf["base_count"], mamf["new_count"]) == ("1", "2")
    assert float(mamf["new_min"]) == pytest.approx(0.7 * float(mamf["base_value"]))
    assert rows["hbm"]["change"] == "unchanged"
    assert "only in the baseline: vm; only in the new run: a, b" in result.output


def test_lower_is_better_units_regress_upwards():
    from mlbench.report.checks import CheckRow, rows_frame
    from mlbench.report.compare import Tolerances, compare_checks

    def run(latency_us, gbps):
        return rows_frame(
            [
                CheckRow(
                    host="n1",
                    device="node",
                    probe="diskio",
                    check="storage.p99",
                    value=latency_us,
                    unit="us",
                    verdict="INFO",
                    reason="",
                ),
                CheckRow(
                    host="n1",
                    device="node",
                    probe="diskio",
                    check="storage.seqread",
                    value=gbps,
                    unit="GB/s",
                    verdict="INFO",
                    reason="",
                ),
            ]
        )

    rows = compare_checks(run(100.0, 2.0), run(110.0, 1.8), Tolerances(0.05)).rows.set_index("check")
    assert rows.loc["storage.p99", "change"] == "regressed"  # +10% latency
    assert rows.loc["storage.p99", "change_pct"] == pytest.approx(10.0)
    assert rows.loc["storage.seqread", "change"] == "regressed"  # -10% bandwidth
    better = compare_checks(run(100.0, 2.0), run(90.0, 2.2), Tolerances(0.05)).rows.set_index("check")
    assert set(better["change"]) == {"improved"}


def test_tolerances_pick_the_most_specific_name():
    from mlbench.report.compare import Tolerances

    t = Tolerances.parse(["0.1,busbw=0.2", "busbw.all_reduce=0.03", "membw=0.07"])
    assert t.allowed("busbw.all_reduce", "collectives") == 0.03
    assert t.allowed("busbw.all_gather", "collectives") == 0.2
    assert t.allowed("hbm", "membw") == 0.07
    assert t.allowed("mamf.bf16", "mamf") == 0.1
    assert Tolerances.parse([]).allowed("mamf.bf16", "mamf") == 0.05


def test_report_baseline_adds_baseline_verdicts_next_to_the_spec_verdicts(tmp_path, cli):
    """On the CPU reference (no spec: nothing FAILs against a datasheet) only the baseline can fail the report."""
    degraded = scaled(REFERENCE, tmp_path, "cpu-degraded", DEGRADE)
    same = cli(
        "report", str(REFERENCE), "--baseline", str(REFERENCE), "--out", str(tmp_path / "same"), "-q", "--no-plots"
    )
    assert same.exit_code == 0, same.output
    worse = cli(
        "report", str(degraded), "--baseline", str(REFERENCE), "--out", str(tmp_path / "worse"), "-q", "--no-plots"
    )
    assert worse.exit_code == 1, worse.output
    summary = read_csv(tmp_path / "worse" / "summary.csv")
    baseline = {r["check"]: r for r in summary if r["probe"] == "baseline"}
    assert baseline["baseline:mamf.bf16"]["verdict"] == "FAIL"
    assert baseline["baseline:storage.seqread"]["verdict"] == "FAIL"
    assert baseline["baseline:busbw.all_reduce"]["verdict"] == "PASS"
    assert baseline["baseline:hbm"]["verdict"] == "PASS"
    assert float(baseline["baseline:mamf.bf16"]["pct_of_reference"]) == pytest.approx(90.0)
    spec = {r["check"]: r["verdict"] for r in summary if r["probe"] == "mamf"}
    assert spec["mamf.bf16"] != "FAIL"  # the spec verdict is unchanged: a CPU has no datasheet
    report = (tmp_path / "worse" / "report.md").read_text()
    section = report.split("## Against the baseline")[1].split("\n## ")[0]
    assert "baseline verdict | spec verdict" in section
    line = next(row for row in section.splitlines() if "| mamf.bf16 |" in row)
    assert "| -10.0% |" in line and "| FAIL |" in line
    assert "Against the baseline (20261126T194432Z-vm-7c91): FAIL" in report
    assert {r["check"] for r in read_csv(tmp_path / "worse" / "baseline.csv")} >= {"mamf.bf16", "storage.seqread"}


@pytest.mark.parametrize(
    "args",
    [
        ["--baseline", "/no/such/run"],
        ["--max-regression", "0.1"],
        ["--baseline", str(REFERENCE), "--max-regression", "2"],
    ],
)
def test_report_baseline_bad_usage_writes_nothing(tmp_path, args, cli):
    out = tmp_path / "out"
    result = cli("report", str(REFERENCE), "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_report_baseline_bad_usage_through_the_entry_point(tmp_path):
    out = tmp_path / "out"
    proc = run_module("mlbench.report", str(REFERENCE), "--out", str(out), "--baseline", str(tmp_path / "nope"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such file or directory" in proc.stderr
    assert not out.exists()


HEAVY = """
import sys
from click.testing import CliRunner
from mlbench.cli import group
result = CliRunner().invoke(group, sys.argv[1:])
assert result.exit_code == 0, result.output
print(",".join(sorted(m for m in ("torch", "pandas", "matplotlib", "numpy") if m in sys.modules)))
"""


@pytest.mark.parametrize("command", ["compare", "estimate"])
def test_help_imports_nothing_heavy(command):
    out = subprocess.run([sys.executable, "-c", HEAVY, command, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_a_check_with_several_rows_on_a_node_compares_its_best():
    """Two all_reduce jobs on one node (2 and 8 ranks): 100 and 300 GB/s, then 110 and 250: -16.7% on the best."""
    from mlbench.report.checks import CheckRow, rows_frame
    from mlbench.report.compare import compare_checks

    def run(*gbps):
        return rows_frame(
            [
                CheckRow(
                    host="n1",
                    device="node",
                    probe="collectives",
                    check="busbw.all_reduce",
                    value=v,
                    unit="GB/s",
                    verdict="INFO",
                    reason="",
                )
                for v in gbps
            ]
        )

    rows = compare_checks(run(100.0, 300.0), run(110.0, 250.0)).rows
    assert len(rows) == 1
    assert rows.loc[0, "change"] == "regressed"
    assert rows.loc[0, "change_pct"] == pytest.approx(100 * (250 - 300) / 300)
