"""Telemetry beside every measurement: clocks, power, temperatures, utilisation and the driver's throttle
counters, so a record says whether its figure was measured on a throttled device.

    from mlbench import telemetry
    with telemetry.Watch([telemetry.DeviceRef("cuda", 0)]) as watch:
        mark = watch.mark()
        ...                                    # the timed work
        fields = watch.fields(mark, {"type": "cuda", "index": 0, "name": "..."})
        fields["telemetry"]                    # the record's telemetry object (summary.py)
        fields.get("flags")                    # ["throttled"] when a throttling cause held > 5% of the span

The harness (`mlbench.harness`) does exactly this around every item of every probe; a probe names
the devices to watch with `Run.telemetry_devices` (default: the device of its records).

- `model`: figures, causes (`Cause`), `Sample`, `CounterReading`, `DeviceRef`, `Unavailable`;
- `summary`: a window as a record's `telemetry` object; `throttle_words`, `flat_columns` for readers;
- `sampler`: `Sampler` (the thread), `Watch` (the harness's hook);
- `sources`: which backend reads a device; backends `nvml`, `amd` (amdsmi), `cpu`, `replay`
  (`MLBENCH_FAULTS=telemetry=FILE`).

No torch, pandas or NVML at import time.
"""

from __future__ import annotations

from .model import FIGURES, THROTTLED_ABOVE, THROTTLING, Backend, Cause, CounterReading, DeviceRef, Sample, Unavailable
from .sampler import INTERVAL_S, THROTTLED_FLAG, Mark, Sampler, Watch, as_ref, run_devices
from .sources import COMPUTE_TYPES, open_source, preflight
from .summary import flat_columns, is_throttled, object_words, row_words, throttle_words, window_object

__all__ = [
    "COMPUTE_TYPES",
    "FIGURES",
    "INTERVAL_S",
    "THROTTLED_ABOVE",
    "THROTTLED_FLAG",
    "THROTTLING",
    "Backend",
    "Cause",
    "CounterReading",
    "DeviceRef",
    "Mark",
    "Sample",
    "Sampler",
    "Unavailable",
    "Watch",
    "as_ref",
    "flat_columns",
    "is_throttled",
    "object_words",
    "open_source",
    "preflight",
    "row_words",
    "run_devices",
    "throttle_words",
    "window_object",
]
