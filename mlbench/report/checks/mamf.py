"""MAMF checks: per device and dtype, the best median TFLOPS against the dense peak and the published MAMF.

The best is chosen by the rule of `mlbench.mamf.plan.best_record`: among a search's confirmed shapes
(phase `ANSWER_PHASE`) when the device and dtype have some, else among all its ok records.
Records of a sustained run (`params.mode` "sustain": the shape back to back on every GPU at once) are
their own check, `mamf.<dtype>.sustained`: the median of their `tflops_sustained` (else `tflops`)
against the same dense peak and normal efficiency; `at` adds the drop from the short burst
(`metrics.drop_pct`), and a drop of more than SUSTAIN_DROP_WARN_PCT on an accelerator is at most WARN.
"""

from __future__ import annotations

import dataclasses

from ...mamf.plan import ANSWER_PHASE, SUSTAIN_MODE
from ..verdicts import HOST_DEVICE_TYPES, Verdict
from .judging import NO_RECORD, Context, Figure, Target, incomplete_check, no_ok_reasons, spec_check
from .rows import CheckRow, Subject, as_number

KEYS = ["host", "device_index", "device_type", "device_name", "params.dtype"]


def answer_pool(ok, keys: list):
    """`mlbench.mamf.plan.answer_pool` per key, vectorised: the rows of phase ANSWER_PHASE of a key
    that has some, every row of a key that has none."""
    if "params.phase" not in ok or ok.empty:
        return ok
    confirmed = ok["params.phase"].eq(ANSWER_PHASE)
    key_has_confirmed = confirmed.groupby([ok[k] for k in keys], dropna=False).transform("any")
    return ok[confirmed | ~key_has_confirmed]


def best_rows(ok, keys: list):
    """The row of the best median TFLOPS per key, among `answer_pool`."""
    pool = answer_pool(ok, keys)
    return pool.loc[pool.groupby(keys, sort=False)["metrics.tflops"].idxmax()] if len(pool) else pool


SUSTAINED_SUFFIX = ".sustained"


def is_sustained(d):
    """Per row: a record of a sustained run (`params.mode` == "sustain")."""
    import pandas as pd

    return d["params.mode"].eq(SUSTAIN_MODE) if "params.mode" in d else pd.Series(False, index=d.index)


def mamf_checks(frame, ctx: Context) -> list[CheckRow]:
    d = frame[frame["probe"] == "mamf"]
    if d.empty:
        return []
    sustained = is_sustained(d)
    return peak_checks(d[~sustained], ctx) + sustained_checks(d[sustained], ctx)


def target_of(ctx: Context, name: str, dtype: str) -> Target:
    """The dense peak, normal efficiency and published MAMF of a part for a dtype (None when unknown)."""
    spec = ctx.spec(name)
    return Target(
        "mamf",
        spec.peak_tflops(dtype) if spec else None,
        spec.mamf_expected_eff(dtype) if spec else None,
        reference=spec.mamf_reference(dtype) if spec else None,
    )


def _joined(texts) -> str:
    """The distinct comma words of several records' flags, joined."""
    return ",".join(dict.fromkeys(w for t in texts if isinstance(t, str) for w in t.split(",") if w))


def _first_text(texts) -> str:
    return next((t for t in texts if isinstance(t, str) and t), "")


def sustained_checks(d, ctx: Context) -> list[CheckRow]:
    """`mamf.<dtype>.sustained` per device: the median sustained TFLOPS of its ok sustain records."""
    if d.empty:
        return []
    ok = d[d["status"] == "ok"].copy()
    column = "metrics.tflops_sustained"
    ok["sustained"] = ok[column].fillna(ok["metrics.tflops"]) if column in ok else ok["metrics.tflops"]
    ok = ok[ok["sustained"].notna()]
    if "throttle" not in ok:
        ok["throttle"] = ""
    ok["drop"] = ok["metrics.drop_pct"] if "metrics.drop_pct" in ok else float("nan")
    found = ok.groupby(KEYS, sort=False, dropna=False).agg(
        tflops=("sustained", "median"),
        m=("params.m", "first"),
        n=("params.n", "first"),
        k=("params.k", "first"),
        flags=("flags", _joined),
        throttle=("throttle", _first_text),
        drop=("drop", "median"),
    )
    found_by_key = {key: r for key, r in zip(found.index, found.itertuples(index=False))}
    reasons = no_ok_reasons(d, KEYS)
    rows = []
    for key in d.groupby(KEYS, sort=True, dropna=False).size().index:
        host, index, device_type, name, dtype = key
        subject = Subject(host, str(index), device_type, name)
        check = f"mamf.{dtype}{SUSTAINED_SUFFIX}"
        r = found_by_key.get(key)
        if r is None:
            rows.append(incomplete_check(subject, "mamf", check, **reasons.get(key, NO_RECORD)))
            continue
        figure = Figure(float(r.tflops), "TFLOPS", f"{int(r.m)}x{int(r.n)}x{int(r.k)}, sustained", r.flags, r.throttle)
        row = spec_check(ctx, subject, "mamf", check, figure, target_of(ctx, name, dtype))
        rows.append(with_drop(row, as_number(r.drop)))
    return rows


SUSTAIN_DROP_WARN_PCT = 10.0  # sustained this far below the short burst: the GPU does not hold its clocks


def with_drop(row: CheckRow, drop_pct) -> CheckRow:
    """A sustained row with its drop from the short burst in `at`; at most WARN when an accelerator
    drops more than SUSTAIN_DROP_WARN_PCT."""
    if drop_pct is None:
        return row
    at = f"{row.at}, {abs(drop_pct):.1f}% {'below' if drop_pct >= 0 else 'above'} the short burst"
    verdict, reason = row.verdict, row.reason
    if drop_pct > SUSTAIN_DROP_WARN_PCT and row.device_type not in HOST_DEVICE_TYPES:
        verdict = Verdict.WARN if verdict == Verdict.PASS else verdict
        reason = f"{reason}; {drop_pct:.0f}% below the short-burst figure: the GPU does not hold its clocks under load"
    return dataclasses.replace(row, at=at, verdict=verdict, reason=reason)


def peak_checks(d, ctx: Context) -> list[CheckRow]:
    """`mamf.<dtype>` per device: the best median TFLOPS (see the module docstring)."""
    if d.empty:
        return []
    best = best_rows(d[d["status"] == "ok"], KEYS)
    columns = KEYS + ["metrics.tflops", "params.m", "params.n", "params.k", "flags", "throttle"]
    best_by_key = {tuple(r[:5]): r[5:] for r in best[columns].itertuples(index=False, name=None)}
    failed = d["flags"].str.contains("check_failed", na=False)
    wrong = set(d.loc[failed, KEYS].itertuples(index=False, name=None))
    reasons = no_ok_reasons(d, KEYS)
    rows = []
    for key in d.groupby(KEYS, sort=True, dropna=False).size().index:
        host, index, device_type, name, dtype = key
        subject = Subject(host, str(index), device_type, name)
        check = f"mamf.{dtype}"
        if key in wrong:
            rows.append(
                subject.row(
                    probe="mamf",
                    check=check,
                    verdict=Verdict.FAIL,
                    reason="a matmul result did not match the float64 reference (check_failed)",
                )
            )
            continue
        found = best_by_key.get(key)
        if found is None:
            rows.append(incomplete_check(subject, "mamf", check, **reasons.get(key, NO_RECORD)))
            continue
        tflops, m, n, k, flags, throttle = found
        figure = Figure(float(tflops), "TFLOPS", f"{int(m)}x{int(n)}x{int(k)}", flags, throttle)
        rows.append(spec_check(ctx, subject, "mamf", check, figure, target_of(ctx, name, dtype)))
    return rows
