"""Fabric checks: the network between nodes, from `fabric` records and the nodes' NIC records.

- `fabric.inter.<op>` (host `*`): the peak busbw over sizes of the collective over every node; with
  NCCL and NICs the registry knows, against the nodes' advertised NIC bandwidth (the lowest node's)
  times the share one rank's busbw stands for (`fabric.plan.nic_share`), relative to the expected
  efficiency (~80%); else INFO.
- `fabric.rail.<op>` (host `*`, device `rail<i>`): each rail's peak, against the NIC figure per rank,
  and FAIL below `threshold` x the median rail (a bad HCA shows as one slow rail).
- `fabric.intra.<op>` (per node): each node alone, against the accelerator's intra-node link as the
  collectives check does, and FAIL below `threshold` x the median node.
- `fabric.node` (per node) and `fabric.link` (per named pair): the pair rounds judged again from the
  pair records with the probe's rules (`fabric.plan.localise`): FAIL for a named node or link, WARN
  for a suspect never re-tested or a pair that was slow once and passed when measured again.
- `fabric.nics` (per node with a NIC record): its fabric ports against the fleet's usual count and
  rate: fewer or slower ports, or ports down, FAIL; other differences WARN.

`threshold` is the probe's (`params.threshold`). Rows about nodes and links carry no `value` (their
figures are in `at`), so the fleet view does not judge them a second time.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Optional

from ... import specs as specs_registry
from ...collectives.plan import above_link_spec
from ...fabric.plan import (
    DEFAULT_THRESHOLD,
    IntraPath,
    PairResult,
    Rounds,
    Stage,
    View,
    localise,
    nic_share,
    node_fabric,
)
from ...sizes import format_bytes
from ..verdicts import Verdict, judge_efficiency, pct
from .judging import Context, Figure, Target, spec_check
from .rows import NODE, CheckRow, Subject, as_number

PROBE = "fabric"
ALL_NODES = "*"


def fabric_checks(frame, ctx: Context) -> list[CheckRow]:
    rows = nic_checks(frame)
    d = frame[frame["probe"] == PROBE]
    if d.empty:
        return rows
    registry = getattr(ctx.registry, "fabric", None) or specs_registry.load_fabric()
    fabric_of = node_fabrics(frame, registry)
    for _run, part in d.groupby("run_id", sort=True):
        settings = Settings.of(part)
        rows += view_rows(part, ctx, settings, fabric_of)
        rows += pair_rows(part, settings, fabric_of)
    return rows


class Settings:
    """What the run's records say about how to judge it."""

    def __init__(self, threshold: float, rounds: Rounds, backend: str, path: IntraPath, ranks_per_node):
        self.threshold = threshold
        self.rounds = rounds
        self.backend = backend
        self.path = path
        self.ranks_per_node = ranks_per_node

    @classmethod
    def of(cls, part) -> "Settings":
        def first(column: str, default):
            if column not in part:
                return default
            values = part[column].dropna()
            return values.iloc[0] if len(values) else default

        rounds = first("params.rounds", Rounds.QUICK.value)
        path = first("params.intra_node_path", IntraPath.HOST.value)
        rpn = as_number(first("params.ranks_per_node", None))
        return cls(
            float(first("params.threshold", DEFAULT_THRESHOLD)),
            Rounds(rounds),
            str(first("params.backend", "")),
            IntraPath(path),
            int(rpn) if rpn else None,
        )

    def expected_of(self, view: View, fabric_of: dict):
        """node -> the busbw one rank should reach in `view` (NIC spec x share x efficiency), or None."""
        share = nic_share(view, self.path, self.ranks_per_node)

        def expected(node: str) -> Optional[float]:
            f = fabric_of.get(node)
            return f.expected_gbps * share if f is not None and f.expected_gbps and share else None

        return expected


# --- NICs --------------------------------------------------------------------------------------------


def _nic_records(frame):
    if "params.check" not in frame:
        return frame.iloc[0:0]
    return frame[(frame["probe"] == "node") & (frame["params.check"] == "nics") & (frame["status"] == "ok")]


def node_fabrics(frame, registry: list) -> dict:
    """host -> fabric.plan.NodeFabric from the latest NIC record of each node."""
    nics = _nic_records(frame)
    if nics.empty:
        return {}
    latest = nics.drop_duplicates("host", keep="last")
    counts = Counter(int(c) for c in latest["metrics.nic_count"].dropna() if c)
    fleet_ports = counts.most_common(1)[0][0] if counts else None
    out = {}
    for r in latest.to_dict("records"):
        out[r["host"]] = node_fabric(
            str(r.get("params.descriptor") or ""), fleet_ports, registry, as_number(r.get("metrics.nic_rate_gbits"))
        )
    return out


def nic_checks(frame) -> list[CheckRow]:
    """`fabric.nics` per node: its fabric ports against the fleet's usual count and rate."""
    nics = _nic_records(frame)
    if nics.empty:
        return []
    latest = nics.drop_duplicates("host", keep="last").to_dict("records")
    shape = Counter(
        (
            _int(r.get("metrics.nic_count")),
            as_number(r.get("metrics.nic_rate_gbits")),
            str(r.get("params.fabric_kind") or ""),
        )
        for r in latest
    )
    (fleet_count, fleet_rate, fleet_kind), _ = shape.most_common(1)[0]
    fleet = len(latest) > 1
    rows = []
    for r in latest:
        count, rate = _int(r.get("metrics.nic_count")), as_number(r.get("metrics.nic_rate_gbits"))
        active, kind = _int(r.get("metrics.nic_active")), str(r.get("params.fabric_kind") or "")
        down = str(r.get("params.down_ports") or "")
        at = f"{str(r.get('params.descriptor') or '')}, {active} active"
        usual = f"the fleet's {_ports(fleet_count, fleet_rate, fleet_kind)}"
        mine = _ports(count, rate, kind)
        if count == 0:
            verdict, reason = (
                (Verdict.FAIL, f"no fabric port found; {usual}")
                if fleet and fleet_count
                else (Verdict.INFO, "no RDMA or Ethernet port found")
            )
        elif active < count:
            verdict, reason = Verdict.FAIL, f"{count - active} of {count} fabric port(s) not active: {down}"
        elif fleet and (kind != fleet_kind or count < fleet_count or (rate or 0) < (fleet_rate or 0)):
            verdict, reason = Verdict.FAIL, f"{mine}: fewer or slower ports than {usual}"
        elif fleet and (count, rate) != (fleet_count, fleet_rate):
            verdict, reason = Verdict.WARN, f"{mine}: differs from {usual}"
        elif fleet:
            verdict, reason = Verdict.PASS, f"{mine} active, as the fleet"
        else:
            verdict, reason = Verdict.INFO, f"inventory: {mine} active"
        rows.append(
            Subject(r["host"], NODE, "node", "").row(
                probe=PROBE, check="fabric.nics", at=at, verdict=verdict, reason=reason
            )
        )
    return rows


def _ports(count: int, rate: Optional[float], kind: str) -> str:
    return f"{count} x {f'{rate:g} Gb/s' if rate else '? Gb/s'} {kind}"


def _int(value) -> int:
    number = as_number(value)
    return int(number) if number is not None else 0


# --- inter, rail, intra --------------------------------------------------------------------------------


def _peaks(part, keys: list):
    """Per key: the peak busbw over sizes, the size and the slowest rank's node there, wrong elements."""
    ok = part[part["status"] == "ok"].copy()
    if ok.empty:
        return []
    ok["busbw"] = ok["metrics.busbw_gbps"].astype(float)
    best = ok.loc[ok.groupby(keys, dropna=False)["busbw"].idxmax()]
    wrong = (
        part.groupby(keys, dropna=False)["metrics.errors"].sum(min_count=1).to_dict()
        if "metrics.errors" in part
        else {}
    )
    out = []
    for r in best.to_dict("records"):
        key = tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]
        out.append((key, r, as_number(wrong.get(key)) or 0))
    return out


def view_rows(part, ctx: Context, settings: Settings, fabric_of: dict) -> list[CheckRow]:
    rows = []
    views = part["params.view"] if "params.view" in part else None
    if views is None:
        return rows
    nodes = _run_nodes(part)
    for view in (View.INTER, View.RAIL, View.INTRA):
        d = (
            part[(views == view.value) & part["params.finding"].isna()]
            if "params.finding" in part
            else part[views == view.value]
        )
        if d.empty:
            continue
        keys = ["params.op"] + {View.INTER: [], View.RAIL: ["params.rail"], View.INTRA: ["params.node"]}[view]
        peaks = _peaks(d, keys)
        medians = {}
        for _key, r, _ in peaks:
            medians.setdefault(r["params.op"], []).append(float(r["busbw"]))
        for _key, r, wrong in peaks:
            op = r["params.op"]
            row = _judge_view(ctx, settings, fabric_of, nodes, view, r)
            middle = _median(medians[op])
            if view != View.INTER and len(medians[op]) > 1 and r["busbw"] < settings.threshold * middle:
                what = f"rail {_label(r.get('params.rail'))}" if view == View.RAIL else f"node {r['params.node']}"
                row = _with(
                    row,
                    Verdict.FAIL,
                    f"{what}: {r['busbw']:.4g} GB/s is below {settings.threshold:.0%} of the "
                    f"median {middle:.4g} GB/s; {row.reason}",
                )
            if wrong:
                row = _with(row, Verdict.FAIL, f"{int(wrong)} wrong element(s): bad data; {row.reason}")
            rows.append(row)
    return rows


def _label(value) -> str:
    number = as_number(value)
    return str(int(number)) if number is not None else str(value)


def _with(row: CheckRow, verdict: Verdict, reason: str) -> CheckRow:
    from dataclasses import replace

    return replace(row, verdict=verdict, reason=reason)


def _median(values: list) -> float:
    from ...stats import median

    return median(values) if values else math.nan


def _run_nodes(part) -> list:
    names = set()
    for column in ("params.node", "params.node_a", "params.node_b", "metrics.slowest_host"):
        if column in part:
            names |= {str(v) for v in part[column].dropna()}
    return sorted(names)


def _judge_view(ctx: Context, settings: Settings, fabric_of: dict, nodes: list, view: View, r: dict) -> CheckRow:
    op, value = r["params.op"], float(r["busbw"])
    at = (
        f"{format_bytes(r['params.bytes'])}, {_label(r.get('params.group_size'))} ranks, slowest rank on "
        f"{r.get('metrics.slowest_host')}"
    )
    check = f"fabric.{view.value}.{op}"
    if view == View.INTRA:
        subject = Subject(str(r["params.node"]), NODE, r.get("device_type"), r.get("device_name"))
        spec = ctx.spec(subject.device_name)
        link_gbps = spec.number("link_gbps") if spec else None
        world = int(as_number(r.get("params.group_size")) or 1)
        target = Target(
            "busbw",
            link_gbps,
            spec.expected_eff("busbw") if spec else None,
            above_line_rate_ok=not above_link_spec(op, value, world, link_gbps),
        )
        return spec_check(ctx, subject, PROBE, check, Figure(value, "GB/s", at), target)
    device = f"rail{_label(r.get('params.rail'))}" if view == View.RAIL else NODE
    subject = Subject(ALL_NODES, device, r.get("device_type"), r.get("device_name"))
    share = nic_share(view, settings.path, settings.ranks_per_node)
    known = [fabric_of.get(n) for n in nodes]
    measured = dict(probe=PROBE, check=check, value=value, unit="GB/s", at=at)
    if settings.backend != "nccl" or not share or not known or not all(f and f.node_gbps for f in known):
        why = (
            "over gloo the traffic takes the host's TCP path: no NIC figure applies"
            if settings.backend != "nccl"
            else "no NIC record for every node, or their NICs are not in the fabric registry (add a row with --specs)"
        )
        return subject.row(**measured, verdict=Verdict.INFO, reason=f"informational: {why}")
    lowest = min(known, key=lambda f: f.node_gbps)
    spec_gbps = lowest.node_gbps * share
    expected = ctx.thresholds.expected("busbw", lowest.expected_eff)
    verdict, reason = judge_efficiency(value, spec_gbps, expected, ctx.thresholds, "GB/s", above_line_rate_ok=True)
    per = "per node" if share == 1 else f"per node / {settings.ranks_per_node} ranks"
    return subject.row(
        **measured,
        spec=lowest.spec_key or "",
        spec_value=spec_gbps,
        pct_of_spec=pct(value, spec_gbps),
        expected_pct=100 * expected,
        verdict=verdict,
        reason=f"{reason}; {lowest.spec_name}: {lowest.node_gbps:g} GB/s {per}",
    )


# --- the pair rounds ---------------------------------------------------------------------------------


def pair_results(part) -> tuple:
    """([PairResult], every node) from the pair records of one run (findings left out)."""
    d = part[part["params.view"] == View.PAIR.value] if "params.view" in part else part.iloc[0:0]
    if "params.finding" in d:
        d = d[d["params.finding"].isna()]
    if d.empty or "params.node_a" not in d:
        return [], []
    results, nodes = [], set()
    for r in d.to_dict("records"):
        a, b = r.get("params.node_a"), r.get("params.node_b")
        if not isinstance(a, str) or not isinstance(b, str):
            continue
        gbps = as_number(r.get("metrics.busbw_gbps")) if r["status"] == "ok" else None
        stage = r.get("params.stage")
        stage = (
            Stage(stage)
            if isinstance(stage, str)
            else (Stage.FIRST if as_number(r.get("params.round")) == 1 else Stage.RETEST)
        )
        results.append(
            PairResult(stage, int(as_number(r.get("params.round")) or 1), a, b, gbps if gbps is not None else math.nan)
        )
        nodes |= {a, b}
        if isinstance(r.get("params.bye"), str):
            nodes.add(r["params.bye"])
    return results, sorted(nodes)


def pair_rows(part, settings: Settings, fabric_of: dict) -> list[CheckRow]:
    results, nodes = pair_results(part)
    if not results:
        return []
    expected_of = settings.expected_of(View.PAIR, fabric_of) if settings.backend == "nccl" else (lambda node: None)
    found = localise(results, nodes, settings.rounds, settings.threshold, expected_of)
    per_node: dict = {}
    for r in results:
        for node in r.pair:
            per_node.setdefault(node, []).append(r)
    rows = []
    for node in nodes:
        tests = per_node.get(node, [])
        finite = [t for t in tests if math.isfinite(t.busbw_gbps)]
        low = min(finite, key=lambda t: t.busbw_gbps) if finite else None
        at = f"{len(tests)} pair test(s)" + (
            f", lowest {low.busbw_gbps:.4g} GB/s with {low.b if low.a == node else low.a}" if low else ""
        )
        if node in found.nodes:
            verdict, reason = Verdict.FAIL, f"slow node: {found.nodes[node]}"
        elif node in found.suspects:
            verdict, reason = Verdict.WARN, f"suspect: {found.suspects[node]}"
        elif not tests:
            verdict, reason = Verdict.INCOMPLETE, "never paired (rested in round 1, no node passed to re-test it with)"
        else:
            verdict, reason = (
                Verdict.PASS,
                (
                    f"every pair above the floor ({settings.threshold:.0%} of the median pair "
                    f"{found.reference_gbps:.4g} GB/s)"
                    if not _in_link(node, found)
                    else "passes with other nodes; see its named link"
                ),
            )
        rows.append(
            Subject(node, NODE, "node", "").row(probe=PROBE, check="fabric.node", at=at, verdict=verdict, reason=reason)
        )
    for (a, b), why in sorted(found.links.items()):
        rows.append(
            Subject(f"{a}+{b}", NODE, "node", "").row(
                probe=PROBE, check="fabric.link", at="pair", verdict=Verdict.FAIL, reason=f"slow link: {why}"
            )
        )
    for (a, b), why in sorted(found.transient.items()):
        rows.append(
            Subject(f"{a}+{b}", NODE, "node", "").row(
                probe=PROBE, check="fabric.link", at="pair", verdict=Verdict.WARN, reason=f"transient: {why}"
            )
        )
    return rows


def _in_link(node: str, found) -> bool:
    return any(node in pair for pair in found.links)
