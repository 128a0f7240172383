"""Rendering: the same sections as Markdown (printed and written), CSV (every check) and HTML.

A `Section` is a title, a table (already formatted as text cells) and notes. The page reads: the
verdict line (what was judged, what is informational), the headline (`headline`: the figures a buyer
asks for, per node and for the fleet, with % of spec and verdict), what needs attention, then the
details: one section per probe (`DETAIL_SECTIONS`: a function of the verdicts frame returning a
Section; a probe registers its section there), the fleet view, the checks not measured here (N/A,
with the reason: not verdicts) and input warnings.

Markdown is deterministic (no time stamps: the records carry them), so it can be compared with
golden files. Long tables keep their worst rows (by verdict, then value) and say how many more are
in the CSV. The HTML page (`htmlpage`) is one self-contained file: plots embedded as base64 PNG.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..sizes import format_bytes
from .headline import Headline, headline
from .verdicts import SEVERITY, Verdict, overall

MAX_ROWS = 40
SUMMARY_ORDER = (Verdict.FAIL, Verdict.WARN, Verdict.INCOMPLETE, Verdict.PASS)  # the judged verdicts, counted
QUIET = [v.value for v in Verdict if not v.needs_attention]  # left out of "Needs attention"
ATTENTION = "Needs attention"


@dataclass
class Section:
    title: str
    header: list
    rows: list  # lists of strings
    notes: list = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The section's id on the HTML page: its title in lower case, words joined by '-'."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


def fmt(value, digits: int = 4) -> str:
    """A number with `digits` significant digits; blank for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def text(value) -> str:
    """A text cell; blank for missing (pandas turns None into NaN)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def fmt_pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}%"


def fmt_bytes(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format_bytes(value)


def _worst_first(part):
    order = part["verdict"].map(SEVERITY).fillna(9)
    return part.assign(_order=order, _value=part["value"].astype(float)).sort_values(
        ["_order", "_value", "host", "device", "check"], kind="stable", na_position="first"
    )


def _limit(part, notes: list, what: str = "rows"):
    """At most MAX_ROWS rows, the worst first when some are dropped."""
    if len(part) <= MAX_ROWS:
        return part
    notes.append(f"{len(part) - MAX_ROWS} more {what} in summary.csv (the worst {MAX_ROWS} are shown).")
    return _worst_first(part).head(MAX_ROWS)


def overall_verdict(checks) -> Verdict:
    """The page's verdict (`verdicts.overall` of the checks; INFO when nothing was judged or checked)."""
    found = overall(checks["verdict"]) if len(checks) else Verdict.NA
    return Verdict.INFO if found == Verdict.NA else found


def verdict_words(checks) -> str:
    """ "N judged: a FAIL, b WARN, c INCOMPLETE, d PASS; M informational[; K not measured]"."""
    counts = checks["verdict"].value_counts().to_dict() if len(checks) else {}
    judged = sum(counts.get(v, 0) for v in SUMMARY_ORDER)
    words = (
        f"{judged} judged: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in SUMMARY_ORDER)
        if judged
        else "nothing judged (no spec or floor to judge against)"
    )
    words += f"; {counts.get(Verdict.INFO, 0)} informational"
    if counts.get(Verdict.NA):
        words += f"; {counts[Verdict.NA]} not measured (N/A)"
    return words


def summary_lines(frame, checks, warnings, exit_code: int) -> list[str]:
    runs = sorted(frame["run_id"].astype(str).unique())
    devices = frame[["host", "device_index"]].drop_duplicates().shape[0]
    probes = []
    for probe, part in frame.groupby("probe", sort=True):
        states = ", ".join(f"{s} {n}" for s, n in sorted(part["status"].value_counts().items()))
        probes.append(f"{probe} {len(part)} ({states})")
    lines = [
        f"**Verdict: {overall_verdict(checks)}** (exit {exit_code}): {verdict_words(checks)}.",
        "",
        f"Records: {len(frame)} from {frame['file'].nunique()} file(s); {frame['host'].nunique()} host(s), "
        f"{devices} device(s); run(s): {', '.join(runs[:5])}{' ...' if len(runs) > 5 else ''}.",
        f"Probes: {'; '.join(probes)}.",
    ]
    if warnings:
        lines.append(f"Input warnings: {len(warnings)} (listed at the end).")
    return lines


def sections(checks, fleet, warnings) -> list[Section]:
    """Every section of the page, in order (see the module docstring); empty ones left out."""
    verdicts = checks[checks["verdict"].ne(Verdict.NA)]
    out = headline_sections(headline(checks)) if len(checks) else []
    out.append(_attention(verdicts))
    out += [section(verdicts) for section in DETAIL_SECTIONS]
    out.append(_fleet(fleet))
    out.append(_not_measured(checks))
    if warnings:
        out.append(Section("Input warnings", ["warning"], [[w] for w in warnings]))
    return [s for s in out if s.rows or s.notes]


def _attention(checks) -> Section:
    bad = checks[~checks["verdict"].isin(QUIET)]
    notes = [] if len(bad) else [_nothing_to_attend(checks)]
    shown = _limit(_worst_first(bad), notes, "checks needing attention") if len(bad) else bad
    return Section(
        ATTENTION,
        ["verdict", "host", "device", "check", "measured", "at", "reason"],
        [
            [r.verdict, r.host, r.device, r.check, _measured(r), text(r.at), text(r.reason)]
            for r in shown.itertuples(index=False)
        ],
        notes,
    )


def _nothing_to_attend(checks) -> str:
    counts = checks["verdict"].value_counts().to_dict() if len(checks) else {}
    passed, info = counts.get(Verdict.PASS, 0), counts.get(Verdict.INFO, 0)
    if not passed:
        return (
            f"Nothing was judged: {info} informational figure(s), none with a spec or a floor to judge it "
            "against (set floors with --min CHECK=VALUE)."
        )
    return f"Nothing needs attention: {passed} judged check(s) pass" + (
        f"; {info} figure(s) are informational (nothing to judge them against)." if info else "."
    )


def _line_cells(line) -> tuple:
    measured = (
        "not measured"
        if line.verdict is None
        else (f"{fmt(line.value)} {line.unit}".strip() if line.value is not None else "")
    )
    return measured, fmt_pct(line.pct_of_spec), text(line.verdict)


def headline_sections(h: Headline) -> list[Section]:
    """The headline table (the fleet's line per figure with several nodes, else the node's) and, with several
    nodes, the figures per node (worst nodes first)."""
    fleet = len(h.hosts) > 1
    rows = [
        [
            line.label,
            f"fleet ({len(h.hosts)} nodes)" if fleet and line.scope == "fleet" else line.scope,
            *_line_cells(line),
            line.detail,
        ]
        for line in h.summary
    ]
    notes = [
        "Per node: the lowest of its devices (what every device of the node delivers)"
        + ("; fleet: the median node, with the lowest and the highest." if fleet else ".")
        + " INFO: measured, nothing to judge it against; not measured: this run has no such figure."
        + (
            " MFU: the training step's TFLOPS per GPU; its % of spec is the MFU."
            if any(label.startswith("MFU") for label in h.labels)
            else ""
        )
    ]
    out = [Section("Headline", ["figure", "where", "measured", "% of spec", "verdict", "basis"], rows, notes)]
    if fleet:
        out.append(_headline_per_node(h))
    return out


def _node_cell(line) -> str:
    """ "794.5 (80.3%) PASS": a node's figure, its % of spec and verdict; blank when the node has none."""
    if line is None:
        return ""
    pct = f"({fmt_pct(line.pct_of_spec)})" if line.pct_of_spec is not None else ""
    return " ".join(c for c in (fmt(line.value), pct, text(line.verdict)) if c)


def _headline_per_node(h: Headline) -> Section:
    units = {
        label: next((line.unit for (_, lab), line in h.per_node.items() if lab == label and line.unit), "")
        for label in h.labels
    }
    labels = [label for label in h.labels if any(lab == label for _, lab in h.per_node)]
    rows = []
    for host in h.hosts:
        lines = [h.per_node.get((host, label)) for label in labels]
        verdict = h.node_verdicts.get(host, Verdict.INFO)
        cells = [_node_cell(line) for line in lines]
        rows.append((SEVERITY.get(verdict, 9), host, [host, *cells, text(verdict)]))
    rows.sort(key=lambda r: (r[0], r[1]))
    notes = []
    if len(rows) > MAX_ROWS:
        notes.append(f"{len(rows) - MAX_ROWS} more nodes in summary.csv (the worst {MAX_ROWS} are shown).")
    header = ["node"] + [f"{label}, {units[label]}" if units[label] else label for label in labels] + ["node verdict"]
    notes.append("Each figure with its % of spec and verdict; the node verdict counts every check of the node.")
    return Section("Headline per node", header, [r[2] for r in rows[:MAX_ROWS]], notes)


def _measured(r) -> str:
    return f"{fmt(r.value)} {r.unit}" if r.unit and r.value is not None and r.value == r.value else ""


def _probe_rows(checks, probe):
    part = checks[checks["probe"] == probe]
    notes: list = []
    return _limit(part, notes), notes


def _node(checks) -> Section:
    part, notes = _probe_rows(checks, "node")
    rows = [
        [r.host, r.device, r.check.split(".", 1)[-1], _measured(r), text(r.at), r.verdict, text(r.reason)]
        for r in part.itertuples(index=False)
    ]
    if rows:
        notes.append(
            "Sizing rules: >= 3 CPU cores per GPU (2-3 loader workers + 1), host memory >= the "
            "GPUs' memory, disk below 80% full (90% fails); GPU inventory and state from NVML when installed."
        )
    return Section("Node sanity", ["host", "dev", "check", "measured", "at", "verdict", "reason"], rows, notes)


def _mamf(checks) -> Section:
    part, notes = _probe_rows(checks, "mamf")
    rows = [
        [
            r.host,
            r.device,
            text(r.device_name),
            r.check.split(".", 1)[-1],
            fmt(r.value),
            text(r.at),
            fmt(r.spec_value),
            fmt_pct(r.pct_of_spec),
            fmt_pct(r.expected_pct),
            fmt(r.reference),
            fmt_pct(r.pct_of_reference),
            r.verdict,
        ]
        for r in part.itertuples(index=False)
    ]
    if rows:
        notes.append(
            "Best median TFLOPS per device; % of the dense peak and of the published MAMF (mamf-finder); "
            "'normal' is the expected efficiency the verdict is relative to."
        )
    return Section(
        "MAMF (matmul TFLOPS)",
        [
            "host",
            "dev",
            "device",
            "dtype",
            "TFLOPS",
            "shape",
            "peak",
            "% peak",
            "normal",
            "published",
            "% published",
            "verdict",
        ],
        rows,
        notes,
    )


def _membw(checks) -> Section:
    part, notes = _probe_rows(checks, "membw")
    rows = [
        [
            r.host,
            r.device,
            text(r.device_name),
            r.check,
            fmt(r.value),
            text(r.at),
            fmt(r.spec_value),
            fmt_pct(r.pct_of_spec),
            fmt_pct(r.expected_pct),
            r.verdict,
        ]
        for r in part.itertuples(index=False)
    ]
    if rows:
        notes.append(
            "hbm: best device-local GB/s counting bytes read + written (like the HBM spec); "
            "h2d/d2h/p2p: bytes moved once, against the host link / the intra-node link per direction."
        )
    return Section(
        "Memory bandwidth",
        ["host", "dev", "device", "check", "GB/s", "at", "spec GB/s", "% spec", "normal", "verdict"],
        rows,
        notes,
    )


def _collectives(checks) -> Section:
    part, notes = _probe_rows(checks, "collectives")
    rows = [
        [
            r.host,
            r.check.split(".", 1)[-1],
            fmt(r.value),
            text(r.at),
            fmt_bytes(r.half_peak_bytes),
            fmt(r.small_latency_us),
            fmt(r.spec_value),
            fmt_pct(r.pct_of_spec),
            fmt(r.errors),
            r.verdict,
        ]
        for r in part.itertuples(index=False)
    ]
    if rows:
        notes.append(
            "Peak busbw over sizes (nccl-tests convention); 'half at' is the smallest size reaching half the "
            "peak; latency is at the smallest size; link spec per direction."
        )
    return Section(
        "Collectives",
        [
            "host",
            "op",
            "peak busbw GB/s",
            "at",
            "half at",
            "small-size latency us",
            "link GB/s",
            "% link",
            "wrong",
            "verdict",
        ],
        rows,
        notes,
    )


def _storage(checks) -> Section:
    part, notes = _probe_rows(checks, "diskio")
    rows = [
        [
            r.host,
            r.check.split(".")[1] if "." in r.check else r.check,
            "direct" if r.direct else ("buffered" if r.direct is False else ""),
            fmt(r.value),
            fmt(r.iops, 3),
            fmt(r.lat_us_p99),
            text(r.at),
            r.verdict,
        ]
        for r in part.itertuples(index=False)
    ]
    return Section("Storage", ["host", "mode", "IO", "GB/s", "IOPS", "p99 latency us", "at", "verdict"], rows, notes)


def _training(checks) -> Section:
    part, notes = _probe_rows(checks, "train")
    rows = [
        [
            r.host,
            r.device,
            r.check.split(".", 1)[-1],
            fmt(r.value),
            text(r.at),
            fmt(r.spec_value),
            fmt_pct(r.pct_of_spec),
            fmt_pct(r.expected_pct),
            r.verdict,
            text(r.reason),
        ]
        for r in part.itertuples(index=False)
    ]
    if rows:
        notes.append(
            "TFLOPS per device from the analytic FLOP count (6 x parameters x tokens + attention); its % of "
            "the dense peak is the MFU, judged against the part's expected MFU for the preset."
        )
    return Section(
        "Training step",
        ["host", "dev", "model", "TFLOPS", "at", "peak", "MFU", "expected", "verdict", "reason"],
        rows,
        notes,
    )


def _burn(checks) -> Section:
    part, notes = _probe_rows(checks, "burn")
    rows = [
        [r.host, r.device, text(r.device_name), fmt(r.value), text(r.at), r.verdict, text(r.reason)]
        for r in part.itertuples(index=False)
    ]
    if rows:
        notes.append(
            "Deterministic matmuls compared bit for bit with the device's first result and with its siblings "
            "of the same model; memory patterns; error counters before and after."
        )
    return Section("Burn-in", ["host", "dev", "device", "TFLOPS", "at", "verdict", "reason"], rows, notes)


# The detail sections, in page order: each a function (verdicts frame, N/A rows left out) -> Section; a
# section with no rows and no notes is left out. A probe's section is registered by adding its function here.
def _telemetry(checks) -> Section:
    from .telemetry import telemetry_section

    return telemetry_section(checks)


def _fabric(checks) -> Section:
    from .fabric_view import section

    return section(checks)


DETAIL_SECTIONS = [_node, _mamf, _membw, _collectives, _fabric, _storage, _training, _burn, _telemetry]


def _not_measured(checks) -> Section:
    part = checks[checks["verdict"].eq(Verdict.NA)]
    rows = [[r.host, r.device, r.check, text(r.reason)] for r in part.itertuples(index=False)]
    notes = ["Not verdicts: checks that cannot run on this device (left out of the counts and of summary.csv)."]
    return Section("Not measured", ["host", "device", "check", "why"], rows, notes if rows else [])


def _fleet(fleet) -> Section:
    if fleet is None or fleet.empty:
        return Section("Fleet", [], [])
    notes = []
    rows = []
    for (check, device_name), part in fleet.groupby(["check", "device_name"], sort=True):
        if part["fleet_median"].isna().all() and not (part["devices"] > 1).any():
            continue  # one node with one device: nothing to compare
        fm = part["fleet_median"].dropna()
        suspects = part[part["suspect"]]
        worst_spread = part.sort_values(["spread_pct", "host"], ascending=[False, True]).iloc[0]
        rows.append(
            [
                check,
                device_name,
                str(part["host"].nunique()),
                fmt(fm.iloc[0]) if len(fm) else "",
                fmt(part["ceiling"].min()),
                fmt(part["ceiling"].max()),
                (
                    f"{worst_spread['host']} {fmt_pct(worst_spread['spread_pct'])}"
                    if worst_spread["devices"] > 1
                    else ""
                ),
                ", ".join(suspects["host"].astype(str).head(10)) + (" ..." if len(suspects) > 10 else ""),
            ]
        )
    if not rows:
        return Section("Fleet", [], [])
    notes.append(
        "Node ceiling = its slowest device; suspects: ceiling more than the fleet margin below the fleet "
        "median (robust z in fleet.csv); widest spread = (best - slowest) / best inside one node."
    )
    return Section(
        "Fleet",
        [
            "check",
            "device",
            "nodes",
            "fleet median",
            "lowest ceiling",
            "highest ceiling",
            "widest spread",
            "suspect nodes",
        ],
        rows,
        notes,
    )


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(title: str, summary: list, secs: list) -> str:
    lines = [f"# {title}", ""] + summary
    for s in secs:
        lines += ["", f"## {s.title}", ""]
        if s.rows:
            lines.append("| " + " | ".join(s.header) + " |")
            lines.append("|" + "|".join("---" for _ in s.header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in s.rows]
        for note in s.notes:
            lines += [note] if lines[-1] == "" else ["", note]
    return "\n".join(lines) + "\n"


def html_page(title: str, summary: list, secs: list, images: list, verdict=None) -> str:
    """One self-contained page (`htmlpage.page`): banner, navigation, sortable tables, plots embedded."""
    from .htmlpage import page

    return page(title, summary, secs, images, verdict)
