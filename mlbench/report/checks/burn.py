"""Burn-in checks: one `burn` row per device and dtype, from its interval records.

- FAIL: an interval record is an error (a result that differs bit for bit from the first one, a memory
  pattern error, error-counter growth: the reason is the first such record's words, which name the GPU,
  the iteration and the first bad element), or the device's first result differs from the other GPUs
  of the same model running the same workload (`mlbench.burn.plan.odd_ones` over the records'
  `result_sha256`, across every host in the report; same model, dtype, shape and library).
- WARN: the device's median interval TFLOPS is more than `SLOW_MARGIN` below the median of its
  siblings' on the same host (`mlbench.burn.plan.slow_ones`), named with the throttling seen, if any.
- PASS: every interval clean; the row says how much was compared and checked.
- INCOMPLETE: no interval record that measured anything.

`value` is the median interval TFLOPS, `errors` the differing elements over all intervals.
"""

from __future__ import annotations

from ...burn.plan import SLOW_MARGIN, format_duration, odd_ones, slow_ones
from ...stats import median
from ..verdicts import Verdict
from .judging import NO_RECORD, Context, incomplete_check, no_ok_reasons
from .rows import CheckRow, Subject, as_number, count_text

KEYS = ["host", "device_index", "device_type", "device_name", "params.dtype"]
SHAPE = ["params.m", "params.n", "params.k"]
FAMILY = ["device_name", "params.dtype", *SHAPE, "params.library"]  # results comparable bit for bit


def _column(d, name: str):
    import pandas as pd

    return d[name] if name in d else pd.Series(None, index=d.index, dtype=object)


def _numbers(values) -> list:
    return [v for v in map(as_number, values) if v is not None]


def _plain(value):
    """None for a missing value (NaN), so that family keys compare equal."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def _family(part) -> tuple:
    last = part.iloc[-1]
    return tuple(_plain(last.get(c)) if c in part else None for c in FAMILY)


def _digest(part):
    digests = [d for d in _column(part, "metrics.result_sha256") if isinstance(d, str) and d]
    return digests[-1] if digests else None


def _odd_devices(devices: dict) -> dict:
    """device key -> OddOne, within each family of comparable results."""
    families: dict = {}
    for key, part in devices.items():
        digest = _digest(part)
        if digest:
            families.setdefault(_family(part), {})[key] = digest
    odd = {}
    for members in families.values():
        odd.update(odd_ones(members))
    return odd


def _slow_devices(devices: dict) -> dict:
    """device key -> fraction below its siblings' median TFLOPS (same host and family)."""
    groups: dict = {}
    for key, part in devices.items():
        figures = _numbers(_column(part[part["status"] != "skipped"], "metrics.tflops"))
        groups.setdefault((key[0], _family(part)), {})[key] = median(figures) if figures else None
    slow = {}
    for members in groups.values():
        slow.update(slow_ones(members, SLOW_MARGIN))
    return slow


def _measured_words(part) -> str:
    intervals = len(part)
    iterations = int(sum(_numbers(_column(part, "metrics.iterations"))))
    elapsed = max(_numbers(_column(part, "metrics.elapsed_s")), default=0.0)
    passes = len(_numbers(_column(part, "metrics.pattern_bytes")))
    size = max(_numbers(_column(part, "metrics.pattern_bytes")), default=0.0)
    backends = [b for b in _column(part, "params.counters_backend") if isinstance(b, str)]
    words = [f"{intervals} interval(s) over {format_duration(round(elapsed))}, {iterations} iterations"]
    if passes:
        words.append(f"{passes} memory pattern pass(es) over {size / 2**30:.3g} GiB")
    backend = backends[-1] if backends else "none"
    words.append("no error counters" if backend == "none" else f"error counters ({backend})")
    return ", ".join(words)


def burn_checks(frame, ctx: Context) -> list[CheckRow]:
    d = frame[frame["probe"] == "burn"]
    if d.empty:
        return []
    devices = {key: part for key, part in d.groupby(KEYS, sort=True, dropna=False)}
    odd = _odd_devices(devices)
    slow = _slow_devices(devices)
    reasons = no_ok_reasons(d, KEYS)
    rows = []
    for key, part in devices.items():
        host, index, device_type, name, dtype = key
        subject = Subject(host, str(index), device_type, name)
        measured = part[part["status"] != "skipped"]
        tflops = _numbers(_column(measured, "metrics.tflops"))
        shape = "x".join(count_text(part.iloc[-1].get(c)) for c in SHAPE) if all(c in part for c in SHAPE) else ""
        at = f"{dtype} {shape}".strip()
        if measured.empty:
            rows.append(incomplete_check(subject, "burn", "burn", **reasons.get(key, NO_RECORD)))
            continue
        value = median(tflops) if tflops else None
        mismatches = sum(_numbers(_column(part, "metrics.mismatches")))
        errors = part[part["status"] == "error"]
        row = dict(
            probe="burn",
            check="burn",
            value=value,
            unit="TFLOPS" if value is not None else None,
            at=at,
            errors=mismatches,
        )
        if len(errors):
            first = str(errors.iloc[0]["error"])[:300]
            verdict, reason = Verdict.FAIL, f"{len(errors)} of {len(part)} interval(s) failed; first: {first}"
        elif key in odd:
            found = odd[key]
            how = (
                "no majority: cannot tell which is wrong"
                if found.ambiguous
                else f"{found.majority} GPU(s) agree with each other, {found.agree} with this one"
            )
            verdict, reason = (
                Verdict.FAIL,
                (f"its results differ bit for bit from the other {name} GPU(s) running the same workload ({how})"),
            )
        elif key in slow:
            throttle = [t for t in _column(part, "throttle") if isinstance(t, str) and t]
            verdict = Verdict.WARN
            reason = (
                f"{100 * slow[key]:.0f}% slower than the median of the other {name} GPU(s) of {host} under the "
                f"same load" + (f"; throttled: {throttle[0]}" if throttle else "")
            )
        else:
            verdict = Verdict.PASS
            reason = f"clean: every result bit for bit identical to the first; {_measured_words(part)}"
        rows.append(subject.row(verdict=verdict, reason=reason, **row))
    return rows
