"""`mlbench report --junit FILE --prometheus FILE`: the files read back with real parsers (junitparser, the
Prometheus client's text parser), on the reference run relabelled as an H100 run and on hand-made checks."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest
from conftest import run_module
from junitparser import Error, Failure, JUnitXml, Skipped
from prometheus_client.parser import text_string_to_metric_families
from reference_run import relabelled

OUTCOME = {"FAIL": Failure, "INCOMPLETE": Error, "INFO": Skipped, "N/A": Skipped}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The relabelled reference run reported with --require train (an INCOMPLETE), both exports written."""
    from mlbench.report.api import build_report
    from mlbench.report.verdicts import Thresholds

    root = tmp_path_factory.mktemp("exports")
    run = relabelled(root)
    result = build_report(
        [run],
        out_dir=root / "report",
        thresholds=Thresholds(require=("train",)),
        plots=False,
        junit=root / "mlbench.xml",
        prometheus=root / "mlbench.prom",
    )
    return result, root


def test_junit_has_one_testcase_per_check_with_its_outcome(exported):
    result, root = exported
    checks = result.verdicts
    xml = JUnitXml.fromfile(str(root / "mlbench.xml"))
    cases = {}
    for suite in xml:
        for case in suite:
            cases[(suite.name, case.classname, case.name)] = case
    assert len(cases) == len(checks)  # one testcase per check, none merged
    verdicts = set(checks["verdict"])
    assert {"FAIL", "INCOMPLETE"} <= verdicts  # a CPU's figures against an H100's spec; train required, absent
    for r in checks.itertuples(index=False):
        name = r.check if r.device == "node" else f"{r.check} [device {r.device}]"
        host = "".join(c if c.isalnum() or c in "_-" else "_" for c in r.host)
        case = cases[(f"mlbench.{r.probe}", f"mlbench.{r.probe}.{host}", name)]
        kinds = [type(x) for x in case.result]
        if r.verdict in OUTCOME:
            assert kinds == [OUTCOME[r.verdict]], (r.check, r.verdict, kinds)
            assert case.result[0].message == r.reason
        else:
            assert kinds == [] and case.is_passed, (r.check, r.verdict)
        assert f"verdict: {r.verdict}" in case.system_out


def test_junit_counts_follow_the_schema(exported):
    result, root = exported
    counts = result.verdicts["verdict"].value_counts().to_dict()
    tree = ET.parse(root / "mlbench.xml").getroot()
    assert tree.tag == "testsuites"
    assert int(tree.get("tests")) == len(result.verdicts)
    assert int(tree.get("failures")) == counts.get("FAIL", 0)
    assert int(tree.get("errors")) == counts.get("INCOMPLETE", 0)
    assert int(tree.get("skipped")) == counts.get("INFO", 0) + counts.get("N/A", 0)
    for suite in tree.findall("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
        assert int(suite.get("skipped")) == sum(1 for c in cases if c.find("skipped") is not None)
        assert all(set(c.attrib) == {"classname", "name", "time"} for c in cases)
    assert sum(int(s.get("tests")) for s in tree.findall("testsuite")) == int(tree.get("tests"))


def families(path) -> dict:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def test_prometheus_one_gauge_per_figure_with_host_device_check_labels(exported):
    result, root = exported
    found = families(root / "mlbench.prom")
    assert all(f.type == "gauge" for f in found.values())
    checks = result.verdicts
    measured = checks[checks["value"].notna()]
    values = {
        (s.labels["host"], s.labels["device"], s.labels["check"]): s for s in found["mlbench_check_value"].samples
    }
    assert len(values) == len(measured)
    for r in measured.itertuples(index=False):
        sample = values[(r.host, r.device, r.check)]
        assert sample.value == pytest.approx(r.value)
        assert sample.labels["unit"] == r.unit and sample.labels["probe"] == r.probe
    verdicts = {
        (s.labels["host"], s.labels["device"], s.labels["check"]): s.value
        for s in found["mlbench_check_verdict"].samples
    }
    numbers = {"PASS": 0, "INFO": 1, "N/A": 2, "WARN": 3, "INCOMPLETE": 4, "FAIL": 5}
    assert verdicts == {(r.host, r.device, r.check): numbers[r.verdict] for r in checks.itertuples(index=False)}
    mamf = checks[checks["check"] == "mamf.bf16"].iloc[0]
    spec = {s.labels["check"]: s.value for s in found["mlbench_check_pct_of_spec"].samples}
    assert spec["mamf.bf16"] == pytest.approx(100 * mamf["value"] / 989)  # the H100's dense bf16 peak
    per_verdict = {s.labels["verdict"]: s.value for s in found["mlbench_checks"].samples}
    assert per_verdict["FAIL"] == (checks["verdict"] == "FAIL").sum()
    assert found["mlbench_report_exit_code"].samples[0].value == result.exit_code == 1
    assert [s.labels["run_id"] for s in found["mlbench_run_info"].samples] == ["20261126T194432Z-vm-7c91"]
    p99 = {s.labels["check"]: s.value for s in found["mlbench_check_latency_p99_seconds"].samples}
    seqread = checks[checks["check"] == "storage.seqread"].iloc[0]
    assert p99["storage.seqread"] == pytest.approx(seqread["lat_us_p99"] * 1e-6)


def hand_made(*rows):
    from mlbench.report.checks import CheckRow, rows_frame

    return rows_frame([CheckRow(probe="mamf", unit="TFLOPS", **r) for r in rows])


def test_every_verdict_maps_to_its_junit_outcome(tmp_path):
    from mlbench.report.exports import write_exports

    checks = hand_made(
        *[
            dict(host="n1", device=str(i), check="mamf.bf16", value=1.0 + i, verdict=v, reason=f"r{v}")
            for i, v in enumerate(["PASS", "WARN", "INFO", "N/A", "INCOMPLETE", "FAIL"])
        ]
    )
    write_exports(checks, junit=tmp_path / "j.xml")
    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "j.xml"))))
    outcomes = {case.name: [type(x).__name__ for x in case.result] for case in suite}
    assert outcomes == {
        "mamf.bf16 [device 0]": [],
        "mamf.bf16 [device 1]": [],
        "mamf.bf16 [device 2]": ["Skipped"],
        "mamf.bf16 [device 3]": ["Skipped"],
        "mamf.bf16 [device 4]": ["Error"],
        "mamf.bf16 [device 5]": ["Failure"],
    }
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (6, 1, 1, 2)


def test_prometheus_labels_are_escaped_and_colliding_checks_told_apart(tmp_path):
    from mlbench.report.exports import write_exports

    odd = 'GPU "x" \\ 1\nrev'
    checks = hand_made(
        dict(
            host="n1", device="0", device_name=odd, check="mamf.bf16", value=2.5, at="4096^3", verdict="PASS", reason=""
        ),
        dict(
            host="n1", device="0", device_name=odd, check="mamf.bf16", value=3.5, at="8192^3", verdict="WARN", reason=""
        ),
    )
    write_exports(checks, prometheus=tmp_path / "m.prom")
    samples = families(tmp_path / "m.prom")["mlbench_check_value"].samples
    assert {(s.labels["device_name"], s.labels["at"], s.value) for s in samples} == {
        (odd, "4096^3", 2.5),
        (odd, "8192^3", 3.5),
    }


def test_the_prom_file_is_replaced_atomically(tmp_path):
    from mlbench.report.exports import write_exports

    path = tmp_path / "mlbench.prom"
    write_exports(
        hand_made(dict(host="n1", device="0", check="mamf.bf16", value=1.0, verdict="PASS", reason="")), prometheus=path
    )
    with open(path) as old:  # a collector reading the old file while the new one is written
        write_exports(
            hand_made(dict(host="n1", device="0", check="mamf.bf16", value=2.0, verdict="PASS", reason="")),
            prometheus=path,
        )
        assert "} 1.0" in old.read()
    assert "} 2.0" in path.read_text()
    assert os.listdir(tmp_path) == ["mlbench.prom"]  # no temporary file left


def test_report_cli_writes_both_exports(tmp_path):
    run = relabelled(tmp_path)
    proc = run_module(
        "mlbench.report",
        str(run),
        "--out",
        str(tmp_path / "r"),
        "--no-plots",
        "-q",
        "--junit",
        str(tmp_path / "ci.xml"),
        "--prometheus",
        str(tmp_path / "m.prom"),
    )
    assert proc.returncode == 1, proc.stderr  # a CPU's figures fail an H100's spec
    assert JUnitXml.fromfile(str(tmp_path / "ci.xml")).failures >= 1
    assert "mlbench_check_value" in families(tmp_path / "m.prom")


@pytest.mark.parametrize("option", ["--junit", "--prometheus"])
def test_an_unwritable_export_path_is_bad_usage_and_writes_nothing(tmp_path, option):
    run = relabelled(tmp_path)
    out = tmp_path / "r"
    proc = run_module("mlbench.report", str(run), "--out", str(out), option, str(tmp_path / "no" / "dir" / "f"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and option in proc.stderr
    assert not out.exists()
