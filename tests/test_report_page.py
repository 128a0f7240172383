"""The first page: the headline per node and for the fleet, and the HTML page's structure (no browser here)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("pandas")

from report_records import mamf, membw, write_jsonl  # noqa: E402

from mlbench.report.api import build_report  # noqa: E402
from mlbench.report.checks import CheckRow, rows_frame  # noqa: E402
from mlbench.report.headline import headline  # noqa: E402
from mlbench.report.htmlpage import page  # noqa: E402
from mlbench.report.render import Section  # noqa: E402
from mlbench.report.verdicts import Verdict  # noqa: E402


def lines_by_label(h):
    return {line.label: line for line in h.summary}


def test_node_figure_is_its_slowest_gpu_and_the_fleet_the_median_node(tmp_path):
    # n1: GPUs at 800 and 700 TFLOPS -> 700; n2: 760; n3: 780 -> fleet median 760, lowest n1
    records = [
        mamf(800.0),
        mamf(700.0, index=1),
        mamf(760.0, host="n2"),
        mamf(780.0, host="n3"),
        membw("copy", 3000.0),
        membw("copy", 3000.0, index=1),
        membw("copy", 3100.0, host="n2"),
        membw("copy", 2900.0, host="n3"),
    ]
    write_jsonl(tmp_path / "run" / "r.jsonl", records)
    result = build_report([str(tmp_path / "run")], out_dir=str(tmp_path / "out"), plots=False)
    h = headline(result.verdicts)
    assert h.hosts == ["n1", "n2", "n3"]
    node = h.per_node[("n1", "MAMF bf16 per GPU")]
    assert node.value == 700.0 and node.pct_of_spec == pytest.approx(100 * 700 / 989)
    assert "lowest of 2 (device 1" in node.detail and "highest 800" in node.detail
    fleet = lines_by_label(h)["MAMF bf16 per GPU"]
    assert fleet.scope == "fleet" and fleet.value == 760.0
    assert fleet.pct_of_spec == pytest.approx(100 * 760 / 989)
    assert "lowest 700 on n1" in fleet.detail and "highest 780 on n3" in fleet.detail
    # 700 / 989 = 70.8%, 88% of the normal 80.3%: the node's MAMF is a WARN, so is the fleet's line
    assert node.verdict == Verdict.WARN and fleet.verdict == Verdict.WARN
    assert lines_by_label(h)["HBM bandwidth per GPU"].value == 3000.0  # median of 3000, 3100, 2900
    assert h.node_verdicts == {"n1": Verdict.WARN, "n2": Verdict.PASS, "n3": Verdict.PASS}
    assert "## Headline per node" in result.markdown
    assert "| n1 | 700 (70.8%) WARN | 3000 (89.6%) PASS |" in result.markdown


def test_core_figures_without_rows_are_not_measured_and_optional_ones_are_left_out(tmp_path):
    write_jsonl(tmp_path / "run" / "r.jsonl", [mamf(790.0)])
    result = build_report([str(tmp_path / "run")], out_dir=str(tmp_path / "out"), plots=False)
    got = lines_by_label(headline(result.verdicts))
    assert list(got) == [
        "MAMF bf16 per GPU",
        "HBM bandwidth per GPU",
        "intra-node busbw",
        "inter-node busbw",
        "storage read",
        "storage write",
    ]
    assert all(got[label].verdict is None and got[label].value is None for label in list(got)[1:])
    assert got["MAMF bf16 per GPU"].verdict == Verdict.PASS and got["MAMF bf16 per GPU"].scope == "n1"


def test_sustained_mamf_is_its_own_check_and_headline_figure(tmp_path):
    sustain = {"mode": "sustain"}
    records = [mamf(790.0), mamf(700.0, params=sustain), mamf(720.0, params=sustain), mamf(740.0, params=sustain)]
    for r, sustained in zip(records[1:], (600.0, 650.0, 640.0)):
        r["metrics"]["tflops_sustained"] = sustained
    write_jsonl(tmp_path / "run" / "r.jsonl", records)
    result = build_report([str(tmp_path / "run")], out_dir=str(tmp_path / "out"), plots=False)
    v = result.verdicts.set_index("check")
    assert v.loc["mamf.bf16", "value"] == 790.0  # the sustained records do not count for the peak
    assert v.loc["mamf.bf16.sustained", "value"] == 640.0  # the median of 600, 650, 640
    # 640 / 989 = 64.7%, 81% of the normal 80.3%: WARN
    assert v.loc["mamf.bf16.sustained", "verdict"] == Verdict.WARN
    line = lines_by_label(headline(result.verdicts))["MAMF bf16 sustained per GPU"]
    assert line.value == 640.0 and line.pct_of_spec == pytest.approx(100 * 640 / 989)


def row(check, value, verdict=Verdict.PASS, **kw):
    """A check row of host n1 (a node-level row unless `device` is given)."""
    fields = dict(host="n1", device="node", device_type="cuda", probe=check.split(".")[0], unit="GB/s", reason="")
    return CheckRow(**{**fields, **kw}, check=check, value=value, verdict=verdict)


def test_inter_node_busbw_storage_and_mfu_lines():
    spans = "1GiB, 16 ranks, nccl, across nodes"
    rows = [
        row("busbw.all_reduce", 370.0, probe="collectives", at="1GiB, 8 ranks, nccl"),
        row("busbw.all_reduce", 45.0, Verdict.INFO, probe="collectives", at=spans),
        row("storage.seqread", 2.0, Verdict.INFO, probe="diskio", device_type="storage"),
        row("train.tiny", 120.0, device="0", unit="TFLOPS", pct_of_spec=12.1),
        row("train.tiny", 130.0, device="1", unit="TFLOPS", pct_of_spec=13.1),
        row("train.tiny.ddp.2", 110.0, unit="TFLOPS", pct_of_spec=11.1, verdict=Verdict.WARN),
    ]
    got = lines_by_label(headline(rows_frame(rows)))
    assert got["intra-node busbw (all_reduce)"].value == 370.0
    assert got["inter-node busbw (all_reduce)"].value == 45.0
    assert got["inter-node busbw (all_reduce)"].verdict == Verdict.INFO
    assert got["storage read (seqread)"].value == 2.0 and got["storage write"].verdict is None
    mfu = got["MFU (tiny, ddp, 2 devices) per GPU"]  # the job on the most devices, not a device alone
    assert (mfu.value, mfu.unit, mfu.pct_of_spec, mfu.verdict) == (110.0, "TFLOPS", 11.1, Verdict.WARN)
    alone = lines_by_label(headline(rows_frame(rows[3:5])))["MFU (tiny, alone) per GPU"]
    assert alone.value == 120.0 and alone.pct_of_spec == 12.1  # the node's slowest device


def test_not_measured_rows_stay_out_of_the_headline():
    rows = [
        CheckRow(
            host="n1",
            device="0",
            device_type="cpu",
            probe="membw",
            check="hbm",
            value=30.0,
            unit="GB/s",
            verdict=Verdict.INFO,
            reason="informational",
        ),
        CheckRow(
            host="n1",
            device="0",
            device_type="cpu",
            probe="membw",
            check="h2d",
            verdict=Verdict.NA,
            reason="not applicable on cpu",
        ),
    ]
    h = headline(rows_frame(rows))
    assert lines_by_label(h)["memory bandwidth per device"].value == 30.0
    assert h.node_verdicts == {"n1": Verdict.INFO}


# -- the HTML page ------------------------------------------------------------------------------------


def sample_page(verdict="WARN"):
    secs = [
        Section("Headline", ["figure", "measured", "verdict"], [["MAMF", "700 TFLOPS", "WARN"]]),
        Section(
            "MAMF (matmul TFLOPS)",
            ["host", "TFLOPS", "verdict"],
            [["n1", "700", "WARN"], ["n2", "790", "PASS"]],
            ["a note <with> markup"],
        ),
    ]
    summary = [
        f"**Verdict: {verdict}** (exit 0): 2 judged: 0 FAIL, 1 WARN, 0 INCOMPLETE, 1 PASS; 0 informational.",
        "",
        "Records: 2 from 1 file(s).",
    ]
    return page("mlbench report", summary, secs, [])


def test_page_banner_navigation_and_sortable_tables():
    text = sample_page()
    assert "<div class='verdict' id='verdict'>WARN</div>" in text and "class='banner v-WARN'" in text
    assert "exit code 0: 2 judged: 0 FAIL, 1 WARN" in text and "**" not in text
    ids = re.findall(r"<section id='([^']+)'>", text)
    links = re.findall(r"<a href='#([^']+)'>", text)
    assert ids == links == ["headline", "mamf-matmul-tflops"]
    assert text.count("<table class='sortable'>") == 2 and text.count("<th scope='col' aria-sort='none'>") == 6
    assert "<td class='v-WARN'>WARN</td>" in text and "<td class='v-PASS'>PASS</td>" in text
    assert "a note &lt;with&gt; markup" in text  # escaped
    assert "<title>mlbench report: WARN</title>" in text


def test_page_is_one_offline_file():
    text = sample_page()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", text)
    assert "<script>" in text and "<style>" in text and "<link" not in text


def test_not_measured_cells_get_their_own_class():
    secs = [Section("Not measured", ["check", "verdict"], [["h2d", "N/A"]])]
    assert "<td class='v-NA'>N/A</td>" in page("t", ["**Verdict: INFO** (exit 0): nothing judged"], secs, [])
