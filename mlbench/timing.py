"""The timing loop every probe shares (the shape of triton's `do_bench`).

1. estimate one call's time (a few synchronized calls), so time budgets become counts;
2. warm up;
3. create all events ahead, then for each repetition: `prepare()` (e.g. a cache flush) outside
   the timed span, start event, the call, end event;
4. one synchronize at the end, then read every event pair.

Short calls on an accelerator: an event pair around one call on an idle stream also times the
host's launch gap (a few us for a copy, 10-30 us for a collective), since the device reaches the
start event before the host has queued the call. Where the device can queue a delay (a kernel
that spins on the device, `device.queue_delay(seconds)`), each short sample is queued behind one:
while the device spins, the host queues start event, call and end event, which then run back to
back at the device's own pace. The record's `timer` says which method was used:
`device-events-queued`, `device-events` or `sync-clock`.

Returns the raw samples in seconds; statistics are `mlbench.stats`' job. The device is any
object with `synchronize()` and `event()` (see `mlbench.device.Device`), so the loop is tested
on a fake clock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class TimingPlan:
    """How long to warm up and how many samples to take.

    Counts win when given; otherwise the time budgets are turned into counts from an estimate
    of one call, clamped to [min_reps, max_reps].
    """

    warmup: Optional[int] = None
    reps: Optional[int] = None
    warmup_ms: float = 25.0
    budget_ms: float = 100.0
    min_reps: int = 5
    max_reps: int = 1000
    max_warmup: int = 1000


@dataclass(frozen=True)
class Timing:
    """Raw samples of one timed call, in seconds, and how they were taken."""

    samples_s: tuple
    warmup: int
    reps: int
    estimate_s: float
    timer: str  # "device-events" or "sync-clock"

    @property
    def queued(self) -> bool:
        return self.timer == "device-events-queued"

    def samples_ms(self) -> list:
        return [s * 1e3 for s in self.samples_s]


def estimate_call_s(fn: Callable[[], object], device, calls: int = 3, enough_s: float = 0.02) -> float:
    """Mean wall time of up to `calls` synchronized calls after one untimed call.

    Stops early once `enough_s` has elapsed: a slow call is estimated well enough by itself.
    """
    fn()
    device.synchronize()
    start = time.perf_counter()
    done = 0
    while done < calls:
        fn()
        device.synchronize()
        done += 1
        if time.perf_counter() - start >= enough_s:
            break
    return max((time.perf_counter() - start) / done, 1e-9)


def counts_for(plan: TimingPlan, estimate_s: float) -> tuple[int, int]:
    """(warmup, reps) for a plan, given one call's estimated time."""
    estimate_ms = max(estimate_s * 1e3, 1e-6)
    warmup = plan.warmup if plan.warmup is not None else min(plan.max_warmup, math.ceil(plan.warmup_ms / estimate_ms))
    if plan.reps is not None:
        reps = plan.reps
    else:
        reps = max(plan.min_reps, min(plan.max_reps, math.ceil(plan.budget_ms / estimate_ms)))
    return max(0, warmup), max(1, reps)


QUEUE_BELOW_S = 5e-3  # calls shorter than this are queued behind a device-side delay (when possible)
QUEUE_DELAY_S = 100e-6  # longer than the host needs to queue event, call, event (collectives: 10-30 us)


def time_call(
    fn: Callable[[], object],
    device,
    plan: TimingPlan = TimingPlan(),
    prepare: Optional[Callable[[], object]] = None,
    estimate_s: Optional[float] = None,
) -> Timing:
    """Time `fn` on `device`; `prepare` runs before every timed call, outside the timed span.

    `estimate_s`, when given, is used instead of estimating one call here (the estimate runs `fn`
    a time-dependent number of times, which ranks of a collective must not do independently).
    """
    if estimate_s is None:
        estimate_s = estimate_call_s(fn, device)
    warmup, reps = counts_for(plan, estimate_s)
    for _ in range(warmup):
        if prepare is not None:
            prepare()
        fn()
    delay = getattr(device, "queue_delay", None) if getattr(device, "has_events", False) else None
    queued = delay is not None and estimate_s < QUEUE_BELOW_S
    starts = [device.event() for _ in range(reps)]
    ends = [device.event() for _ in range(reps)]
    for start, end in zip(starts, ends):
        if prepare is not None:
            prepare()
        if queued:
            delay(QUEUE_DELAY_S)
        start.record()
        fn()
        end.record()
    device.synchronize()
    samples = tuple(start.elapsed_s(end) for start, end in zip(starts, ends))
    timer = (
        "device-events-queued"
        if queued
        else ("device-events" if getattr(device, "has_events", False) else "sync-clock")
    )
    return Timing(samples_s=samples, warmup=warmup, reps=reps, estimate_s=estimate_s, timer=timer)
