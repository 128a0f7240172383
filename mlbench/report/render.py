"""Rendering: the same sections as Markdown (printed and written), CSV (every check) and HTML.

A `Section` is a title, a table (already formatted as text cells) and notes. Markdown is
deterministic (no time stamps: the records carry them), so it can be compared with golden files.
Long tables keep their worst rows (by verdict, then value) and say how many more are in the CSV.
The HTML page is self-contained: plots are embedded as base64 PNG.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..sizes import format_bytes
from .verdicts import SEVERITY, Verdict

MAX_ROWS = 40
OVERALL_ORDER = (Verdict.FAIL, Verdict.INCOMPLETE, Verdict.WARN)  # the overall verdict: the first one present
SUMMARY_ORDER = (Verdict.FAIL, Verdict.WARN, Verdict.INCOMPLETE, Verdict.INFO, Verdict.PASS)  # INFO only when some
QUIET = [v.value for v in Verdict if not v.needs_attention]  # left out of "Verdicts needing attention"


@dataclass
class Section:
    title: str
    header: list
    rows: list  # lists of strings
    notes: list = field(default_factory=list)


def fmt(value, digits: int = 4) -> str:
    """A number with `digits` significant digits; blank for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
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
        ["_order", "_value", "host", "device", "check"], kind="stable", na_position="first")


def _limit(part, notes: list, what: str = "rows"):
    """At most MAX_ROWS rows, the worst first when some are dropped."""
    if len(part) <= MAX_ROWS:
        return part
    notes.append(f"{len(part) - MAX_ROWS} more {what} in summary.csv (the worst {MAX_ROWS} are shown).")
    return _worst_first(part).head(MAX_ROWS)


def summary_lines(frame, checks, warnings, exit_code: int) -> list[str]:
    counts = checks["verdict"].value_counts().to_dict() if len(checks) else {}
    overall = next((v for v in OVERALL_ORDER if counts.get(v)), Verdict.PASS)
    words = ", ".join(f"{counts.get(v, 0)} {v}" for v in SUMMARY_ORDER if v != Verdict.INFO or counts.get(v))
    runs = sorted(frame["run_id"].astype(str).unique())
    devices = frame[["host", "device_index"]].drop_duplicates().shape[0]
    probes = []
    for probe, part in frame.groupby("probe", sort=True):
        states = ", ".join(f"{s} {n}" for s, n in sorted(part["status"].value_counts().items()))
        probes.append(f"{probe} {len(part)} ({states})")
    lines = [f"**Verdict: {overall}** (exit {exit_code}): {words}.", "",
             f"Records: {len(frame)} from {frame['file'].nunique()} file(s); {frame['host'].nunique()} host(s), "
             f"{devices} device(s); run(s): {', '.join(runs[:5])}{' ...' if len(runs) > 5 else ''}.",
             f"Probes: {'; '.join(probes)}."]
    if warnings:
        lines.append(f"Input warnings: {len(warnings)} (listed at the end).")
    return lines


def sections(checks, fleet, warnings) -> list[Section]:
    out = []
    bad = checks[~checks["verdict"].isin(QUIET)]
    notes = [] if len(bad) else ["Every check passes."]
    shown = _limit(_worst_first(bad), notes, "non-passing checks") if len(bad) else bad
    out.append(Section("Verdicts needing attention", ["verdict", "host", "device", "check", "measured", "at", "reason"],
                       [[r.verdict, r.host, r.device, r.check, _measured(r), text(r.at), text(r.reason)]
                        for r in shown.itertuples(index=False)], notes))
    out += [_node(checks), _mamf(checks), _membw(checks), _collectives(checks), _storage(checks)]
    out.append(_fleet(fleet))
    if warnings:
        out.append(Section("Input warnings", ["warning"], [[w] for w in warnings]))
    return [s for s in out if s.rows or s.notes]


def _measured(r) -> str:
    return f"{fmt(r.value)} {r.unit}" if r.unit and r.value is not None and r.value == r.value else ""


def _probe_rows(checks, probe):
    part = checks[checks["probe"] == probe]
    notes: list = []
    return _limit(part, notes), notes


def _node(checks) -> Section:
    part, notes = _probe_rows(checks, "node")
    rows = [[r.host, r.device, r.check.split(".", 1)[-1], _measured(r), text(r.at), r.verdict, text(r.reason)]
            for r in part.itertuples(index=False)]
    if rows:
        notes.append("Sizing rules: >= 3 CPU cores per GPU (2-3 loader workers + 1), host memory >= the "
                     "GPUs' memory, disk below 80% full (90% fails); GPU inventory and state from NVML when installed.")
    return Section("Node sanity", ["host", "dev", "check", "measured", "at", "verdict", "reason"], rows, notes)


def _mamf(checks) -> Section:
    part, notes = _probe_rows(checks, "mamf")
    rows = [[r.host, r.device, text(r.device_name), r.check.split(".", 1)[-1], fmt(r.value), text(r.at),
             fmt(r.spec_value), fmt_pct(r.pct_of_spec), fmt_pct(r.expected_pct), fmt(r.reference),
             fmt_pct(r.pct_of_reference), r.verdict]
            for r in part.itertuples(index=False)]
    if rows:
        notes.append("Best median TFLOPS per device; % of the dense peak and of the published MAMF (mamf-finder); "
                     "'normal' is the expected efficiency the verdict is relative to.")
    return Section("MAMF (matmul TFLOPS)", ["host", "dev", "device", "dtype", "TFLOPS", "shape", "peak", "% peak",
                                            "normal", "published", "% published", "verdict"], rows, notes)


def _membw(checks) -> Section:
    part, notes = _probe_rows(checks, "membw")
    rows = [[r.host, r.device, text(r.device_name), r.check, fmt(r.value), text(r.at), fmt(r.spec_value),
             fmt_pct(r.pct_of_spec), fmt_pct(r.expected_pct), r.verdict] for r in part.itertuples(index=False)]
    if rows:
        notes.append("hbm: best device-local GB/s counting bytes read + written (like the HBM spec); "
                     "h2d/d2h/p2p: bytes moved once, against the host link / the intra-node link per direction.")
    return Section("Memory bandwidth", ["host", "dev", "device", "check", "GB/s", "at", "spec GB/s", "% spec", "normal",
                                        "verdict"], rows, notes)


def _collectives(checks) -> Section:
    part, notes = _probe_rows(checks, "collectives")
    rows = [[r.host, r.check.split(".", 1)[-1], fmt(r.value), text(r.at), fmt_bytes(r.half_peak_bytes),
             fmt(r.small_latency_us), fmt(r.spec_value), fmt_pct(r.pct_of_spec), fmt(r.errors), r.verdict]
            for r in part.itertuples(index=False)]
    if rows:
        notes.append("Peak busbw over sizes (nccl-tests convention); 'half at' is the smallest size reaching half the "
                     "peak; latency is at the smallest size; link spec per direction.")
    return Section("Collectives", ["host", "op", "peak busbw GB/s", "at", "half at", "small-size latency us",
                                   "link GB/s", "% link", "wrong", "verdict"], rows, notes)


def _storage(checks) -> Section:
    part, notes = _probe_rows(checks, "diskio")
    rows = [[r.host, r.check.split(".")[1] if "." in r.check else r.check,
             "direct" if r.direct else ("buffered" if r.direct is False else ""),
             fmt(r.value), fmt(r.iops, 3), fmt(r.lat_us_p99), text(r.at), r.verdict]
            for r in part.itertuples(index=False)]
    return Section("Storage", ["host", "mode", "IO", "GB/s", "IOPS", "p99 latency us", "at", "verdict"], rows, notes)


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
        rows.append([check, device_name, str(part["host"].nunique()), fmt(fm.iloc[0]) if len(fm) else "",
                     fmt(part["ceiling"].min()), fmt(part["ceiling"].max()),
                     (f"{worst_spread['host']} {fmt_pct(worst_spread['spread_pct'])}"
                      if worst_spread["devices"] > 1 else ""),
                     ", ".join(suspects["host"].astype(str).head(10)) + (" ..." if len(suspects) > 10 else "")])
    if not rows:
        return Section("Fleet", [], [])
    notes.append("Node ceiling = its slowest device; suspects: ceiling more than the fleet margin below the fleet "
                 "median (robust z in fleet.csv); widest spread = (best - slowest) / best inside one node.")
    return Section("Fleet", ["check", "device", "nodes", "fleet median", "lowest ceiling", "highest ceiling",
                             "widest spread", "suspect nodes"], rows, notes)


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
            lines += ([note] if lines[-1] == "" else ["", note])
    return "\n".join(lines) + "\n"


def html_page(title: str, summary: list, secs: list, images: list) -> str:
    """One self-contained page: the same sections, then the plots embedded as data URIs."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}"
             ".FAIL{background:#f8c8c8}.WARN{background:#fbe8b0}.INCOMPLETE{background:#dde}.INFO{background:#e8eef8}"
             ".PASS{background:#d8f0d8}"
             "img{max-width:100%}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line).replace('**', '')}</p>" for line in summary if line]
    for s in secs:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.rows:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in s.header) + "</tr>")
            for r in s.rows:
                parts.append("<tr>" + "".join(f"<td class='{html.escape(c)}'>{html.escape(str(c))}</td>"
                                              if c in SEVERITY else f"<td>{html.escape(str(c))}</td>" for c in r)
                             + "</tr>")
            parts.append("</table>")
        parts += [f"<p>{html.escape(n)}</p>" for n in s.notes]
    if images:
        parts.append("<h2>Plots</h2>")
        for path in images:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(Path(path).stem)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(Path(path).name)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
