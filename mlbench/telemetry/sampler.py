"""The sampler thread beside the timed work, and the harness's hook (`Watch`) that gives each record the
telemetry of its window.

`Sampler(sources)` reads every source's figures each `interval_s` on a daemon thread (NVML and file
reads release the GIL; one sample costs well under a millisecond). `mark()` reads figures and the
cumulative throttle counters now, in the caller's thread; `window(mark)` reads them again and returns,
per source, the record's `telemetry` object of the span between (`mlbench.telemetry.summary`): the
samples taken in it, both ends included, and the counters' deltas.

`Watch(devices)` opens a source per device (`mlbench.telemetry.sources`), runs one sampler for all of
them, and turns a window into the fields a record gets: `telemetry`, and the flag `throttled` added to
the result's flags when a throttling cause held more than 5% of the span.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from .model import CounterReading, DeviceRef, Unavailable
from .sources import enrich, open_source
from .summary import is_throttled, unavailable_object, window_object

INTERVAL_S = 0.1
MAX_SAMPLES = 200_000  # per source, kept between windows (5.5 h at the default interval)
THROTTLED_FLAG = "throttled"


@dataclass(frozen=True)
class Mark:
    """The start of a window: when, and each source's counters then."""

    t_s: float
    readings: tuple


class Sampler:
    """Samples the sources on a thread (`start()`/`stop()`, or a `with` block); windows between marks.

    `clock` is the time base of samples and windows (monotonic seconds); tests pass a fake one and call
    `tick()` themselves instead of starting the thread.
    """

    def __init__(
        self,
        sources: Sequence,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        origin_s: Optional[float] = None,
    ):
        self.sources = list(sources)
        self.interval_s = interval_s
        self.clock = clock
        self.origin_s = clock() if origin_s is None else origin_s
        self.failed_reads = 0
        self._samples: list = [[] for _ in self.sources]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, name="mlbench-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval_s + 1.0)
            self._thread = None

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.tick()

    def _read(self, fn, t_s: float):
        try:
            return fn(t_s)
        except Exception:  # noqa: BLE001 - a failed read is a missing sample, never a failed measurement
            self.failed_reads += 1
            return None

    def tick(self) -> None:
        """Take one sample of every source now."""
        with self._lock:
            t_s = self.clock()
            for samples, source in zip(self._samples, self.sources):
                sample = self._read(source.sample, t_s)
                if sample is not None:
                    samples.append(sample)
                    if len(samples) > MAX_SAMPLES:
                        del samples[: MAX_SAMPLES // 2]

    def mark(self) -> Mark:
        """Sample every source and read its counters now: one end of a window."""
        with self._lock:
            t_s = self.clock()
            readings = []
            for samples, source in zip(self._samples, self.sources):
                sample = self._read(source.sample, t_s)
                if sample is not None:
                    samples.append(sample)
                readings.append(self._read(source.counters, t_s))
            return Mark(t_s, tuple(readings))

    def window(self, start: Mark, forget: bool = True) -> list:
        """Per source, the `telemetry` object of the span from `start` to now. `forget` drops the samples
        before now (one window at a time, as the harness takes them)."""
        end = self.mark()
        objects = []
        with self._lock:
            for i, source in enumerate(self.sources):
                samples = [s for s in self._samples[i] if start.t_s <= s.t_s <= end.t_s]
                before, after = start.readings[i], end.readings[i]
                if before is None or after is None:
                    before, after = CounterReading(start.t_s), CounterReading(end.t_s)
                objects.append(
                    window_object(source.backend, samples, before, after, self.origin_s, source.sampled_causes)
                )
                if forget:
                    self._samples[i] = [s for s in self._samples[i] if s.t_s >= end.t_s]
        return objects


def as_ref(device) -> DeviceRef:
    """A DeviceRef from a DeviceRef, a `mlbench.device.DeviceInfo` or a record's `device` object."""
    if isinstance(device, DeviceRef):
        return device
    if hasattr(device, "extra"):
        return DeviceRef.from_info(device)
    return DeviceRef.from_record(device)


class Watch:
    """Telemetry for a probe run: `with Watch(devices) as watch`, then per item `mark = watch.mark()` before
    asking for it and `watch.fields(mark, device_record, flags)` once it arrived."""

    def __init__(
        self,
        devices: Sequence,
        faults=None,
        root: str = "/",
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        thread: bool = True,
    ):
        self.refs = [as_ref(d) for d in devices]
        self.faults = faults
        self.root = root
        self.interval_s = interval_s
        self.clock = clock
        self.thread = thread
        self.entries: list = []  # (DeviceRef, source or Unavailable)
        self.sampler: Optional[Sampler] = None

    def __enter__(self) -> "Watch":
        origin = self.clock()
        for ref in self.refs:
            source = open_source(ref, self.faults, self.root, origin)
            if source is not None:
                self.entries.append((ref, source))
        live = [source for _, source in self.entries if not isinstance(source, Unavailable)]
        if live:
            self.sampler = Sampler(live, self.interval_s, self.clock, origin)
            if self.thread:
                self.sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        for _, source in self.entries:
            if not isinstance(source, Unavailable):
                source.close()

    def mark(self) -> Optional[Mark]:
        return self.sampler.mark() if self.sampler is not None else None

    def objects(self, mark: Optional[Mark]) -> list:
        """[(DeviceRef, telemetry object)] of the window from `mark` to now, in device order."""
        windows = iter(self.sampler.window(mark) if self.sampler is not None and mark is not None else ())
        return [
            (ref, unavailable_object(source.reason) if isinstance(source, Unavailable) else next(windows))
            for ref, source in self.entries
        ]

    def fields(self, mark: Optional[Mark], device: Mapping, flags: Sequence = ()) -> dict:
        """The record fields of the window from `mark` to now: `telemetry` (the object of the record's
        device; with several devices and none of them the record's, `{"devices": [...]}`), and `flags`
        with `throttled` added when the window was throttled. Empty for a run without telemetry."""
        if not self.entries:
            return {}
        pairs = self.objects(mark)
        obj = _for_device(pairs, DeviceRef.from_record(device))
        fields = {"telemetry": obj}
        throttled = is_throttled(obj) or any(is_throttled(o) for o in obj.get("devices", ()))
        if throttled and THROTTLED_FLAG not in flags:
            fields["flags"] = [*flags, THROTTLED_FLAG]
        return fields


def _for_device(pairs: list, device: DeviceRef) -> dict:
    if len(pairs) == 1:
        return pairs[0][1]
    for ref, obj in pairs:
        if (ref.type, ref.index) == (device.type, device.index):
            return obj
    return {"devices": [{"device": ref.describe(), **obj} for ref, obj in pairs]}


def run_devices(run) -> list:
    """The devices a harness run samples: its `telemetry_devices`, else the device of its records."""
    devices = getattr(run, "telemetry_devices", None)
    if devices is not None:
        return [as_ref(d) for d in devices]
    return [enrich(DeviceRef.from_record(run.device))]
