"""Exports of the checks for CI and monitoring: JUnit XML and the Prometheus textfile-collector format.

JUnit (`junit_xml`): one `<testsuite>` per probe, one `<testcase>` per check (classname
`mlbench.<probe>.<host>`, name `<check>` plus the device), as CI systems read it (Jenkins, GitLab, GitHub
test reporters): FAIL is a `<failure>`, INCOMPLETE an `<error>`, INFO and N/A `<skipped>` (nothing judged),
PASS and WARN pass (a WARN says so in `<system-out>`). The message is the check's reason; `<system-out>`
holds the figure, the spec and the verdict.

Prometheus (`prometheus_text`): the text exposition format that node_exporter's textfile collector reads
(`--collector.textfile.directory`). One gauge per figure of a check, labelled `host`, `device`,
`device_name`, `probe`, `check` (and `unit` where units vary):

    mlbench_check_value            the measured figure, in `unit`
    mlbench_check_spec_value       the advertised figure it is judged against, in `unit`
    mlbench_check_pct_of_spec      measured / spec x 100
    mlbench_check_reference_value  a published measurement (MAMF) or the baseline's figure, in `unit`
    mlbench_check_pct_of_reference measured / reference x 100
    mlbench_check_verdict          the verdict as a number: VERDICT_VALUES (0 PASS ... 5 FAIL; higher is worse)
    mlbench_check_wrong_elements, mlbench_check_iops, mlbench_check_latency_p99_seconds,
    mlbench_check_half_peak_bytes, mlbench_check_small_latency_seconds   (where the check has them)

plus `mlbench_checks{verdict}` (counts), `mlbench_report_exit_code` and `mlbench_run_info{run_id} 1`. Two
checks with the same labels (two jobs of one op on a node) are told apart by an `at` label. Files are written
atomically (a temporary file in the same directory, then a rename), as textfile collectors expect.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..exitcodes import UsageError

FAILURE, ERROR, SKIPPED, PASSED = "failure", "error", "skipped", "passed"
JUNIT_OUTCOME = {"FAIL": FAILURE, "INCOMPLETE": ERROR, "INFO": SKIPPED, "N/A": SKIPPED, "WARN": PASSED, "PASS": PASSED}
VERDICT_VALUES = {"PASS": 0, "INFO": 1, "N/A": 2, "WARN": 3, "INCOMPLETE": 4, "FAIL": 5}
LABELS = ("host", "device", "device_name", "probe", "check")


def check_export_path(path, option: str) -> Path:
    """A UsageError unless `path` is a file that can be written (its directory exists and is writable)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory, expected a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")
    return path


def write_atomically(path, text: str) -> Path:
    """Write `text` to a temporary file beside `path` (not matching *.prom or *.xml), then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _number(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


# -- JUnit ------------------------------------------------------------------------------------------------------


def _details(r) -> str:
    value, spec = _number(r.value), _number(r.spec_value)
    lines = [f"verdict: {r.verdict}"]
    if value is not None:
        lines.append(f"measured: {value:.6g} {_text(r.unit)}" + (f" at {r.at}" if _text(r.at) else ""))
    if spec is not None:
        pct = _number(r.pct_of_spec)
        lines.append(f"spec: {spec:.6g} {_text(r.unit)}" + (f" ({pct:.1f}% of it)" if pct is not None else ""))
    lines.append(f"reason: {_text(r.reason)}")
    return "\n".join(lines)


def _testcase(suite: ET.Element, r) -> str:
    outcome = JUNIT_OUTCOME.get(str(r.verdict), PASSED)
    device = _text(r.device)
    name = str(r.check) if device in ("", "node") else f"{r.check} [device {device}]"
    host = re.sub(r"[^A-Za-z0-9_-]", "_", _text(r.host)) or "_"
    case = ET.SubElement(suite, "testcase", classname=f"mlbench.{r.probe}.{host}", name=name, time="0")
    if outcome != PASSED:
        ET.SubElement(case, outcome, message=_text(r.reason), type=str(r.verdict)).text = _details(r)
    ET.SubElement(case, "system-out").text = _details(r)
    return outcome


def junit_xml(checks, name: str = "mlbench") -> str:
    """The checks (the verdicts frame) as a JUnit XML document (see the module docstring)."""
    root = ET.Element("testsuites", name=name)
    totals = dict.fromkeys((FAILURE, ERROR, SKIPPED), 0)
    for probe, part in checks.groupby("probe", sort=True):
        suite = ET.SubElement(root, "testsuite", name=f"{name}.{probe}")
        outcomes = [_testcase(suite, r) for r in part.itertuples(index=False)]
        counts = {kind: outcomes.count(kind) for kind in totals}
        suite.attrib.update(
            tests=str(len(outcomes)),
            failures=str(counts[FAILURE]),
            errors=str(counts[ERROR]),
            skipped=str(counts[SKIPPED]),
            time="0",
        )
        totals = {kind: totals[kind] + counts[kind] for kind in totals}
    root.attrib.update(
        tests=str(len(checks)),
        failures=str(totals[FAILURE]),
        errors=str(totals[ERROR]),
        skipped=str(totals[SKIPPED]),
        time="0",
    )
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- Prometheus -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gauge:
    """One metric family: its name, help text, the check column it reads, a scale, and whether it has `unit`."""

    name: str
    help: str
    column: str
    scale: float = 1.0
    unit_label: bool = False


GAUGES = (
    Gauge("mlbench_check_value", "The measured figure of a check, in the unit label.", "value", unit_label=True),
    Gauge(
        "mlbench_check_spec_value",
        "The advertised figure the check is judged against, in the unit label.",
        "spec_value",
        unit_label=True,
    ),
    Gauge("mlbench_check_pct_of_spec", "Measured as a percentage of the advertised figure.", "pct_of_spec"),
    Gauge(
        "mlbench_check_reference_value",
        "A published measurement (MAMF) or the baseline's figure, in the unit label.",
        "reference",
        unit_label=True,
    ),
    Gauge("mlbench_check_pct_of_reference", "Measured as a percentage of the reference.", "pct_of_reference"),
    Gauge("mlbench_check_verdict", "The verdict: 0 PASS, 1 INFO, 2 N/A, 3 WARN, 4 INCOMPLETE, 5 FAIL.", "verdict"),
    Gauge("mlbench_check_wrong_elements", "Collectives: elements that differed from the expected result.", "errors"),
    Gauge("mlbench_check_iops", "Storage: IO operations per second.", "iops"),
    Gauge("mlbench_check_latency_p99_seconds", "Storage: 99th percentile latency of one IO.", "lat_us_p99", 1e-6),
    Gauge(
        "mlbench_check_half_peak_bytes",
        "Collectives: the smallest payload reaching half the peak busbw.",
        "half_peak_bytes",
    ),
    Gauge(
        "mlbench_check_small_latency_seconds",
        "Collectives: the time of one call at the smallest payload.",
        "small_latency_us",
        1e-6,
    ),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: list) -> str:
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in pairs) + "}"


def _sample(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ("+Inf" if value > 0 else "-Inf")


def _check_labels(checks) -> list:
    """Per row, its label pairs; rows whose labels collide get an `at` label (and an index if still equal)."""
    base = [[(key, _text(getattr(r, key))) for key in LABELS] for r in checks.itertuples(index=False)]
    keys = [tuple(pairs) for pairs in base]
    repeated = {key for key, n in Counter(keys).items() if n > 1}
    seen: dict = {}
    out = []
    for pairs, key, at in zip(base, keys, checks["at"]):
        if key in repeated:
            pairs = pairs + [("at", _text(at))]
            n = seen[tuple(pairs)] = seen.get(tuple(pairs), 0) + 1
            if n > 1:
                pairs = pairs + [("index", str(n))]
        out.append(pairs)
    return out


def prometheus_text(checks, exit_code: Optional[int] = None, run_ids=()) -> str:
    """The checks as Prometheus text exposition (see the module docstring); every family is a gauge."""
    labels = _check_labels(checks)
    rows = list(checks.itertuples(index=False))
    lines = []
    for gauge in GAUGES:
        samples = []
        for r, pairs in zip(rows, labels):
            raw = getattr(r, gauge.column)
            value = VERDICT_VALUES.get(str(raw)) if gauge.column == "verdict" else _number(raw)
            if value is None:
                continue
            extra = [("unit", _text(r.unit))] if gauge.unit_label else []
            samples.append(f"{gauge.name}{_labels(pairs + extra)} {_sample(value * gauge.scale)}")
        if samples:
            lines += [f"# HELP {gauge.name} {gauge.help}", f"# TYPE {gauge.name} gauge", *samples]
    counts = checks["verdict"].astype(str).value_counts().to_dict() if len(checks) else {}
    lines += ["# HELP mlbench_checks Checks per verdict.", "# TYPE mlbench_checks gauge"]
    lines += [f"mlbench_checks{_labels([('verdict', v)])} {counts.get(v, 0)}" for v in VERDICT_VALUES]
    if exit_code is not None:
        lines += [
            "# HELP mlbench_report_exit_code The report's exit code: 0 no verdict failed, 1 one failed.",
            "# TYPE mlbench_report_exit_code gauge",
            f"mlbench_report_exit_code {int(exit_code)}",
        ]
    if len(run_ids):
        lines += ["# HELP mlbench_run_info The runs the checks come from.", "# TYPE mlbench_run_info gauge"]
        lines += [f"mlbench_run_info{_labels([('run_id', run_id)])} 1" for run_id in sorted(set(map(str, run_ids)))]
    return "\n".join(lines) + "\n"


def write_exports(checks, *, junit=None, prometheus=None, exit_code: Optional[int] = None, run_ids=()) -> list:
    """Write the JUnit and/or Prometheus files asked for (atomically); return their paths."""
    written = []
    if junit is not None:
        written.append(write_atomically(junit, junit_xml(checks)))
    if prometheus is not None:
        written.append(write_atomically(prometheus, prometheus_text(checks, exit_code, run_ids)))
    return written
