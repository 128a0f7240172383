"""A window of telemetry as a record's `telemetry` object, and what readers make of that object.

The object (docs/reference.md):

    {"backend": "nvml", "samples": 12, "start_s": 3.5, "span_s": 1.2,
     "sm_clock_mhz": {"min": 1755, "median": 1980, "max": 1980}, ... one entry per figure read ...,
     "throttle": {"power": 0.25, "thermal": 0.0, "hw_slowdown": 0.0, ...},
     "throttle_sampled": ["hw_slowdown"]}

`throttle[cause]` is the share of the window's span the cause held: from the driver's cumulative
counters read at both ends, delta(amount) / delta(base) (the base is nanoseconds of our clock, or
the driver's own reference), clamped to 0..1. A cause the backend sees only in its current-reasons
mask (no counter) gets the share of the window's samples in which it was active, and is listed in
`throttle_sampled`. Without a backend the object is `{"backend": null, "reason": "..."}`.

Pure Python: the harness builds the object, the reporter reads it back (`flat_columns`, `throttle_words`).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional, Sequence

from ..stats import percentile
from .model import FIGURES, THROTTLED_ABOVE, Cause, CounterReading, Sample

PREFIX = "telemetry."


def figure_stats(samples: Sequence[Sample]) -> dict:
    """figure -> {"min", "median", "max"} over the samples that carry it, in FIGURES order."""
    out = {}
    for name in FIGURES:
        values = [s.figures[name] for s in samples if s.figures.get(name) is not None]
        if values:
            out[name] = {
                "min": _round(min(values), 3),
                "median": _round(percentile(values, 50), 3),
                "max": _round(max(values), 3),
            }
    return out


def counter_fractions(before: CounterReading, after: CounterReading) -> dict:
    """Cause -> share of the span between two readings, from the counters both readings carry.

    The share is delta(amount) / delta(base); a base of None (or one that did not move, when the
    amounts are nanoseconds) is our clock's span in ns. A counter that went backwards (a driver
    reset) or a span of zero gives no share.
    """
    span_ns = (after.t_s - before.t_s) * 1e9
    amount_ns = before.amount_ns and after.amount_ns
    out = {}
    for cause, (amount1, base1) in after.counters.items():
        if cause not in before.counters:
            continue
        amount0, base0 = before.counters[cause]
        delta = amount1 - amount0
        denominator = base1 - base0 if base0 is not None and base1 is not None else None
        if denominator is None or (denominator <= 0 and amount_ns):
            denominator = span_ns if amount_ns else None
        if delta < 0 or not denominator or denominator <= 0:
            continue
        out[Cause(cause)] = min(1.0, max(0.0, delta / denominator))
    return out


def sampled_fractions(samples: Sequence[Sample], causes: Iterable[Cause]) -> dict:
    """Cause -> share of the samples in which the driver said it was active."""
    if not samples:
        return {}
    return {cause: sum(cause in s.active for s in samples) / len(samples) for cause in causes}


def window_object(
    backend: str,
    samples: Sequence[Sample],
    before: CounterReading,
    after: CounterReading,
    origin_s: float,
    sampled_causes: Iterable[Cause] = (),
) -> dict:
    """The record's `telemetry` object of the window between two readings (see the module docstring)."""
    fractions = counter_fractions(before, after)
    from_samples = sampled_fractions(samples, [c for c in sampled_causes if c not in fractions])
    obj = {
        "backend": str(backend),
        "samples": len(samples),
        "start_s": _round(before.t_s - origin_s, 6),
        "span_s": _round(after.t_s - before.t_s, 6),
    }
    obj.update(figure_stats(samples))
    throttle = {**fractions, **from_samples}
    obj["throttle"] = {str(cause): _round(throttle[cause], 6) for cause in Cause if cause in throttle}
    if from_samples:
        obj["throttle_sampled"] = [str(cause) for cause in Cause if cause in from_samples]
    return obj


def unavailable_object(reason: str) -> dict:
    """The `telemetry` object of a device without a backend."""
    return {"backend": None, "reason": reason}


def throttling(fractions: Mapping) -> list:
    """[(Cause, share)] of the throttling causes above THROTTLED_ABOVE, the largest first."""
    found = []
    for name, share in (fractions or {}).items():
        try:
            cause = Cause(name)
        except ValueError:
            continue
        if cause.throttles and _number(share) is not None and share > THROTTLED_ABOVE:
            found.append((cause, float(share)))
    return sorted(found, key=lambda item: (-item[1], item[0].value))


def is_throttled(obj: Optional[Mapping]) -> bool:
    """Whether a `telemetry` object says one throttling cause held more than THROTTLED_ABOVE of the span."""
    return bool(obj) and bool(throttling(obj.get("throttle") or {}))


def throttle_words(fractions: Mapping, temp_c: Optional[float] = None) -> str:
    """`hardware slowdown 34% of the span at 87 C`: the throttling causes above the limit, the largest
    first, and the temperature ("" when nothing throttled)."""
    found = throttling(fractions)
    if not found:
        return ""
    text = ", ".join(f"{cause.words} {100 * share:.0f}% of the span" for cause, share in found)
    temp = _number(temp_c)
    return text + (f" at {temp:.0f} C" if temp is not None else "")


def object_words(obj: Optional[Mapping]) -> str:
    """`throttle_words` of a `telemetry` object, at its highest temperature."""
    if not obj:
        return ""
    return throttle_words(obj.get("throttle") or {}, (obj.get("temp_c") or {}).get("max"))


def flat_columns(objects: Sequence[Optional[Mapping]]) -> dict:
    """Column name -> values (None where a record lacks it) of `telemetry` objects, nested keys joined by
    dots: `telemetry.backend`, `telemetry.temp_c.max`, `telemetry.throttle.power`. Lists are left out."""
    names: dict = {}
    flat = []
    for obj in objects:
        row = {}
        if isinstance(obj, Mapping):
            _flatten(obj, PREFIX[:-1], row)
        for name in row:
            names.setdefault(name, None)
        flat.append(row)
    return {name: [row.get(name) for row in flat] for name in names}


def _flatten(obj: Mapping, prefix: str, row: dict) -> None:
    for key, value in obj.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            _flatten(value, name, row)
        elif not isinstance(value, (list, tuple)):
            row[name] = value


def row_words(row: Mapping) -> str:
    """`throttle_words` of one flat row (the reporter's frame row: `telemetry.throttle.<cause>` columns)."""
    marker = f"{PREFIX}throttle."
    fractions = {
        name[len(marker) :]: value for name, value in row.items() if isinstance(name, str) and name.startswith(marker)
    }
    return throttle_words(fractions, row.get(f"{PREFIX}temp_c.max"))


def _number(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _round(value: float, digits: int) -> float:
    return round(float(value), digits)
