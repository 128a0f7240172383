"""Training checks: MFU of the reference training step against what a healthy part reaches on the preset.

- `train.<model>`: per device (a record of one device training alone, `params.world_size` 1, named by its
  `params.node` and `params.gpu`; the ranks of a CPU host count as its one device), the best TFLOPS per
  device. The fleet view compares these across nodes (a slow node FAILs) and inside a node (a slow device
  WARNs).
- `train.<model>.<parallel>.<devices>`: per job (run, devices, parallel), the TFLOPS per device of the
  median group, with its tokens/s and weak-scaling efficiency (tokens/s over the sum of the same
  devices alone). On an accelerator an efficiency below the thresholds' warn/fail ratios (0.90/0.75 of
  ideal) makes the row WARN/FAIL.

Judged: TFLOPS per device against the dense peak of the dtype, relative to the expected MFU for the
part and preset (`mlbench.train.plan.expected_mfu`: the registry's `train_<model>_expected_mfu`, else
mlbench/data/train_mfu.csv). INFO without a peak (a CPU, a part the registry does not know) or without
an expected MFU for that part and preset. A step whose loss did not go down (or is not finite) FAILs.
"""

from __future__ import annotations

from typing import Optional

from ...train.plan import expected_mfu
from ..verdicts import HOST_DEVICE_TYPES, Verdict, pct, worst
from .judging import Context, Figure, Target, spec_check
from .rows import NODE, CheckRow, Subject, as_number

LOSS_FLAGS = ("loss_not_decreasing", "loss_not_finite")
UNIT = "TFLOPS"


def train_checks(frame, ctx: Context) -> list[CheckRow]:
    d = frame[frame["probe"] == "train"]
    if d.empty:
        return []
    d = d.assign(_world=d["params.world_size"].map(as_number))
    return device_checks(d[d["_world"].eq(1)], ctx) + job_checks(d[d["_world"].gt(1)], ctx)


def _text(row, column: str, default: str = "") -> str:
    value = row.get(column)
    return default if value is None or value != value else str(value)


def _number(row, column: str) -> Optional[float]:
    return as_number(row.get(column))


def _broken_loss(row) -> bool:
    return any(flag in _text(row, "flags").split(",") for flag in LOSS_FLAGS)


def device_checks(d, ctx: Context) -> list[CheckRow]:
    """One row per device that trained alone: its best TFLOPS per device (or why there is none). The ranks
    of a CPU host share one device: one row for the host, its best rank."""
    best: dict = {}
    for row in d.to_dict("records"):
        host = _text(row, "params.node", row["host"])
        device = _text(row, "params.gpu", _text(row, "device_index", "0"))
        device = str(int(float(device))) if device.replace(".", "", 1).isdigit() else device
        if row.get("device_type") in HOST_DEVICE_TYPES:
            device = "0"
        name = _text(row, "params.device_name", _text(row, "device_name"))
        key = (host, device, name, _text(row, "params.model"), _text(row, "params.dtype"))
        best.setdefault(key, []).append(row)
    rows = []
    for (host, device, name, model, dtype), records in sorted(best.items()):
        subject = Subject(host, device, records[0].get("device_type"), name)
        rows.append(_judge(ctx, subject, f"train.{model}", model, dtype, records, "alone"))
    return rows


def job_checks(d, ctx: Context) -> list[CheckRow]:
    """One row per job (run, devices, parallel): the median group's TFLOPS per device, tokens/s and scaling."""
    jobs: dict = {}
    for row in d.to_dict("records"):
        world = int(_number(row, "params.world_size"))
        key = (
            row["host"],
            row["run_id"],
            world,
            _text(row, "params.parallel"),
            _text(row, "params.model"),
            _text(row, "params.dtype"),
            _text(row, "device_name"),
            row.get("device_type"),
        )
        jobs.setdefault(key, []).append(row)
    rows = []
    for (host, _run, world, parallel, model, dtype, name, device_type), records in sorted(jobs.items()):
        subject = Subject(host, NODE, device_type, name)
        nodes = _number(records[0], "params.nodes") or 1
        where = f"{world} devices" + (f" on {int(nodes)} nodes" if nodes > 1 else "") + f", {parallel}"
        row = _judge(ctx, subject, f"train.{model}.{parallel}.{world}", model, dtype, records, where)
        rows.append(_with_scaling(ctx, row, _best(records), device_type))
    return rows


def _best(records: list) -> Optional[dict]:
    ok = [r for r in records if r["status"] == "ok" and _number(r, "metrics.tflops_per_gpu") is not None]
    return max(ok, key=lambda r: _number(r, "metrics.tflops_per_gpu")) if ok else None


def _judge(ctx: Context, subject: Subject, check: str, model: str, dtype: str, records: list, where: str) -> CheckRow:
    broken = [r for r in records if _broken_loss(r)]
    if broken:
        return subject.row(
            probe="train",
            check=check,
            verdict=Verdict.FAIL,
            value=_number(broken[0], "metrics.tflops_per_gpu"),
            unit=UNIT,
            at=where,
            reason=f"not a working training step: {_text(broken[0], 'error') or 'the loss did not go down'}",
        )
    best = _best(records)
    if best is None:
        errors = [_text(r, "error") for r in records if _text(r, "error")]
        return subject.row(
            probe="train",
            check=check,
            verdict=Verdict.INCOMPLETE,
            reason="no successful training step" + (f": {errors[0][:160]}" if errors else ""),
        )
    tflops = _number(best, "metrics.tflops_per_gpu")
    tokens = _number(best, "metrics.tokens_per_s")
    at = f"{where}, {tokens:.4g} tokens/s" if tokens else where
    spec = ctx.spec(subject.device_name)
    peak = spec.peak_tflops(dtype) if spec else None
    expected = expected_mfu(spec, model)
    measured = dict(
        probe="train",
        check=check,
        value=tflops,
        unit=UNIT,
        at=at,
        spec=spec.key if spec else "",
        spec_value=peak,
        pct_of_spec=pct(tflops, peak),
    )
    if not peak:
        whose = (
            f"on {subject.device_type}"
            if subject.device_type in HOST_DEVICE_TYPES
            else f"for {subject.device_name!r} (add its row with --specs)"
        )
        return subject.row(
            **measured,
            verdict=Verdict.INFO,
            reason=f"informational: no advertised dense {dtype} peak {whose}, so no MFU",
        )
    if expected is None:
        return subject.row(
            **measured,
            verdict=Verdict.INFO,
            reason=f"informational: MFU {100 * tflops / peak:.1f}% of the {peak:g} TFLOPS dense {dtype} "
            f"peak; no expected MFU for {spec.name} on preset {model}",
        )
    figure = Figure(tflops, UNIT, at, _text(best, "flags"), _text(best, "throttle"))
    row = spec_check(ctx, subject, "train", check, figure, Target("train", peak, expected.value))
    return _replace(row, reason=f"MFU: {row.reason}")


def _with_scaling(ctx: Context, row: CheckRow, best: Optional[dict], device_type: Optional[str]) -> CheckRow:
    """Add the weak-scaling efficiency to a job row; on an accelerator a poor one lowers the verdict."""
    if best is None:
        return row
    efficiency = _number(best, "metrics.scaling_efficiency")
    if efficiency is None:
        return row
    th = ctx.thresholds
    words = f"scaling efficiency {100 * efficiency:.1f}% of the devices alone"
    if device_type in HOST_DEVICE_TYPES or row.verdict == Verdict.INCOMPLETE:
        return _replace(row, reason=f"{row.reason}; {words} (informational on {device_type})")
    verdict = Verdict.PASS
    if efficiency < th.fail_below:
        verdict, words = Verdict.FAIL, f"{words}, far below the {100 * th.warn_below:.0f}% expected"
    elif efficiency < th.warn_below:
        verdict, words = Verdict.WARN, f"{words}, below the {100 * th.warn_below:.0f}% expected"
    joined = worst([row.verdict, verdict]) if row.verdict != Verdict.INFO or verdict != Verdict.PASS else row.verdict
    return _replace(row, verdict=joined, reason=f"{row.reason}; {words}")


def _replace(row: CheckRow, **changes) -> CheckRow:
    from dataclasses import replace

    return replace(row, **changes)
