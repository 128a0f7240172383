"""Memory-bandwidth checks: per device and family, the best figure against its spec.

The family of a record (`mlbench.membw.plan.Family`) is the one the probe recorded (`params.family`),
else the family of its op in the plan's table. hbm: the best `gbps` (read + written, like the HBM
spec) over the device-memory ops and sizes, against `hbm_tbps`; h2d/d2h: `gbps_copied` (bytes once)
against `host_link_gbps`; p2p: `gbps_copied` against `link_gbps` (per direction).

The hbm peak comes from large buffers when the device has some: points whose one buffer set alone
is several times the last-level cache (`mlbench.membw.plan.is_large_buffer`, recorded as
`params.large`), as in `mlbench.membw.plan.peaks`. A small buffer rotated through the cache can
still beat memory on a CPU with a large L3.
"""

from __future__ import annotations

from ...membw.plan import Family, op_family
from ...sizes import format_bytes
from .judging import NO_RECORD, Context, Figure, Target, incomplete_check, no_ok_reasons, spec_check
from .rows import CheckRow, Subject, as_number

KEYS = ["host", "device_index", "device_type", "device_name", "family"]
# family -> (the registry column it is judged against, the expected-efficiency family)
SPEC_COLUMNS = {
    Family.H2D: ("host_link_gbps", "h2d"),
    Family.D2H: ("host_link_gbps", "h2d"),
    Family.P2P: ("link_gbps", "p2p"),
}
FAMILY_VALUES = [family.value for family in Family]


def families(d):
    """Each record's family: the recorded `params.family` when it is one, else its op's in the plan."""
    ops = d["params.op"].astype(str)
    derived = ops.map({op: op_family(op).value for op in ops.unique()})
    if "params.family" not in d:
        return derived
    recorded = d["params.family"]
    return recorded.where(recorded.isin(FAMILY_VALUES), derived)


def large_points(ok):
    """Per row: a large device-memory point, the peak's candidates when its device has some.

    `params.large` when the probe recorded it. Records without it: one buffer set (`sets == 1`)
    that was not cache-resident, which is the plan's rule when the run rotated buffers (a run
    rotates to one set exactly when a set alone is large); under --no-rotate such records cannot
    tell a set between 1x and 4x the cache from a large one, and count as large.
    """
    import pandas as pd

    hbm = ok["family"].eq(Family.HBM.value)
    guessed = pd.Series(False, index=ok.index)
    if "params.sets" in ok:
        resident = ok["params.cache_resident"].eq(True) if "params.cache_resident" in ok else guessed
        guessed = ok["params.sets"].eq(1) & ~resident
    if "params.large" in ok:
        recorded = ok["params.large"]
        guessed = recorded.eq(True).where(recorded.notna(), guessed).astype(bool)
    return hbm & guessed


def large_buffers_only(ok, keys: list):
    """Drop the small device-memory points of a device that has large ones."""
    if ok.empty:
        return ok
    large = large_points(ok)
    key_has_large = large.groupby([ok[k] for k in keys], dropna=False).transform("any")
    return ok[~(ok["family"].eq(Family.HBM.value) & ~large & key_has_large)]


def target(spec, family: str) -> Target:
    """The spec figure (GB/s) and the normal efficiency a family is judged against."""
    family = Family(family)
    if family == Family.HBM:
        tbps = spec.number("hbm_tbps") if spec else None
        return Target("hbm", tbps * 1000 if tbps else None, spec.expected_eff("hbm") if spec else None)
    column, eff_family = SPEC_COLUMNS[family]
    return Target(eff_family, spec.number(column) if spec else None, spec.expected_eff(eff_family) if spec else None)


def membw_checks(frame, ctx: Context) -> list[CheckRow]:
    d = frame[frame["probe"] == "membw"].copy()
    if d.empty:
        return []
    d["family"] = families(d)
    copied = d["metrics.gbps_copied"] if "metrics.gbps_copied" in d else None
    link = d["family"].ne(Family.HBM.value)
    d["value"] = d["metrics.gbps"] if copied is None else copied.where(link & copied.notna(), d["metrics.gbps"])
    ok = large_buffers_only(d[(d["status"] == "ok") & d["value"].notna()], KEYS)
    best = ok.loc[ok.groupby(KEYS, sort=False)["value"].idxmax()] if len(ok) else ok
    columns = KEYS + ["value", "params.op", "params.bytes", "flags", "throttle"]
    best_by_key = {tuple(r[:5]): r[5:] for r in best[columns].itertuples(index=False, name=None)}
    reasons = no_ok_reasons(d, KEYS)
    rows = []
    for key in d.groupby(KEYS, sort=True, dropna=False).size().index:
        host, index, device_type, name, family = key
        subject = Subject(host, str(index), device_type, name)
        found = best_by_key.get(key)
        if found is None:
            rows.append(incomplete_check(subject, "membw", family, **reasons.get(key, NO_RECORD)))
            continue
        value, op, size, flags, throttle = found
        figure = Figure(
            float(value), "GB/s", f"{op} {format_bytes(size) if as_number(size) else size}", flags, throttle
        )
        rows.append(spec_check(ctx, subject, "membw", family, figure, target(ctx.spec(name), family)))
    return rows
