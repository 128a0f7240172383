"""Storage checks: per host, mode and direct/buffered IO, the best GB/s (with IOPS and p99 latency).

No storage spec exists, so a check is INFO unless a floor is set (`storage.<mode>`: PASS or FAIL);
buffered-only results WARN (the page cache may answer instead of the storage).
"""

from __future__ import annotations

from ...sizes import format_bytes
from ..verdicts import Verdict, judge_minimum
from .judging import NO_RECORD, Context, incomplete_check, no_ok_reasons
from .rows import NODE, CheckRow, Subject, as_number, count_text

KEYS = ["host", "params.mode", "direct"]
BEST_COLUMNS = [
    "metrics.gbps",
    "params.block_size",
    "params.jobs",
    "metrics.lat_us_p99",
    "flags",
    "device_type",
    "device_name",
]


def diskio_checks(frame, ctx: Context) -> list[CheckRow]:
    d = frame[frame["probe"] == "diskio"].copy()
    if d.empty:
        return []
    d["direct"] = d["params.direct"].fillna(True).astype(bool)
    ok = d[(d["status"] == "ok") & d["metrics.gbps"].notna()]
    best = ok.loc[ok.groupby(KEYS, sort=False)["metrics.gbps"].idxmax()] if len(ok) else ok
    best_by_key = {tuple(r[:3]): r[3:] for r in best[KEYS + BEST_COLUMNS].itertuples(index=False, name=None)}
    iops = ok.groupby(KEYS)["metrics.iops"].max()
    direct_modes = set(zip(ok.loc[ok["direct"], "host"], ok.loc[ok["direct"], "params.mode"]))
    info = d.groupby(KEYS, sort=True, dropna=False).agg(
        device_name=("device_name", "first"), device_type=("device_type", "first")
    )
    reasons = no_ok_reasons(d, KEYS)
    rows = []
    for key, first_name, first_type in info.itertuples(index=True, name=None):
        host, mode, direct = key
        check = f"storage.{mode}" + ("" if direct else ".buffered")
        found = best_by_key.get(key)
        if found is None:
            rows.append(
                incomplete_check(
                    Subject(host, NODE, first_type, first_name), "diskio", check, **reasons.get(key, NO_RECORD)
                )
            )
            continue
        gbps, block, jobs, p99, _flags, device_type, name = found
        verdict, reason = Verdict.INFO, f"informational: no storage spec (set a floor with --min {check}=GBPS)"
        if not direct and (host, mode) not in direct_modes:
            verdict, reason = Verdict.WARN, "buffered IO only: the page cache may make it look faster than the storage"
        verdict, reason = judge_minimum(verdict, reason, check, float(gbps), "GB/s", ctx.thresholds)
        at = f"bs {format_bytes(block) if as_number(block) else block}, {count_text(jobs)} job(s)"
        rows.append(
            Subject(host, NODE, device_type, name).row(
                probe="diskio",
                check=check,
                value=float(gbps),
                unit="GB/s",
                at=at,
                verdict=verdict,
                reason=reason,
                iops=as_number(iops.get(key)),
                lat_us_p99=as_number(p99),
                direct=bool(direct),
            )
        )
    return rows
