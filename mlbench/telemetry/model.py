"""What telemetry reads: the figures, the throttle causes, one sample, one counter reading, a device.

Pure Python (the reporter imports it too). A backend (`nvml`, `amdsmi`, `cpu`, `replay`) turns a
device into `Sample`s (figures at an instant, and the causes the driver says are active right now)
and `CounterReading`s (the driver's cumulative throttle counters per cause).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

# The figures a sample may carry, in the order records list them.
FIGURES = (
    "sm_clock_mhz",  # the compute clock: SM (NVIDIA), GFX (AMD), mean core clock (CPU)
    "mem_clock_mhz",
    "power_w",
    "power_limit_w",  # the enforced limit
    "temp_c",  # the GPU (the hottest CPU thermal zone on a CPU)
    "mem_temp_c",  # the memory (HBM), where reported
    "util_pct",  # busy share of the compute engine as the driver reports it
    "mem_util_pct",  # busy share of the memory controller
)


class Cause(str, enum.Enum):
    """A reason the driver keeps clocks below what was asked for."""

    POWER = "power"  # the software power cap
    THERMAL = "thermal"  # the software thermal policy
    SW_THERMAL = "sw_thermal"
    HW_SLOWDOWN = "hw_slowdown"  # hardware slowdown (temperature, power brake or fast-trigger protection)
    HW_THERMAL = "hw_thermal"
    HW_POWER_BRAKE = "hw_power_brake"
    MEM_THERMAL = "mem_thermal"
    VR_THERMAL = "vr_thermal"
    SYNC_BOOST = "sync_boost"
    BOARD_LIMIT = "board_limit"
    LOW_UTILIZATION = "low_utilization"
    RELIABILITY = "reliability"

    def __str__(self) -> str:
        return self.value

    @property
    def words(self) -> str:
        """How a report names the cause."""
        return CAUSE_WORDS[self]

    @property
    def throttles(self) -> bool:
        """Power, thermal or hardware slowdown: the causes that make a measurement `throttled`."""
        return self in THROTTLING


CAUSE_WORDS = {
    Cause.POWER: "power cap",
    Cause.THERMAL: "thermal slowdown",
    Cause.SW_THERMAL: "software thermal slowdown",
    Cause.HW_SLOWDOWN: "hardware slowdown",
    Cause.HW_THERMAL: "hardware thermal slowdown",
    Cause.HW_POWER_BRAKE: "hardware power brake",
    Cause.MEM_THERMAL: "memory thermal slowdown",
    Cause.VR_THERMAL: "voltage regulator thermal slowdown",
    Cause.SYNC_BOOST: "sync boost",
    Cause.BOARD_LIMIT: "board limit",
    Cause.LOW_UTILIZATION: "low utilization",
    Cause.RELIABILITY: "reliability limit",
}
THROTTLING = frozenset(
    {
        Cause.POWER,
        Cause.THERMAL,
        Cause.SW_THERMAL,
        Cause.HW_SLOWDOWN,
        Cause.HW_THERMAL,
        Cause.HW_POWER_BRAKE,
        Cause.MEM_THERMAL,
        Cause.VR_THERMAL,
    }
)
# A measurement is `throttled` when one throttling cause held more than this share of its span.
THROTTLED_ABOVE = 0.05


class Backend(str, enum.Enum):
    """Where telemetry comes from."""

    NVML = "nvml"
    AMDSMI = "amdsmi"
    CPU = "cpu"
    REPLAY = "replay"  # MLBENCH_FAULTS=telemetry=FILE

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Sample:
    """Figures at one instant (`t_s` on the sampler's clock) and the causes active at that instant."""

    t_s: float
    figures: Mapping[str, float] = field(default_factory=dict)
    active: frozenset = frozenset()  # of Cause: what the driver's current-reasons mask says


@dataclass(frozen=True)
class CounterReading:
    """The driver's cumulative throttle counters at one instant.

    `counters[cause] = (amount, base)`: both cumulative; the share of a window a cause held is
    delta(amount) / delta(base). `base` None means nanoseconds of our own clock. `amount_ns`: the
    amounts are nanoseconds (NVML, CPU, replay), so our clock may stand in for a base that did not move;
    otherwise (AMD's tick counts) such a window has no share.
    """

    t_s: float
    counters: Mapping[Cause, tuple] = field(default_factory=dict)
    amount_ns: bool = True


@dataclass(frozen=True)
class DeviceRef:
    """The device a sampler reads: its type and index as torch names them, and what finds it in a
    driver library whose numbering may differ (NVML ignores CUDA_VISIBLE_DEVICES): UUID, PCI bus id."""

    type: str
    index: int = 0
    uuid: Optional[str] = None
    pci_bus_id: Optional[str] = None

    @classmethod
    def from_record(cls, device: Mapping) -> "DeviceRef":
        """From a record's `device` object (the CPU counts as device 0)."""
        index = device.get("index")
        return cls(
            str(device.get("type")),
            int(index) if isinstance(index, int) else 0,
            device.get("uuid"),
            device.get("pci_bus_id"),
        )

    @classmethod
    def from_info(cls, info) -> "DeviceRef":
        """From an `mlbench.device.DeviceInfo` (type, index, and the UUID and PCI bus id torch reports)."""
        return cls(
            info.type, info.index if info.index is not None else 0, info.extra.get("uuid"), info.extra.get("pci_bus_id")
        )

    def describe(self) -> str:
        return self.type if self.type == "cpu" else f"{self.type}:{self.index}"


@dataclass(frozen=True)
class Unavailable:
    """No backend for a device, and why (said in every record instead of figures)."""

    reason: str


class Calls:
    """Driver calls a device may not support: `calls(key, fn, *args)` returns fn's answer, or None once
    it has raised (NotSupported, NoPermission...); a call that raised is not made again."""

    def __init__(self):
        self.dropped: set = set()

    def __call__(self, key, fn: Callable, *args):
        if key in self.dropped:
            return None
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - whatever the driver library raises
            self.dropped.add(key)
            return None
