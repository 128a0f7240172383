"""The report of a real CPU run (the reference quick run under results/reference/): honest verdicts.

A CPU has no advertised spec: every figure is INFO (measured, not judged), h2d/d2h were not measured
(N/A with the reason, out of the counts and of summary.csv), only the disk-fill rule judges something.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("pandas")

from mlbench.report.api import build_report  # noqa: E402
from mlbench.report.verdicts import Thresholds  # noqa: E402

REFERENCE_RUN = Path(__file__).resolve().parents[1] / "results" / "reference" / "cpu-quick-20261126"
SUMMARY_VERDICTS = {"PASS", "WARN", "FAIL", "INCOMPLETE", "INFO"}


def records(name: str) -> list:
    return [json.loads(line) for line in (REFERENCE_RUN / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu-report")
    return build_report([str(REFERENCE_RUN)], out_dir=str(out), plots=False), out


def test_every_cpu_figure_is_informational_and_h2d_d2h_not_measured(report):
    result, _ = report
    got = dict(zip(result.verdicts["check"], result.verdicts["verdict"]))
    assert got == {
        "node.cpu_cores": "INFO",
        "node.host_memory": "INFO",
        "node.disk": "PASS",
        "mamf.bf16": "INFO",
        "hbm": "INFO",
        "h2d": "N/A",
        "d2h": "N/A",
        "busbw.all_gather": "INFO",
        "busbw.all_reduce": "INFO",
        "storage.checkpoint": "INFO",
        "storage.randread": "INFO",
        "storage.randwrite": "INFO",
        "storage.seqread": "INFO",
        "storage.seqwrite": "INFO",
    }
    assert result.exit_code == 0
    skipped = {r["params"]["op"]: r["error"] for r in records("membw.jsonl") if r["status"] == "skipped"}
    reasons = dict(zip(result.verdicts["check"], result.verdicts["reason"]))
    assert reasons["h2d"] == f"not applicable on cpu: {skipped['h2d']}"


def test_verdict_line_counts_what_was_judged(report):
    result, _ = report
    first = result.markdown.splitlines()[2]
    # 14 rows: 1 judged (disk fill), 11 informational, 2 not measured
    assert first == (
        "**Verdict: PASS** (exit 0): 1 judged: 0 FAIL, 0 WARN, 0 INCOMPLETE, 1 PASS; "
        "11 informational; 2 not measured (N/A)."
    )
    assert "Every check passes" not in result.markdown
    assert "Nothing needs attention: 1 judged check(s) pass; 11 figure(s) are informational" in result.markdown


def test_summary_csv_holds_verdicts_only(report):
    _, out = report
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["verdict"] for r in rows} <= SUMMARY_VERDICTS
    assert len(rows) == 12 and not {"h2d", "d2h"} & {r["check"] for r in rows}


def test_not_measured_is_listed_with_its_reason_and_not_as_a_verdict(report):
    result, _ = report
    text = result.markdown
    section = text.split("## Not measured", 1)[1]
    assert "| vm | 0 | h2d | not applicable on cpu: h2d needs an accelerator" in section
    membw = text.split("## Memory bandwidth", 1)[1].split("##", 1)[0]
    assert "| h2d |" not in membw and "| d2h |" not in membw
    for title in ("MAMF (matmul TFLOPS)", "Memory bandwidth", "Collectives", "Storage"):
        body = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        table = [line for line in body.splitlines() if line.startswith("| vm")]
        assert table and all(line.endswith("| INFO |") for line in table), (title, table)


def test_headline_shows_the_measured_figures_without_a_spec(report):
    result, _ = report
    headline = result.markdown.split("## Headline", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")
        for line in headline.splitlines()
        if line.startswith("| ") and not line.startswith("| figure")
    }
    best_tflops = max(r["metrics"]["tflops"] for r in records("mamf.jsonl") if r["status"] == "ok")
    assert rows["MAMF bf16 per device"][2] == f"{best_tflops:.4g} TFLOPS"
    assert rows["MAMF bf16 per device"][3:5] == ["", "INFO"]  # no % of spec, no judgement
    best_seqread = max(r["metrics"]["gbps"] for r in records("diskio.jsonl") if r["params"]["mode"] == "seqread")
    assert rows["storage read (seqread)"][2] == f"{best_seqread:.4g} GB/s"
    assert rows["inter-node busbw"][2:5] == ["not measured", "", ""]  # one node: no verdict at all
    assert set(rows) >= {"memory bandwidth per device", "intra-node busbw (all_reduce)", "storage write (checkpoint)"}


def test_info_and_not_measured_never_fail_even_strict(cli, tmp_path):
    result = cli("report", str(REFERENCE_RUN), "--out", str(tmp_path / "o"), "--no-plots", "-q", "--strict")
    assert result.exit_code == 0


def test_a_floor_turns_an_informational_figure_into_a_verdict(tmp_path):
    best_seqread = max(r["metrics"]["gbps"] for r in records("diskio.jsonl") if r["params"]["mode"] == "seqread")
    met = build_report(
        [str(REFERENCE_RUN)],
        out_dir=str(tmp_path / "a"),
        plots=False,
        thresholds=Thresholds(minimum={"storage.seqread": best_seqread * 0.9}),
    )
    seqread = met.verdicts[met.verdicts["check"] == "storage.seqread"].iloc[0]
    assert seqread["verdict"] == "PASS" and met.exit_code == 0
    assert met.markdown.splitlines()[2].startswith("**Verdict: PASS** (exit 0): 2 judged:")
    missed = build_report(
        [str(REFERENCE_RUN)],
        out_dir=str(tmp_path / "b"),
        plots=False,
        thresholds=Thresholds(minimum={"storage.seqread": best_seqread * 1.1}),
    )
    assert missed.exit_code == 1 and missed.markdown.startswith("# mlbench report\n\n**Verdict: FAIL** (exit 1)")


def test_the_committed_reference_report_is_the_current_reporters_verdicts(report):
    """results/reference/.../summary.csv was regenerated by this reporter: its verdicts are today's."""
    result, _ = report
    committed = {r["check"]: r["verdict"] for r in csv.DictReader((REFERENCE_RUN / "summary.csv").open())}
    judged = result.verdicts[result.verdicts["verdict"] != "N/A"]
    assert committed == dict(zip(judged["check"], judged["verdict"]))
    assert "Sizing rules: >= 3 CPU cores per GPU" in (REFERENCE_RUN / "report.md").read_text()
