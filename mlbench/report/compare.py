"""A run against a baseline run: each check's change in %, regressions, improvements, new and missing checks.

Both runs are judged as `mlbench report` judges them (`api.evaluate`); the checks with a measured figure of
the measuring probes (not node sanity, not the derived fleet/spread/baseline rows; a check with several rows
on one node keeps its best) are then matched:

- by node: when both runs have the same node names, a check of a device (or node) is matched by
  (host, device, check);
- by the fleet's distribution: when the node sets differ (other nodes, more nodes), a check is matched by its
  name across the fleet, and the medians of the two distributions are compared (lowest values and counts shown).

change % = 100 x (new - baseline) / baseline. A check regresses when it is worse than the baseline by more
than its tolerance (`Tolerances`: `--max-regression 0.05` by default, per family `mamf=0.03,storage=0.15`):
lower for figures where higher is better (every figure of the measuring probes), higher for the few where
lower is better (units in `LOWER_IS_BETTER_UNITS`). It improves when it is better by more than the same
tolerance, and is unchanged in between. A check with a baseline figure and none now is missing; one with a
figure now and none in the baseline is new.

Exit code: 1 when a check regressed (or, with `strict`, one is missing); 0 otherwise. `baseline_rows`
turns a comparison into check rows (`probe` "baseline", `check` "baseline:<check>") that `mlbench report
--baseline` adds next to the spec verdicts: regressed FAIL, missing INCOMPLETE, new INFO, else PASS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping, Optional

from ..exitcodes import FAILED, OK, UsageError
from .checks.rows import CheckRow
from .verdicts import Verdict

DEFAULT_MAX_REGRESSION = 0.05
SKIPPED_PROBES = ("node", "fleet", "baseline")  # node facts and rows derived from other checks
LOWER_IS_BETTER_UNITS = {"us", "ms", "s", "% full"}
FLEET = "fleet"  # the host of a check matched across the fleet
COLUMNS = (
    "host",
    "device",
    "device_name",
    "probe",
    "check",
    "unit",
    "base_value",
    "new_value",
    "change_pct",
    "allowed_pct",
    "change",
    "base_verdict",
    "new_verdict",
    "base_count",
    "new_count",
    "base_min",
    "new_min",
    "reason",
)


class Change(StrEnum):
    """What happened to a check between the baseline and the new run, the most serious first."""

    REGRESSED = "regressed"
    MISSING = "missing"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    NEW = "new"


CHANGE_ORDER = {change: rank for rank, change in enumerate(Change)}
BASELINE_VERDICT = {
    Change.REGRESSED: Verdict.FAIL,
    Change.MISSING: Verdict.INCOMPLETE,
    Change.NEW: Verdict.INFO,
    Change.IMPROVED: Verdict.PASS,
    Change.UNCHANGED: Verdict.PASS,
}


@dataclass(frozen=True)
class Tolerances:
    """The largest regression accepted, as a fraction: a default, and overrides by check family or name.

    A check's family is the part of its name before the first dot (`mamf` of `mamf.bf16`, `busbw`,
    `storage`), the check itself for undotted names (`hbm`, `h2d`), or its probe (`membw`, `collectives`,
    `diskio`); the most specific given wins: the full check name, then the family, then the probe.
    """

    default: float = DEFAULT_MAX_REGRESSION
    overrides: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, texts) -> "Tolerances":
        """From `--max-regression` values: `0.05`, `mamf=0.03,storage=0.15`, `0.1,mamf=0.03` (repeatable)."""
        default, overrides = DEFAULT_MAX_REGRESSION, {}
        for text in [texts] if isinstance(texts, str) else list(texts or ()):
            for item in (part.strip() for part in str(text).split(",")):
                if not item:
                    continue
                name, sep, number = item.rpartition("=")
                value = _fraction(number, item)
                if sep:
                    if not name.strip():
                        raise UsageError(f"--max-regression {item!r}: expected FAMILY=FRACTION, e.g. mamf=0.03")
                    overrides[name.strip()] = value
                else:
                    default = value
        return cls(default, overrides)

    def allowed(self, check: str, probe: str) -> float:
        family = check.split(".", 1)[0]
        for name in (check, family, probe):
            if name in self.overrides:
                return self.overrides[name]
        return self.default

    def describe(self) -> str:
        more = ", ".join(f"{name} {100 * value:g}%" for name, value in sorted(self.overrides.items()))
        return f"{100 * self.default:g}%" + (f" ({more})" if more else "")


def _fraction(text: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--max-regression {item!r}: expected a fraction such as 0.05, or FAMILY=FRACTION") from None
    if not 0 <= value < 1 or math.isnan(value):
        raise UsageError(f"--max-regression {item!r}: a fraction in [0, 1), e.g. 0.05 for 5%")
    return value


def higher_is_better(unit) -> bool:
    return str(unit) not in LOWER_IS_BETTER_UNITS


@dataclass(frozen=True)
class Comparison:
    """The matched checks of two runs (`rows`: a DataFrame of COLUMNS) and how they were matched."""

    rows: object  # pandas.DataFrame
    by_node: bool
    base_hosts: tuple
    new_hosts: tuple
    tolerances: Tolerances

    def counts(self) -> dict:
        found = self.rows["change"].value_counts().to_dict() if len(self.rows) else {}
        return {change: int(found.get(change, 0)) for change in Change}

    def exit_code(self, strict: bool = False) -> int:
        counts = self.counts()
        return FAILED if counts[Change.REGRESSED] or (strict and counts[Change.MISSING]) else OK

    def matching(self) -> str:
        if self.by_node:
            return f"matched by node name ({len(self.new_hosts)} node(s))"
        only_base = sorted(set(self.base_hosts) - set(self.new_hosts))
        only_new = sorted(set(self.new_hosts) - set(self.base_hosts))
        said = [
            f"only in the baseline: {_names(only_base)}" if only_base else "",
            f"only in the new run: {_names(only_new)}" if only_new else "",
        ]
        return (
            "matched across the fleet (median of each check's distribution; the node sets differ: "
            + "; ".join(s for s in said if s)
            + ")"
        )


def _names(hosts: list, limit: int = 8) -> str:
    return ", ".join(hosts[:limit]) + (f" and {len(hosts) - limit} more" if len(hosts) > limit else "")


def measured_checks(checks):
    """The checks a comparison is about: the measuring probes' rows (with or without a figure). A check a node
    has several rows of (collectives jobs of different sizes, several runs in one directory) keeps its best."""
    part = checks[~checks["probe"].isin(SKIPPED_PROBES) & ~checks["check"].astype(str).str.contains(":")]
    part = part.assign(value=part["value"].astype(float))
    better = part["value"].where(part["unit"].map(higher_is_better), -part["value"])
    part = part.assign(_better=better).sort_values("_better", ascending=False, na_position="last", kind="stable")
    return part.drop_duplicates(["host", "device", "check"]).drop(columns="_better").sort_index()


def compare_checks(base_checks, new_checks, tolerances: Optional[Tolerances] = None) -> Comparison:
    """Match the checks of two judged runs (verdict frames of `api.evaluate`) and classify each change."""
    tolerances = tolerances or Tolerances()
    base, new = measured_checks(base_checks), measured_checks(new_checks)
    base_hosts, new_hosts = _hosts(base), _hosts(new)
    by_node = set(base_hosts) == set(new_hosts)
    pairs = _by_node(base, new) if by_node else _by_fleet(base, new)
    rows = [_classify(pair, tolerances) for pair in pairs]
    return Comparison(_frame(rows), by_node, base_hosts, new_hosts, tolerances)


def _hosts(checks) -> tuple:
    """The nodes a run measured (not the `*` of a required probe that has no record at all)."""
    return tuple(sorted(set(checks["host"].astype(str)) - {"*"}))


@dataclass(frozen=True)
class _Side:
    value: Optional[float]
    verdict: str = ""
    count: int = 0
    minimum: Optional[float] = None


def _by_node(base, new) -> list:
    keys = ["host", "device", "check"]
    base_rows = {
        tuple(r[:3]): r
        for r in base[keys + ["value", "verdict", "probe", "unit", "device_name"]].itertuples(index=False, name=None)
    }
    new_rows = {
        tuple(r[:3]): r
        for r in new[keys + ["value", "verdict", "probe", "unit", "device_name"]].itertuples(index=False, name=None)
    }
    pairs = []
    for key in sorted(set(base_rows) | set(new_rows), key=lambda k: tuple(map(str, k))):
        b, n = base_rows.get(key), new_rows.get(key)
        about = n if n is not None and _number(n[3]) is not None else (b if b is not None else n)
        host, device, check = key
        sides = [
            _Side(_number(r[3]), str(r[4]), 1 if _number(r[3]) is not None else 0) if r is not None else _Side(None)
            for r in (b, n)
        ]
        pairs.append(
            (
                dict(
                    host=str(host), device=str(device), check=check, probe=about[5], unit=about[6], device_name=about[7]
                ),
                *sides,
            )
        )
    return pairs


def _by_fleet(base, new) -> list:
    pairs = []
    for check in sorted(set(base["check"]) | set(new["check"])):
        b, n = base[base["check"] == check], new[new["check"] == check]
        about = n if n["value"].notna().any() else (b if len(b) else n)
        names = sorted(about["device_name"].dropna().astype(str).unique())
        sides = [_fleet_side(part) for part in (b, n)]
        pairs.append(
            (
                dict(
                    host=FLEET,
                    device="",
                    check=check,
                    probe=about["probe"].iloc[0],
                    unit=about["unit"].dropna().iloc[0] if about["unit"].notna().any() else None,
                    device_name=", ".join(names),
                ),
                *sides,
            )
        )
    return pairs


def _fleet_side(part) -> _Side:
    values = part["value"].dropna()
    if values.empty:
        return _Side(None, _worst(part["verdict"]) if len(part) else "")
    return _Side(float(values.median()), _worst(part["verdict"]), int(values.size), float(values.min()))


def _worst(verdicts) -> str:
    from .verdicts import SEVERITY

    known = [v for v in verdicts.astype(str) if v in SEVERITY]
    return min(known, key=SEVERITY.__getitem__) if known else ""


def _number(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _classify(pair, tolerances: Tolerances) -> dict:
    about, base, new = pair
    allowed = tolerances.allowed(str(about["check"]), str(about["probe"]))
    row = dict(
        about,
        base_value=base.value,
        new_value=new.value,
        change_pct=None,
        allowed_pct=100 * allowed,
        base_verdict=base.verdict,
        new_verdict=new.verdict,
        base_count=base.count,
        new_count=new.count,
        base_min=base.minimum,
        new_min=new.minimum,
    )
    unit = about["unit"] or ""
    if base.value is None and new.value is None:
        return dict(row, change=None, reason="measured in neither run")
    if new.value is None:
        why = f" ({new.verdict})" if new.verdict else ""
        return dict(
            row,
            change=Change.MISSING,
            reason=f"{base.value:.4g} {unit} in the baseline, not measured in the new run{why}",
        )
    if base.value is None:
        return dict(row, change=Change.NEW, reason=f"{new.value:.4g} {unit}, not measured in the baseline")
    if base.value == 0:
        return dict(row, change=Change.NEW, reason=f"{new.value:.4g} {unit}; the baseline measured 0")
    change = 100 * (new.value - base.value) / abs(base.value)
    worse = -change if higher_is_better(unit) else change
    words = f"{new.value:.4g} {unit} vs {base.value:.4g} in the baseline ({change:+.1f}%"
    if worse > 100 * allowed:
        return dict(
            row,
            change_pct=change,
            change=Change.REGRESSED,
            reason=f"{words}; more than the {100 * allowed:g}% allowed)",
        )
    if -worse > 100 * allowed:
        return dict(row, change_pct=change, change=Change.IMPROVED, reason=f"{words}; improved)")
    return dict(row, change_pct=change, change=Change.UNCHANGED, reason=f"{words}; within {100 * allowed:g}%)")


def _frame(rows: list):
    import pandas as pd

    frame = pd.DataFrame([r for r in rows if r["change"] is not None], columns=list(COLUMNS))
    order = frame["change"].map(CHANGE_ORDER)
    worse = frame["change_pct"].astype(float).abs().fillna(0)
    frame = frame.assign(_order=order, _worse=-worse).sort_values(["_order", "_worse", "check", "host", "device"])
    frame["change"] = frame["change"].map(str)
    return frame.drop(columns=["_order", "_worse"]).reset_index(drop=True)


def baseline_rows(comparison: Comparison, base_label: str) -> list[CheckRow]:
    """One check row per compared check: the baseline verdict with its reason (see the module docstring)."""
    out = []
    for r in comparison.rows.itertuples(index=False):
        change = Change(r.change)
        value = _number(r.new_value)
        out.append(
            CheckRow(
                host=r.host,
                device=r.device or "fleet",
                device_name=r.device_name or None,
                probe="baseline",
                check=f"baseline:{r.check}",
                value=value,
                unit=r.unit,
                at=f"vs {base_label}",
                reference=_number(r.base_value),
                pct_of_reference=100 * value / r.base_value if value is not None and _number(r.base_value) else None,
                verdict=BASELINE_VERDICT[change],
                reason=f"{change}: {r.reason}",
            )
        )
    return out


def summary_line(comparison: Comparison, base_label: str, strict: bool = False) -> str:
    counts = comparison.counts()
    verdict = Verdict.FAIL if comparison.exit_code(strict) else Verdict.PASS
    said = ", ".join(f"{counts[change]} {change}" for change in Change)
    return (
        f"**Against the baseline ({base_label}): {verdict}**: {said}; max regression "
        f"{comparison.tolerances.describe()}; {comparison.matching()}."
    )


def run_label(frame, paths) -> str:
    """How a run is named in text: its run id(s), else its path(s)."""
    runs = sorted(frame["run_id"].astype(str).unique()) if len(frame) else []
    if 0 < len(runs) <= 2:
        return ", ".join(runs)
    return ", ".join(map(str, paths))
