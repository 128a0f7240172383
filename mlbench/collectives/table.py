"""Text output from collectives records: an nccl-tests-like table per op, and a summary. No torch.

Columns per size: S (bytes), count, type, then out-of-place and in-place time_us / algbw / busbw /
#wrong from the throughput mode (a "-" where torch has no such placement), then the latency mode's
median and p99 per call. The summary gives, per op, the peak busbw and its size, the smallest size
reaching half of that peak, and the smallest size's latency (nccl-tests' "Avg bus bandwidth", the
mean over all rows, is deliberately not printed: it is not the peak).
"""

from __future__ import annotations

from typing import Optional

from ..sizes import format_bytes

_HEAD = (
    "#       size        count  type  |     time_us    algbw    busbw  #wrong "
    "|     time_us    algbw    busbw  #wrong |  lat_p50_us  lat_p99_us"
)
_UNITS = (
    "#        (B)   (elements)        |        (us)   (GB/s)   (GB/s)         "
    "|        (us)   (GB/s)   (GB/s)         |        (us)        (us)"
)
_GROUPS = (
    "#                                |               out-of-place            "
    "|                 in-place              |   latency (1 call)"
)


def _placement_cells(record: Optional[dict]) -> str:
    if record is None:
        return f"{'-':>12} {'-':>8} {'-':>8} {'-':>7}"
    if record["status"] == "skipped":
        return f"{'skipped':>12} {'-':>8} {'-':>8} {'-':>7}"
    m = record["metrics"]
    return f"{m['time_us']:12.2f} {m['algbw_gbps']:8.3f} {m['busbw_gbps']:8.3f} {m['errors']:7d}"


def _latency_cells(record: Optional[dict]) -> str:
    if record is None or record["status"] not in ("ok", "error"):
        return f"{'-':>11} {'-':>11}"
    m = record["metrics"]
    return f"{m['time_us']:11.2f} {m['time_us_p99']:11.2f}"


def op_table(records: list, op: str) -> str:
    """The table of one op's records (any order), one row per size."""
    mine = [r for r in records if r["params"].get("op") == op]
    if not mine:
        return ""
    first = mine[0]["params"]
    head = (
        f"# {op}  {first['dtype']}  {first['world_size']} rank(s) ({first.get('layout', '?')} nodes x ranks)  "
        f"{first.get('backend_version', first['backend'])}"
    )
    rows: dict = {}
    for r in mine:
        p = r["params"]
        key = p.get("requested_bytes", p["bytes"])
        slot = rows.setdefault(key, {"record": r})
        if p.get("mode", "throughput") == "latency":
            slot["latency"] = r
        else:
            slot["ip" if p["in_place"] else "oop"] = r
    lines = [head, _GROUPS, _HEAD, _UNITS]
    notes: dict = {}
    for key in sorted(rows):
        slot = rows[key]
        p = slot["record"]["params"]
        lines.append(
            f"{p['bytes']:12d} {p['count']:12d}  {p['dtype']:>4}  | {_placement_cells(slot.get('oop'))} | "
            f"{_placement_cells(slot.get('ip'))} | {_latency_cells(slot.get('latency'))}"
        )
        for r in slot.values():
            if r["status"] == "skipped":
                notes.setdefault(r["error"], []).append(format_bytes(key))
    for why, sizes in notes.items():
        lines.append(f"# skipped {','.join(dict.fromkeys(sizes))}: {why}")
    return "\n".join(lines)


def op_summary(records: list, op: str) -> Optional[str]:
    """Peak busbw and where, the half-peak size, the smallest size's latency."""
    ok = [r for r in records if r["params"].get("op") == op and r["status"] in ("ok", "error")]
    if not ok:
        return None
    world = ok[0]["params"]["world_size"]
    throughput = [r for r in ok if r["params"].get("mode", "throughput") == "throughput"]
    latency = [r for r in ok if r["params"].get("mode") == "latency"]
    parts = []
    if throughput:
        metric = "busbw_gbps" if world > 1 else "algbw_gbps"
        best = max(throughput, key=lambda r: r["metrics"][metric])
        peak = best["metrics"][metric]
        half = min((r["params"]["bytes"] for r in throughput if r["metrics"][metric] >= peak / 2), default=None)
        where = "in-place" if best["params"]["in_place"] else "out-of-place"
        if world > 1:
            parts.append(f"peak busbw {peak:.3g} GB/s at {format_bytes(best['params']['bytes'])} ({where})")
            if half is not None:
                parts.append(f"half of it from {format_bytes(half)}")
        else:
            parts.append(
                f"1 rank: busbw is 0 (no bus is crossed); peak algbw {peak:.3g} GB/s at "
                f"{format_bytes(best['params']['bytes'])} is a copy inside one device"
            )
    pool = latency or throughput
    smallest = min(pool, key=lambda r: r["params"]["bytes"])
    kind = "latency" if latency else "time per call (throughput mode)"
    extra = f", p99 {smallest['metrics']['time_us_p99']:.1f} us" if latency else ""
    parts.append(
        f"smallest size {format_bytes(smallest['params']['bytes'])}: {kind} "
        f"{smallest['metrics']['time_us']:.1f} us{extra}"
    )
    return f"{op}: " + "; ".join(parts)


def summary(records: list, ops: tuple) -> str:
    """Per op its summary line, then whether every result was exact (the counts come from the shared loop)."""
    lines = [line for line in (op_summary(records, op) for op in ops) if line]
    measured = [r for r in records if r["status"] in ("ok", "error")]
    wrong = sum(r["metrics"].get("errors", 0) for r in measured)
    if measured:
        verdict = "all results exact" if wrong == 0 else f"FAILED: {wrong} wrong element(s)"
        lines.append(f"correctness: {verdict}")
    if any("above_link_spec" in r.get("flags", []) for r in measured):
        lines.append(
            "SUSPECT: busbw above what the links carry, even with in-switch reduction (NVLS/SHARP): "
            "check the timing, the clocks or the link figure of the spec"
        )
    return "\n".join(lines)


def render(records: list, ops: tuple) -> str:
    tables = [t for t in (op_table(records, op) for op in ops) if t]
    return "\n\n".join(tables + [summary(records, ops)])
