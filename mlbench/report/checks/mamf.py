"""MAMF checks: per device and dtype, the best median TFLOPS against the dense peak and the published MAMF.

The best is chosen by the rule of `mlbench.mamf.plan.best_record`: among a search's confirmed shapes
(phase `ANSWER_PHASE`) when the device and dtype have some, else among all its ok records.
"""

from __future__ import annotations

from ...mamf.plan import ANSWER_PHASE
from ..verdicts import Verdict
from .judging import NO_RECORD, Context, Figure, Target, incomplete_check, no_ok_reasons, spec_check
from .rows import CheckRow, Subject

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


def mamf_checks(frame, ctx: Context) -> list[CheckRow]:
    d = frame[frame["probe"] == "mamf"]
    if d.empty:
        return []
    best = best_rows(d[d["status"] == "ok"], KEYS)
    columns = KEYS + ["metrics.tflops", "params.m", "params.n", "params.k", "flags"]
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
            rows.append(subject.row(probe="mamf", check=check, verdict=Verdict.FAIL,
                                    reason="a matmul result did not match the float64 reference (check_failed)"))
            continue
        found = best_by_key.get(key)
        if found is None:
            rows.append(incomplete_check(subject, "mamf", check, **reasons.get(key, NO_RECORD)))
            continue
        tflops, m, n, k, flags = found
        spec = ctx.spec(name)
        target = Target("mamf", spec.peak_tflops(dtype) if spec else None,
                        spec.mamf_expected_eff(dtype) if spec else None,
                        reference=spec.mamf_reference(dtype) if spec else None)
        figure = Figure(float(tflops), "TFLOPS", f"{int(m)}x{int(n)}x{int(k)}", flags)
        rows.append(spec_check(ctx, subject, "mamf", check, figure, target))
    return rows
