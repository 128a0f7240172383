"""Judging one check: a measured figure against its advertised spec, or why there is no figure.

`spec_check` applies the efficiency rules of `verdicts` (expected efficiency, flags, floors) and
fills the spec columns (INFO when there is no figure to judge against); `incomplete_check` is the row
of a probe with no ok record (N/A when it cannot run there by design); `no_ok_reasons` words why
(counts per status, the first error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ... import specs as specs_registry
from ...telemetry import THROTTLED_FLAG
from ..verdicts import HOST_DEVICE_TYPES, Thresholds, Verdict, judge_efficiency, judge_minimum, judge_without_spec, pct
from .rows import CheckRow, Subject

NO_RECORD = {"why": "no record"}


@dataclass(frozen=True)
class Context:
    """The registry, the thresholds, and a memo of device name -> Spec (or None)."""

    registry: list
    thresholds: Thresholds
    _specs: dict = field(default_factory=dict)

    def spec(self, device_name: str) -> Optional[specs_registry.Spec]:
        if device_name not in self._specs:
            self._specs[device_name] = specs_registry.lookup(device_name, self.registry)
        return self._specs[device_name]


@dataclass(frozen=True)
class Figure:
    """What a check measured: the value in its unit, where (`at`), and the best record's flags."""

    value: float
    unit: str
    at: str
    flags: str = ""  # comma list: noisy, above_spec_peak, throttled...
    throttle: str = ""  # with `throttled`: the causes and temperature in words (mlbench.telemetry.throttle_words)


@dataclass(frozen=True)
class Target:
    """The advertised figure a measurement is judged against, and how."""

    family: str  # the expected-efficiency family: mamf, hbm, h2d, p2p, busbw
    spec_value: Optional[float]
    registry_eff: Optional[float]  # the registry's normal efficiency for this part, if any
    reference: Optional[float] = None  # a published measurement (the MAMF), shown as a percentage
    above_line_rate_ok: bool = False  # above the spec figure is not suspect (busbw within the in-switch ceiling)


def spec_check(ctx: Context, subject: Subject, probe: str, check: str, figure: Figure, target: Target) -> CheckRow:
    """A check of a measured figure against a spec figure, verdict and reason included."""
    spec = ctx.spec(subject.device_name)
    value, unit, flags = figure.value, figure.unit, figure.flags
    judged = bool(target.spec_value)
    if judged:
        expected = ctx.thresholds.expected(target.family, target.registry_eff)
        verdict, reason = judge_efficiency(
            value, target.spec_value, expected, ctx.thresholds, unit, target.above_line_rate_ok
        )
        expected_pct = 100 * expected
    else:
        verdict, reason = judge_without_spec(subject.device_type, subject.device_name)
        if spec is not None:
            verdict, reason = Verdict.INFO, f"informational: {spec.name} has no {check} figure in the registry"
        expected_pct = None
    if "noisy" in flags and verdict == Verdict.PASS and judged:
        verdict, reason = Verdict.WARN, f"{reason}; noisy samples (large spread): rerun on an idle device"
    if "noisy" in flags and not judged:
        reason = f"{reason}; noisy samples (large spread)"
    if "above_spec_peak" in flags and verdict == Verdict.PASS:
        verdict = Verdict.WARN
        reason = f"{reason}; a sample ran faster than the advertised peak: suspect timing or spec"
    if THROTTLED_FLAG in flags.split(","):  # a judged figure measured while throttled is at most WARN
        verdict = Verdict.WARN if verdict == Verdict.PASS else verdict
        reason = f"{reason}; measured while throttled: {figure.throttle or 'see the telemetry of its record'}"
    verdict, reason = judge_minimum(verdict, reason, check, value, unit, ctx.thresholds)
    return subject.row(
        spec=spec.key if spec else "",
        probe=probe,
        check=check,
        value=value,
        unit=unit,
        at=figure.at,
        spec_value=target.spec_value,
        pct_of_spec=pct(value, target.spec_value),
        expected_pct=expected_pct,
        reference=target.reference,
        pct_of_reference=pct(value, target.reference),
        verdict=verdict,
        reason=reason,
    )


def incomplete_check(
    subject: Subject,
    probe: str,
    check: str,
    why: str,
    only_skipped: bool = False,
    error: str = "",
    cannot_run: bool = False,
) -> CheckRow:
    """INCOMPLETE, except a check that cannot run here by design: N/A (not a verdict) when it was only
    skipped on a host device (cpu), or only skipped by points the probe marks as not runnable on this
    device (`cannot_run`: h2d on a CPU, p2p with one GPU, a dtype the device lacks)."""
    if only_skipped and (cannot_run or subject.device_type in HOST_DEVICE_TYPES):
        where = subject.device_type or "this device"
        return subject.row(
            probe=probe, check=check, verdict=Verdict.NA, reason=f"not applicable on {where}: {error or why}"
        )
    return subject.row(probe=probe, check=check, verdict=Verdict.INCOMPLETE, reason=why)


# A skipped record with a zero size is the probes' mark of a point that cannot run on the device at all
# (membw: `bytes` 0 for h2d on a CPU or p2p with one GPU; mamf: m = n = k = 0 for an unsupported dtype),
# as opposed to a sized point skipped for want of memory.
UNSIZED_COLUMNS = ("params.bytes", "params.m")


def cannot_run(bad):
    """Per non-ok row: a skipped record of a point that cannot run on this device (see UNSIZED_COLUMNS)."""
    import pandas as pd

    unsized = pd.Series(False, index=bad.index)
    for column in UNSIZED_COLUMNS:
        if column in bad:
            unsized |= pd.to_numeric(bad[column], errors="coerce").eq(0)
    return bad["status"].eq("skipped") & unsized


def no_ok_reasons(d, keys: list) -> dict:
    """key -> {why, only_skipped, error, cannot_run}: why it has no ok record, from the non-ok rows only."""
    bad = d[d["status"] != "ok"]
    if bad.empty:
        return {}
    words: dict = {}
    for key, n in bad.groupby(keys + ["status"], sort=True, dropna=False).size().items():
        words.setdefault(key[:-1], []).append(f"{n} {key[-1]}")
    first = bad.groupby(keys, sort=False, dropna=False)["error"].first()
    unrunnable = cannot_run(bad).groupby([bad[k] for k in keys], sort=False, dropna=False).all()
    out = {}
    for key, error in first.items():
        error = str(error)[:160] if isinstance(error, str) and error else ""
        said = words.get(key, [])
        text = f"no successful measurement ({', '.join(said)})" + (f": {error}" if error else "")
        out[key] = dict(
            why=text,
            only_skipped=all(w.endswith(" skipped") for w in said),
            error=error,
            cannot_run=bool(unrunnable.get(key, False)),
        )
    return out
