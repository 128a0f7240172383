"""Collective checks: per job (host, run, world size, backend) and op, the peak busbw over sizes.

Per size the slowest rank's busbw counts, the better of in-place and out-of-place; with it the
smallest size reaching half the peak, the latency at the smallest size (latency-mode records when
there are some) and the wrong-element count. Within a node busbw is judged against `link_gbps`; a
figure above what the links carry is suspect by the probe's own rule (`collectives.plan.above_link_spec`:
an all_reduce summed in the switch, NVLS/SHARP, may exceed the link figure up to 2(n-1)/(n+1) of it);
across nodes the NIC is not in the registry: INFO unless a floor is set (`busbw.<op>`).
"""

from __future__ import annotations

from dataclasses import replace

from ...collectives.plan import above_link_spec
from ...sizes import format_bytes
from ..verdicts import Verdict, judge_minimum
from .judging import NO_RECORD, Context, Figure, Target, incomplete_check, no_ok_reasons, spec_check
from .rows import NODE, CheckRow, Subject, as_number, count_text

KEYS = ["host", "run_id", "params.world_size", "params.backend", "params.op"]
ACROSS_NODES = ", across nodes"  # the end of `at` of a collective that spans nodes (see `spans_nodes`)


def inter_node(d):
    """Per row: does its collective span several nodes? (params nodes or nnodes, local_world_size; else
    whether records of its run and world size come from several hosts)."""
    import pandas as pd

    hosts = d.groupby(["run_id", "params.world_size"], dropna=False)["host"].transform("nunique") > 1
    for column in ("params.nnodes", "params.nodes"):
        if column in d:
            nodes = pd.to_numeric(d[column], errors="coerce")
            hosts = nodes.gt(1).where(nodes.notna(), hosts)
    if "params.local_world_size" in d:
        lws = d["params.local_world_size"]
        hosts = lws.lt(d["params.world_size"]).where(lws.notna(), hosts)
    return hosts


def spans_nodes(at) -> bool:
    """Whether a collectives check row (by its `at`) measured a collective across nodes."""
    return isinstance(at, str) and at.endswith(ACROSS_NODES)


def job_figures(d) -> dict:
    """{peak, at_peak, half, small_us, errors}: each a dict key -> figure, over the ok records of `d`."""
    ok = d[d["status"] == "ok"]
    throughput = ok[~ok["latency_mode"]]
    per_size = (
        throughput.groupby(KEYS + ["params.bytes", "params.in_place"], dropna=False)["metrics.busbw_gbps"]
        .min()
        .groupby(level=list(range(len(KEYS) + 1)), dropna=False)
        .max()
        .rename("busbw")
        .reset_index()
    )
    per_size["peak"] = per_size.groupby(KEYS, dropna=False)["busbw"].transform("max")
    at_peak = per_size.loc[per_size.groupby(KEYS, dropna=False)["busbw"].idxmax()].set_index(KEYS)["params.bytes"]
    half = per_size[per_size["busbw"] >= per_size["peak"] / 2].groupby(KEYS, dropna=False)["params.bytes"].min()
    latency = ok[ok["latency_mode"]] if ok["latency_mode"].any() else ok
    smallest = latency[latency["params.bytes"] == latency.groupby(KEYS, dropna=False)["params.bytes"].transform("min")]
    small_us = smallest.groupby(KEYS, dropna=False)["metrics.time_us"].min()
    errors = d.groupby(KEYS, dropna=False)["metrics.errors"].sum(min_count=1).to_dict() if "metrics.errors" in d else {}
    return dict(
        peak=per_size.groupby(KEYS, dropna=False)["busbw"].max().to_dict(),
        at_peak=at_peak.to_dict(),
        half=half.to_dict(),
        small_us=small_us.to_dict(),
        errors=errors,
    )


def collectives_checks(frame, ctx: Context) -> list[CheckRow]:
    d = frame[frame["probe"] == "collectives"].copy()
    if d.empty:
        return []
    d["inter_node"] = inter_node(d)
    d["latency_mode"] = d["params.mode"].eq("latency") if "params.mode" in d else False
    figures = job_figures(d)
    info = d.groupby(KEYS, sort=True, dropna=False).agg(
        device_name=("device_name", "first"), device_type=("device_type", "first"), inter=("inter_node", "any")
    )
    reasons = no_ok_reasons(d, KEYS)
    rows = []
    for key, name, device_type, inter in info.itertuples(index=True, name=None):
        host, _run, world, backend, op = key
        subject = Subject(host, NODE, device_type, name)
        check = f"busbw.{op}"
        if key not in figures["peak"]:
            rows.append(incomplete_check(subject, "collectives", check, **reasons.get(key, NO_RECORD)))
            continue
        figure = Figure(
            float(figures["peak"][key]),
            "GB/s",
            f"{format_bytes(figures['at_peak'][key])}, {count_text(world)} ranks, {backend}",
        )
        row = _judge_job(ctx, subject, op, int(world), figure, inter)
        wrong = as_number(figures["errors"].get(key))
        row = replace(
            row,
            half_peak_bytes=as_number(figures["half"].get(key)),
            errors=wrong,
            small_latency_us=as_number(figures["small_us"].get(key)),
        )
        if wrong:
            row = replace(
                row,
                verdict=Verdict.FAIL,
                reason=f"{int(wrong)} wrong element(s): the collective returned bad data; {row.reason}",
            )
        rows.append(row)
    return rows


def _judge_job(ctx: Context, subject: Subject, op: str, world: int, figure: Figure, inter: bool) -> CheckRow:
    """One rank: INFO; across nodes: INFO (a floor judges it); else against the link."""
    check = f"busbw.{op}"
    one_rank = world < 2
    measured = dict(probe="collectives", check=check, value=figure.value, unit=figure.unit)
    if one_rank:
        return subject.row(
            **measured, at=figure.at, verdict=Verdict.INFO, reason="informational: 1 rank, no bus traffic"
        )
    if inter:
        informational = "informational: spans nodes; the inter-node NIC is not in the registry"
        verdict, reason = judge_minimum(Verdict.INFO, informational, check, figure.value, figure.unit, ctx.thresholds)
        return subject.row(**measured, at=figure.at + ACROSS_NODES, verdict=verdict, reason=reason)
    spec = ctx.spec(subject.device_name)
    link_gbps = spec.number("link_gbps") if spec else None
    target = Target(
        "busbw",
        link_gbps,
        spec.expected_eff("busbw") if spec else None,
        above_line_rate_ok=not above_link_spec(op, figure.value, world, link_gbps),
    )
    return spec_check(ctx, subject, "collectives", check, figure, target)
