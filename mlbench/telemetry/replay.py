"""The fake backend: `MLBENCH_FAULTS=telemetry=FILE` replays a scripted timeline as device 0's telemetry.

Each line of FILE is a JSON object:

    {"t": 0.0, "sm_clock_mhz": 1980, "power_w": 690, "temp_c": 71,
     "throttle_ns": {"power": 0, "thermal": 0, "hw_slowdown": 0}}

`t` is seconds from the start of measuring (non-decreasing); the figures are any of
`mlbench.telemetry.model.FIGURES`; `throttle_ns` holds cumulative counters per cause (as a driver
keeps them: never decreasing). Figures step: a line's figures hold from its `t` until the next
line's. Counters grow linearly between lines (a driver's counters grow continuously), so a window
inside one segment holds each cause for exactly the segment's slope. Before the first line its values
hold; after the last line, the last line holds. A cause absent from a line keeps its previous value.
A file that cannot be read or breaks these rules is a usage error.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from typing import Mapping

from ..exitcodes import UsageError
from .model import FIGURES, Backend, Cause, CounterReading, Sample

WHAT = "MLBENCH_FAULTS telemetry"


@dataclass(frozen=True)
class Line:
    """One point of the timeline: seconds from the start, figures, cumulative counters (ns) per cause."""

    t_s: float
    figures: Mapping[str, float] = field(default_factory=dict)
    throttle_ns: Mapping[Cause, float] = field(default_factory=dict)


def _number(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{WHAT}: {where}: {what} must be a number, got {value!r}")
    return float(value)


def parse_line(obj, where: str, previous: Mapping[Cause, float]) -> Line:
    """A `Line` from one decoded JSON line; counters missing from it keep their `previous` values."""
    if not isinstance(obj, dict) or "t" not in obj:
        raise UsageError(f'{WHAT}: {where}: expected an object with "t"')
    t_s = _number(obj["t"], "t", where)
    figures = {}
    counters = dict(previous)
    for key, value in obj.items():
        if key == "t":
            continue
        if key == "throttle_ns":
            if not isinstance(value, dict):
                raise UsageError(f"{WHAT}: {where}: throttle_ns must be an object of cause -> ns")
            for name, ns in value.items():
                try:
                    cause = Cause(name)
                except ValueError:
                    known = ", ".join(c.value for c in Cause)
                    raise UsageError(f"{WHAT}: {where}: unknown cause {name!r} (one of {known})") from None
                counters[cause] = _number(ns, f"throttle_ns.{name}", where)
        elif key in FIGURES:
            if value is not None:
                figures[key] = _number(value, key, where)
        else:
            raise UsageError(f"{WHAT}: {where}: unknown key {key!r} (t, throttle_ns, {', '.join(FIGURES)})")
    return Line(t_s, figures, counters)


def load_timeline(path: str) -> tuple:
    """The timeline of a file, as `Line`s in order; a UsageError names the first problem."""
    try:
        with open(path, encoding="utf-8") as f:
            texts = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"{WHAT}: cannot read {path} ({exc.strerror or exc})") from None
    lines: list = []
    for lineno, text in enumerate(texts, 1):
        if not text.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{WHAT}: {where}: not JSON ({exc.msg})") from None
        line = parse_line(obj, where, lines[-1].throttle_ns if lines else {})
        if lines and line.t_s < lines[-1].t_s:
            raise UsageError(f"{WHAT}: {where}: t goes back from {lines[-1].t_s:g} to {line.t_s:g}")
        for cause, ns in line.throttle_ns.items():
            if lines and ns < lines[-1].throttle_ns.get(cause, 0.0):
                raise UsageError(f"{WHAT}: {where}: throttle_ns.{cause} decreases: counters are cumulative")
        lines.append(line)
    if not lines:
        raise UsageError(f"{WHAT}: {path} has no lines")
    return tuple(lines)


class ReplaySource:
    """A source that answers from a timeline; `origin_s` is the sampler-clock time of t = 0."""

    backend = Backend.REPLAY
    sampled_causes = frozenset()

    def __init__(self, lines: tuple, origin_s: float = 0.0):
        self.lines = lines
        self.origin_s = origin_s
        self._times = [line.t_s for line in lines]

    def _at(self, t_s: float) -> int:
        """Index of the line in force at sampler time t_s (the first line before it starts)."""
        return max(0, bisect.bisect_right(self._times, t_s - self.origin_s) - 1)

    def sample(self, t_s: float) -> Sample:
        return Sample(t_s, dict(self.lines[self._at(t_s)].figures))

    def counters(self, t_s: float) -> CounterReading:
        t = t_s - self.origin_s
        i = self._at(t_s)
        line = self.lines[i]
        nxt = self.lines[i + 1] if i + 1 < len(self.lines) else None
        values = {}
        for cause, ns in line.throttle_ns.items():
            if nxt is not None and nxt.t_s > line.t_s and t > line.t_s:
                slope = (nxt.throttle_ns.get(cause, ns) - ns) / (nxt.t_s - line.t_s)
                ns = ns + slope * (min(t, nxt.t_s) - line.t_s)
            values[cause] = (ns, None)
        return CounterReading(t_s, values)

    def close(self) -> None:
        pass
