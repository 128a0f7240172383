"""Verdict rules: PASS / WARN / FAIL / INCOMPLETE, INFO and N/A, each with its reason in words. Pure Python.

Efficiency checks compare a measured figure with the advertised spec, relative to what a healthy
part normally reaches (the registry's expected efficiency: MAMF on an H100 is ~80% of the dense
peak, so 80% is "below spec but normal", not a failure):

    ratio = (measured / spec) / expected_eff
    PASS        ratio >= warn_below (default 0.90)
    WARN        fail_below <= ratio < warn_below (default 0.75)
    FAIL        ratio < fail_below
    WARN        measured above the spec by more than `above_spec_tolerance` (suspect timing, clocks
                or spec), except where the metric may exceed line rate (busbw with NVLS/SHARP)

An absolute floor (`minimum`, in the check's unit, e.g. busbw.all_reduce >= 460 GB/s) fails a check
below it and passes one that meets it, spec or not.

INFO: a figure with nothing to judge it against, reported without a judgement: every figure of a CPU
(or any non-accelerator device), a part the registry knows without a figure for that check, a
collective of one rank or across nodes, storage without a floor. An accelerator the registry does
not know gives WARN instead (add its row with --specs). A floor that is met turns INFO into PASS.

N/A: a check that could not be measured on this device by design (only skipped records, such as
h2d/d2h on a CPU or p2p with one GPU): not a verdict. It is left out of the counts and of summary.csv
and listed with its reason under "Not measured".

INCOMPLETE: the probe did not run, or only skipped or errored, for that device where it should have
measured. Wrong results (collective #wrong elements, a failed matmul check) FAIL. A judged check whose
best record carries the flag `noisy`, `above_spec_peak` or `throttled` (measured while power, thermal or
hardware slowdown held more than 5% of its span; the reason names the cause and the temperature) is at
most WARN. Fleet rules (`fleet`): a suspect node FAILs, a device far below the best of its node WARNs.

The overall verdict (`overall`): FAIL, else INCOMPLETE, else WARN when present; else PASS when anything
was judged; else INFO (nothing was judged).

Exit code: 1 when any verdict is FAIL, or INCOMPLETE under `strict`; 0 otherwise (WARN, INFO, N/A and
INCOMPLETE are listed, not fatal, by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Mapping, Optional

from ..exitcodes import FAILED, OK, UsageError


class Verdict(StrEnum):
    """A check's verdict; a `str`, so tables, CSV and JSON show its plain name."""

    FAIL = "FAIL"
    INCOMPLETE = "INCOMPLETE"
    WARN = "WARN"
    INFO = "INFO"
    PASS = "PASS"
    NA = "N/A"

    @property
    def severity(self) -> int:
        """0 for the most severe (FAIL) up to PASS; the order of the members."""
        return SEVERITY[self]

    @property
    def needs_attention(self) -> bool:
        """Listed among the verdicts needing attention (all but PASS, INFO and N/A)."""
        return self not in (Verdict.PASS, Verdict.INFO, Verdict.NA)

    @property
    def judged(self) -> bool:
        """A judgement was made (FAIL, INCOMPLETE, WARN, PASS); INFO and N/A are not judgements."""
        return self not in (Verdict.INFO, Verdict.NA)


SEVERITY = {verdict: rank for rank, verdict in enumerate(Verdict)}  # keys compare equal to the plain names too

# Families whose expected efficiency can be overridden (`expect`), and the defaults used when the
# registry row has no figure for them.
DEFAULT_EXPECTED_EFF = {"mamf": 0.75, "hbm": 0.75, "h2d": 0.80, "p2p": 0.80, "busbw": 0.75}
HOST_DEVICE_TYPES = {"cpu"}


@dataclass(frozen=True)
class Thresholds:
    """How strict the verdicts are. Ratios are of the expected efficiency (see the module docstring)."""

    warn_below: float = 0.90
    fail_below: float = 0.75
    above_spec_tolerance: float = 0.02  # measured > spec * (1 + this): suspect
    fleet_margin: float = 0.10  # a node ceiling this far below the fleet median: suspect node (Verdict.FAIL)
    node_spread: float = 0.10  # a GPU this far below the best GPU of its node: Verdict.WARN
    min_fleet_nodes: int = 3  # fewer nodes: no fleet statistics
    expect: Mapping[str, float] = field(default_factory=dict)  # family -> expected efficiency (0..1)
    minimum: Mapping[str, float] = field(default_factory=dict)  # check name -> floor in its unit
    require: tuple = ()  # probes that must have run (else Verdict.INCOMPLETE)
    strict: bool = False  # Verdict.INCOMPLETE makes the exit code 1

    def __post_init__(self):
        if not 0 < self.fail_below <= self.warn_below:
            raise UsageError(f"thresholds: need 0 < fail_below ({self.fail_below}) <= warn_below ({self.warn_below})")
        for name in ("fleet_margin", "node_spread", "above_spec_tolerance"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"thresholds: {name} must be a fraction in [0, 1), got {getattr(self, name)}")
        for check, value in self.minimum.items():
            if not (check in ("hbm", "h2d", "d2h", "p2p") or check.startswith(("mamf.", "busbw.", "storage."))):
                raise UsageError(
                    f"--min {check}: not a check name (mamf.<dtype>, hbm, h2d, d2h, p2p, busbw.<op>, "
                    "storage.<mode>[.buffered])"
                )
            if not isinstance(value, (int, float)):
                raise UsageError(f"--min {check}={value!r}: needs a number in the check's unit")
        for family, value in self.expect.items():
            if family not in DEFAULT_EXPECTED_EFF:
                raise UsageError(f"--expect {family}: unknown; one of {', '.join(DEFAULT_EXPECTED_EFF)}")
            if not 0 < value <= 1.5:
                raise UsageError(f"--expect {family}={value}: an efficiency is a fraction such as 0.8")

    @classmethod
    def from_mapping(cls, data: Mapping, origin: str = "acceptance file") -> "Thresholds":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(
                f"{origin}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "require" in values:
            values["require"] = tuple(values["require"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise UsageError(f"{origin}: {exc}") from None

    def expected(self, family: str, registry_value: Optional[float]) -> float:
        """Expected efficiency: the override, else the registry's, else the family default."""
        if family in self.expect:
            return float(self.expect[family])
        return registry_value if registry_value else DEFAULT_EXPECTED_EFF[family]


def pct(value: Optional[float], of: Optional[float]) -> Optional[float]:
    """value as a percentage of `of` (None when either is unknown or `of` is 0)."""
    if value is None or not of or (isinstance(value, float) and math.isnan(value)):
        return None
    return 100.0 * value / of


def judge_efficiency(
    value: float, spec_value: float, expected_eff: float, th: Thresholds, unit: str, above_line_rate_ok: bool = False
) -> tuple[Verdict, str]:
    """Verdict and reason of a measured figure against its advertised spec (see the module docstring)."""
    eff = value / spec_value
    ratio = eff / expected_eff
    where = f"{value:.4g} {unit} is {100 * eff:.1f}% of the {spec_value:g} {unit} spec"
    normal = f"normal is ~{100 * expected_eff:.0f}%"
    if eff > 1 + th.above_spec_tolerance:
        if above_line_rate_ok:
            return Verdict.PASS, f"{where}: above line rate (NVLS/SHARP offload? set NCCL_ALGO=Ring to read the wire)"
        return Verdict.WARN, f"{where}: above the advertised peak: suspect timing, clocks or the spec"
    if ratio >= th.warn_below:
        return Verdict.PASS, f"{where} ({normal})"
    if ratio >= th.fail_below:
        return Verdict.WARN, f"{where}, below the normal ~{100 * expected_eff:.0f}% ({100 * ratio:.0f}% of it)"
    return Verdict.FAIL, f"{where}, far below the normal ~{100 * expected_eff:.0f}% ({100 * ratio:.0f}% of it)"


def judge_without_spec(device_type: str, device_name: str) -> tuple[Verdict, str]:
    """INFO on a host device (nothing to judge against); WARN for an accelerator missing from the registry."""
    if device_type in HOST_DEVICE_TYPES:
        return Verdict.INFO, f"informational: measured on {device_type}, no advertised spec to compare with"
    return Verdict.WARN, f"no advertised spec for {device_name!r}: add its row with --specs to get an efficiency"


def judge_minimum(
    verdict: Verdict, reason: str, check: str, value: float, unit: str, th: Thresholds
) -> tuple[Verdict, str]:
    """Apply an absolute floor for `check` (if one is set) on top of a verdict: below it FAIL; met, an INFO
    becomes PASS (the floor is something to judge against) and other verdicts stay."""
    floor = th.minimum.get(check)
    if floor is None:
        return verdict, reason
    if value < floor:
        return Verdict.FAIL, f"{value:.4g} {unit} is below the required {floor:g} {unit}; {reason}"
    return (Verdict.PASS if verdict == Verdict.INFO else verdict), f"{reason}; meets the required {floor:g} {unit}"


def worst(verdicts) -> Verdict:
    """The most severe verdict of a collection (Verdict.PASS for none)."""
    return Verdict(min(verdicts, key=SEVERITY.__getitem__, default=Verdict.PASS))


OVERALL_ORDER = (Verdict.FAIL, Verdict.INCOMPLETE, Verdict.WARN, Verdict.PASS, Verdict.INFO)


def overall(verdicts) -> Verdict:
    """The verdict of a collection: the first of FAIL, INCOMPLETE, WARN, PASS, INFO present (judged verdicts
    before INFO: a PASS beside informational figures is a PASS); N/A when there is nothing else."""
    present = set(verdicts)
    return next((v for v in OVERALL_ORDER if v in present), Verdict.NA)


def exit_code(verdicts, strict: bool = False) -> int:
    verdicts = set(verdicts)
    if Verdict.FAIL in verdicts or (strict and Verdict.INCOMPLETE in verdicts):
        return FAILED
    return OK
