"""Judging one check: a measured figure against its advertised spec, or why there is no figure.

`spec_check` applies the efficiency rules of `verdicts` (expected efficiency, flags, floors) and
fills the spec columns; `incomplete_check` is the row of a probe with no ok record;
`no_ok_reasons` words why (counts per status, the first error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ... import specs as specs_registry
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
    flags: str = ""  # comma list: noisy, above_spec_peak...


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
        verdict, reason = judge_efficiency(value, target.spec_value, expected, ctx.thresholds, unit,
                                           target.above_line_rate_ok)
        expected_pct = 100 * expected
    else:
        verdict, reason = judge_without_spec(subject.device_type, subject.device_name)
        if spec is not None:
            verdict, reason = Verdict.PASS, f"informational: {spec.name} has no {check} figure in the registry"
        expected_pct = None
    if "noisy" in flags and verdict == Verdict.PASS and judged:
        verdict, reason = Verdict.WARN, f"{reason}; noisy samples (large spread): rerun on an idle device"
    if "noisy" in flags and not judged:
        reason = f"{reason}; noisy samples (large spread)"
    if "above_spec_peak" in flags and verdict == Verdict.PASS:
        verdict = Verdict.WARN
        reason = f"{reason}; a sample ran faster than the advertised peak: suspect timing or spec"
    verdict, reason = judge_minimum(verdict, reason, check, value, unit, ctx.thresholds)
    return subject.row(spec=spec.key if spec else "", probe=probe, check=check, value=value, unit=unit, at=figure.at,
                       spec_value=target.spec_value, pct_of_spec=pct(value, target.spec_value),
                       expected_pct=expected_pct, reference=target.reference,
                       pct_of_reference=pct(value, target.reference), verdict=verdict, reason=reason)


def incomplete_check(subject: Subject, probe: str, check: str, why: str, only_skipped: bool = False,
                     error: str = "") -> CheckRow:
    """INCOMPLETE, except a check only skipped on a host device (cpu): not applicable there, PASS."""
    if only_skipped and subject.device_type in HOST_DEVICE_TYPES:
        return subject.row(probe=probe, check=check, verdict=Verdict.PASS,
                           reason=f"not applicable on {subject.device_type}: {error or why}")
    return subject.row(probe=probe, check=check, verdict=Verdict.INCOMPLETE, reason=why)


def no_ok_reasons(d, keys: list) -> dict:
    """key -> {why, only_skipped, error}: why it has no ok record, from the non-ok rows only."""
    bad = d[d["status"] != "ok"]
    if bad.empty:
        return {}
    words: dict = {}
    for key, n in bad.groupby(keys + ["status"], sort=True, dropna=False).size().items():
        words.setdefault(key[:-1], []).append(f"{n} {key[-1]}")
    first = bad.groupby(keys, sort=False, dropna=False)["error"].first()
    out = {}
    for key, error in first.items():
        error = str(error)[:160] if isinstance(error, str) and error else ""
        said = words.get(key, [])
        text = f"no successful measurement ({', '.join(said)})" + (f": {error}" if error else "")
        out[key] = dict(why=text, only_skipped=all(w.endswith(" skipped") for w in said), error=error)
    return out
