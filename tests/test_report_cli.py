"""`mlbench report` / `python -m mlbench.report` end to end: files, golden Markdown, plots, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_module
from report_records import coll, disk, mamf, membw, write_jsonl

GOLDEN = Path(__file__).parent / "golden"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_run(root: Path) -> Path:
    """Two H100 nodes, one unknown part, one failed collective and one errored probe: every verdict kind."""
    run = root / "results" / "r1"
    write_jsonl(
        run / "mamf.jsonl",
        [
            mamf(794.5, m=2048, n=2048, k=13312),
            mamf(760.0, m=4096),
            mamf(640.0, host="n2"),
            mamf(0, host="n2", dtype="fp8", status="error", error="CUDA error: device-side assert"),
            mamf(120.0, host="n3", name="NVIDIA Z999"),
        ],
    )
    write_jsonl(
        run / "membw-n1.jsonl",
        [membw("copy", 3000.0, copied=1500.0), membw("triad", 2950.0), membw("h2d", 106.0, copied=53.0)],
    )
    write_jsonl(run / "membw-n2.jsonl", [membw("copy", 2100.0, host="n2")])
    write_jsonl(
        run / "collectives.jsonl",
        [
            coll("all_reduce", 1 << 20, 40.0),
            coll("all_reduce", 1 << 26, 300.0),
            coll("all_reduce", 1 << 30, 370.0),
            coll("all_gather", 1 << 26, 350.0, errors=2),
        ],
    )
    write_jsonl(
        run / "diskio.jsonl",
        [
            disk("seqread", 1.8),
            disk("randread", 0.24, block=4096, jobs=4, p99=80.0),
            disk("seqwrite", 6.0, direct=False),
        ],
    )
    (run / "env.json").write_text("{}")
    return run


def test_golden_markdown(tmp_path, cli):
    run = small_run(tmp_path)
    out = tmp_path / "out"
    result = cli("report", str(run), "--out", str(out), "--no-plots")
    assert result.exit_code == 1  # the collective with wrong elements fails
    text = (out / "report.md").read_text()
    golden = GOLDEN / "report_small.md"
    if os.environ.get("MLBENCH_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert text in result.output  # printed too


@pytest.mark.slow
def test_files_plots_and_html(tmp_path):
    run = small_run(tmp_path)
    proc = run_module("mlbench.report", str(run), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""  # --quiet
    written = {p.name for p in run.iterdir()}  # default --out: the run directory given
    assert {"report.md", "summary.csv", "report.html", "plots"} <= written
    pngs = sorted((run / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["collectives.png", "diskio.png", "mamf.png", "membw.png"]
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, png
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<table class='sortable'>" in html and "FAIL" in html
    import csv

    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert {r["verdict"] for r in rows} == {"PASS", "WARN", "FAIL", "INCOMPLETE", "INFO"}  # INFO: storage
    assert any(r["check"] == "mamf.bf16" and r["host"] == "n1" and float(r["value"]) == 794.5 for r in rows)


def test_exit_code_0_when_nothing_fails_and_strict_incomplete(tmp_path, cli):
    path = write_jsonl(
        tmp_path / "a" / "mamf.jsonl", [mamf(790.0), mamf(0, dtype="fp8", status="skipped", error="no fp8 here")]
    )
    result = cli("report", str(path), "--out", str(tmp_path / "o1"), "--no-plots", "-q")
    assert result.exit_code == 0
    strict = cli("report", str(path), "--out", str(tmp_path / "o2"), "--no-plots", "-q", "--strict")
    assert strict.exit_code == 1


def test_thresholds_from_options_and_acceptance_file(tmp_path, cli):
    path = write_jsonl(tmp_path / "a" / "mamf.jsonl", [mamf(790.0)])
    args = ("report", str(path), "--no-plots", "-q")
    assert cli(*args, "--out", str(tmp_path / "o1")).exit_code == 0
    assert cli(*args, "--out", str(tmp_path / "o2"), "--min", "mamf.bf16=800").exit_code == 1
    acceptance = tmp_path / "acceptance.json"
    acceptance.write_text(json.dumps({"expect": {"mamf": 0.95}, "fail_below": 0.9}))
    assert cli(*args, "--out", str(tmp_path / "o3"), "--acceptance", str(acceptance)).exit_code == 1


def test_specs_file_changes_the_verdict(tmp_path, cli):
    path = write_jsonl(tmp_path / "a" / "mamf.jsonl", [mamf(250.0, name="ACME Z9")])
    extra = tmp_path / "z9.csv"
    extra.write_text("key,name,match,tflops_bf16,mamf_expected_eff\nz9,Acme Z9,ACME Z9,500,0.8\n")
    out = tmp_path / "o"
    result = cli("report", str(path), "--out", str(out), "--no-plots", "--specs", str(extra))
    assert result.exit_code == 1  # 50% of 500 against a normal 80%: 62% of it, under fail_below 0.75
    text = (out / "report.md").read_text()
    assert "50.0% of the 500 TFLOPS spec" in text
    without = cli("report", str(path), "--out", str(tmp_path / "o2"), "--no-plots")
    assert without.exit_code == 0  # unknown part: WARN, no efficiency


@pytest.mark.parametrize(
    "make_args",
    [
        lambda t: ["report", str(t / "nope")],
        lambda t: ["report", str(t / "run"), "--specs", str(t / "missing.csv")],
        lambda t: ["report", str(t / "run"), "--specs", str(t / "bad.csv")],
        lambda t: ["report", str(t / "run"), "--expect", "mamf"],
        lambda t: ["report", str(t / "run"), "--expect", "nope=0.5"],
        lambda t: ["report", str(t / "run"), "--acceptance", str(t / "bad.json")],
        lambda t: ["report", str(t / "run"), "--warn-below", "0.5"],
        lambda t: ["report", str(t / "run"), "--min", "mamf=700"],
        lambda t: ["report", str(t / "empty")],
        lambda t: ["report", str(t / "run"), "--out", str(t / "run" / "mamf.jsonl")],
    ],
)
def test_bad_usage_exits_2_with_one_line_and_writes_nothing(tmp_path, cli, make_args):
    write_jsonl(tmp_path / "run" / "mamf.jsonl", [mamf(790.0)])
    (tmp_path / "bad.csv").write_text("key,name,match,tflops_bf16\nz9,Z9,Z9,fast\n")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    before = sorted(p for p in tmp_path.rglob("*"))
    result = cli(*make_args(tmp_path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlbench: error:") and "Traceback" not in result.output
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_subprocess_bad_path_one_line(tmp_path):
    proc = run_module("mlbench.report", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file or directory" in proc.stderr
    assert not (tmp_path / "report").exists()


def test_corrupted_line_warns_once_and_report_still_runs(tmp_path):
    run = tmp_path / "run"
    path = write_jsonl(run / "mamf.jsonl", [mamf(790.0), mamf(780.0, m=8192)])
    with path.open("a") as f:
        f.write('{"schema": "mlbench/1", "probe": "mamf", "run_')  # a write cut short
    proc = run_module("mlbench.report", str(run), "--no-plots", "-q", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "1 unreadable line(s)" in warnings[0] and "line 3" in warnings[0]
    assert "Input warnings" in (tmp_path / "o" / "report.md").read_text()


def test_default_out_is_report_dir_for_several_paths(tmp_path, cli, monkeypatch):
    a = write_jsonl(tmp_path / "a.jsonl", [mamf(790.0)])
    b = write_jsonl(tmp_path / "b.jsonl", [mamf(780.0, host="n2")])
    monkeypatch.chdir(tmp_path)
    result = cli("report", str(a), str(b), "--no-plots", "-q")
    assert result.exit_code == 0
    assert (tmp_path / "report" / "report.md").exists()


def test_api_build_report_in_process(tmp_path):
    from mlbench.report.api import build_report

    run = small_run(tmp_path)
    result = build_report([run], out_dir=tmp_path / "api", plots=False)
    assert result.exit_code == 1
    assert set(result.verdicts["verdict"]) == {"PASS", "WARN", "FAIL", "INCOMPLETE", "INFO"}
    assert {p.name for p in result.files} == {"report.md", "summary.csv", "fleet.csv", "report.html"}
    assert result.markdown == (tmp_path / "api" / "report.md").read_text()


def test_importing_the_reporter_is_light():
    code = (
        "import sys, mlbench.report, mlbench.report.cli, mlbench.specs_cli; "
        "print(sorted(m for m in ('pandas', 'matplotlib', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
