"""Telemetry checks: throttling per GPU, and the temperature spread of the GPUs of a node under the same load.

From the records' `telemetry` objects (flattened by the loader: `telemetry.temp_c.median`,
`telemetry.throttle.power`, ...; `mlbench.telemetry.summary`):

- `telemetry.throttle`, per GPU with telemetry (per CPU only when one of its records was throttled):
  WARN when some measurement was `throttled` (a throttling cause held more than 5% of its span),
  naming the worst cause, its share and the temperature; PASS otherwise. The clocks, power and
  hottest temperature over the run are in `at`. A GPU whose records say there was no telemetry
  backend gets INFO with the reason.
- `telemetry.temp_spread`, per node with at least two GPUs measured under the same load (same probe
  and the same point: mode, dtype, shape, op, size): WARN when the median temperatures of two of them
  under one load differ by more than `TEMP_SPREAD_C` (airflow, a failing fan, a badly seated heat
  sink), PASS otherwise.

These rows carry no `value` (the fleet view ranks values where higher is better). A judged figure
measured while throttled is capped at WARN where it is judged (`judging.spec_check`); `with_throttle_words`
gives the checkers each record's throttle words for its reason.
"""

from __future__ import annotations

from ...sizes import format_bytes
from ...telemetry import THROTTLED_FLAG, row_words
from ..verdicts import HOST_DEVICE_TYPES, Verdict
from .judging import Context
from .rows import NODE, CheckRow, Subject, as_number

TEMP_SPREAD_C = 5.0
DEVICE_KEYS = ["host", "device_index", "device_type", "device_name"]
LOAD_COLUMNS = ("params.mode", "params.dtype", "params.m", "params.n", "params.k", "params.op", "params.bytes")
TEMP = "telemetry.temp_c.median"
THROTTLE_PREFIX = "telemetry.throttle."


def throttled_rows(frame):
    """Per row: the record carries the flag `throttled` (a fast substring test first, the words only where it hits)."""
    import numpy as np
    import pandas as pd

    values = frame["flags"].to_numpy()
    if not len(values):
        return pd.Series(False, index=frame.index, dtype=bool)
    hits = np.flatnonzero(frame["flags"].str.contains(THROTTLED_FLAG, regex=False, na=False).to_numpy())
    exact = np.zeros(len(values), dtype=bool)
    exact[hits] = [THROTTLED_FLAG in str(values[i]).split(",") for i in hits]
    return pd.Series(exact, index=frame.index)


def with_throttle_words(frame):
    """The frame with a `throttle` column: the causes and temperature in words for a throttled record
    ("hardware slowdown 34% of the span at 87 C"), "" for the others."""
    import pandas as pd

    words = pd.Series("", index=frame.index, dtype=object)
    if "flags" in frame and len(frame):
        flagged = throttled_rows(frame)
        columns = [c for c in frame.columns if c.startswith(THROTTLE_PREFIX) or c == "telemetry.temp_c.max"]
        for index, row in frame.loc[flagged, columns].iterrows():
            words[index] = row_words(row.to_dict()) or "throttle counters not recorded"
    return frame.assign(throttle=words)


def telemetry_checks(frame, ctx: Context) -> list[CheckRow]:
    if "telemetry.backend" not in frame and "telemetry.reason" not in frame:
        return []
    d = frame[frame[[c for c in ("telemetry.backend", "telemetry.reason") if c in frame]].notna().any(axis=1)]
    if d.empty:
        return []
    return throttle_checks(d) + spread_checks(d)


def _range(part, column: str, unit: str) -> str:
    """`1755-1980 MHz` (the medians of the records) or `1980 MHz`; "" when not recorded."""
    if column not in part:
        return ""
    values = [v for v in map(as_number, part[column]) if v is not None]
    if not values:
        return ""
    low, high = min(values), max(values)
    return f"{low:.0f} {unit}" if round(low) == round(high) else f"{low:.0f}-{high:.0f} {unit}"


def _figures_text(part) -> str:
    """What the device ran at over its records: clocks, power, hottest temperature."""
    items = [
        ("SM clock", _range(part, "telemetry.sm_clock_mhz.median", "MHz")),
        ("power", _range(part, "telemetry.power_w.median", "W")),
        ("limit", _range(part, "telemetry.power_limit_w.median", "W")),
    ]
    hottest = [v for v in map(as_number, part.get("telemetry.temp_c.max", ())) if v is not None]
    if hottest:
        items.append(("max", f"{max(hottest):.0f} C"))
    return ", ".join(f"{name} {value}" for name, value in items if value)


def throttle_checks(d) -> list[CheckRow]:
    """`telemetry.throttle` per device (see the module docstring)."""
    rows = []
    throttled = throttled_rows(d)
    for key, part in d.groupby(DEVICE_KEYS, sort=True, dropna=False):
        host, index, device_type, name = key
        subject = Subject(host, str(index), device_type, name)
        hot = part[throttled.loc[part.index]]
        backend = part["telemetry.backend"].dropna().tolist() if "telemetry.backend" in part else []
        if hot.empty and device_type in HOST_DEVICE_TYPES:
            continue
        if not backend:
            reason = part["telemetry.reason"].dropna().astype(str)
            rows.append(
                subject.row(
                    probe="telemetry",
                    check="telemetry.throttle",
                    verdict=Verdict.INFO,
                    reason=f"no telemetry: {reason.iloc[0] if len(reason) else 'not recorded'}",
                )
            )
            continue
        at = _figures_text(part)
        if hot.empty:
            rows.append(
                subject.row(
                    probe="telemetry",
                    check="telemetry.throttle",
                    at=at,
                    verdict=Verdict.PASS,
                    reason=f"not throttled in {len(part)} measurement(s) ({backend[0]} telemetry)",
                )
            )
            continue
        worst = _worst(hot)
        rows.append(
            subject.row(
                probe="telemetry",
                check="telemetry.throttle",
                at=at,
                verdict=Verdict.WARN,
                reason=f"throttled in {len(hot)} of {len(part)} measurement(s); worst: "
                f"{worst}: clocks held down, figures measured then are low",
            )
        )
    return rows


def _worst(hot) -> str:
    """The words of the throttled record with the largest throttling share, and where it was measured."""
    columns = [c for c in hot.columns if c.startswith(THROTTLE_PREFIX)]
    shares = hot[columns].apply(lambda col: col.map(as_number)).max(axis=1) if columns else None
    row = hot.loc[shares.astype(float).idxmax()] if shares is not None and shares.notna().any() else hot.iloc[0]
    words = row_words(row.to_dict()) or "throttle counters not recorded"
    return f"{words} ({row['probe']} {_load_words(row)})".replace(" ()", "")


def _load_words(row) -> str:
    """The point a record measured, in words: `sweep bf16 8192x8192x8192`, `copy 1 GiB`."""
    parts = [str(row.get(c)) for c in ("params.mode", "params.dtype", "params.op") if _present(row.get(c))]
    dims = [as_number(row.get(f"params.{c}")) for c in "mnk"]
    if all(v is not None for v in dims):
        parts.append("x".join(str(int(v)) for v in dims))
    size = as_number(row.get("params.bytes"))
    if size is not None:
        parts.append(format_bytes(size))
    return " ".join(parts)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and value != value) and value != ""


def _text(value) -> str:
    return str(value) if _present(value) else ""


def spread_checks(d) -> list[CheckRow]:
    """`telemetry.temp_spread` per node (see the module docstring)."""
    gpus = d[~d["device_type"].isin(HOST_DEVICE_TYPES)] if TEMP in d else d.iloc[:0]
    gpus = gpus[gpus[TEMP].map(as_number).notna()] if len(gpus) else gpus
    if gpus.empty:
        return []
    loads = [c for c in LOAD_COLUMNS if c in gpus]
    load = gpus["probe"].map(_text)
    for column in loads:
        load = load + "|" + gpus[column].map(_text)
    keyed = gpus.assign(_temp=gpus[TEMP].map(as_number).astype(float), _load=load)
    per_device = keyed.groupby(["host", "_load", "device_index"], sort=True)["_temp"].median()
    rows = []
    for host, part in per_device.groupby(level=0, sort=True):
        worst = None
        for load, temps in part.groupby(level=1, sort=True):
            temps = temps.droplevel([0, 1])
            if len(temps) < 2:
                continue
            spread = float(temps.max() - temps.min())
            if worst is None or spread > worst[0]:
                worst = (spread, load, temps.idxmax(), float(temps.max()), temps.idxmin(), float(temps.min()))
        if worst is None:
            continue
        spread, load, hot, hot_c, cool, cool_c = worst
        example = keyed[(keyed["host"] == host) & (keyed["_load"] == load)].iloc[0]
        where = f"{example['probe']} {_load_words(example)}".strip()
        at = f"spread {spread:.1f} C under {where}"
        subject = Subject(str(host), NODE)
        if spread > TEMP_SPREAD_C:
            rows.append(
                subject.row(
                    probe="telemetry",
                    check="telemetry.temp_spread",
                    at=at,
                    verdict=Verdict.WARN,
                    reason=f"GPU {hot} ran {spread:.1f} C hotter than GPU {cool} under the same load "
                    f"({hot_c:.0f} C against {cool_c:.0f} C; more than {TEMP_SPREAD_C:.0f} C): "
                    "check airflow, fans and heat sinks",
                )
            )
        else:
            rows.append(
                subject.row(
                    probe="telemetry",
                    check="telemetry.temp_spread",
                    at=at,
                    verdict=Verdict.PASS,
                    reason=f"GPUs within {spread:.1f} C of each other under the same load "
                    f"(at most {TEMP_SPREAD_C:.0f} C)",
                )
            )
    return rows
