"""The device seam: select a device, synchronize it, time on it, describe it.

Everything device-specific that the timing loop needs sits behind `Device`:
`synchronize()`, `event()` (a timestamp recorded in the device's stream order), `flush_cache()`
and the properties (name, memory, last-level cache) used for flush sizing and spec lookup.
CUDA and ROCm (torch's `cuda` device) and XPU get device events; MPS and the CPU get a
synchronize-then-read monotonic clock. Tests substitute a fake with the same methods.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field

import torch

from .exitcodes import UsageError

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|xpu|mps)(?::(\d+))?$")
DEFAULT_CPU_LLC_BYTES = 32 << 20  # when the OS does not say


@dataclass(frozen=True)
class DeviceInfo:
    """What a record says about a device, plus what the harness sizes things from."""

    type: str
    index: int | None
    name: str
    total_memory_bytes: int | None = None
    llc_bytes: int | None = None
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {"type": self.type, "name": self.name, "index": self.index}


class _ClockEvent:
    """A timestamp taken after synchronizing the device: the fallback where there are no events."""

    __slots__ = ("_device", "t_ns")

    def __init__(self, device: "Device"):
        self._device = device
        self.t_ns = 0

    def record(self) -> None:
        self._device.synchronize()
        self.t_ns = time.perf_counter_ns()

    def elapsed_s(self, end: "_ClockEvent") -> float:
        return (end.t_ns - self.t_ns) * 1e-9


class _TorchEvent:
    """A device event (CUDA/ROCm/XPU): recorded on the device's current stream, read after one synchronize.

    The stream is named explicitly, so the event times work on this device even when another device
    is the current one (a peer copy, a library that switched devices).
    """

    __slots__ = ("_event", "_module", "_device")

    def __init__(self, module, device):
        self._module = module
        self._device = device
        self._event = module.Event(enable_timing=True)

    def record(self) -> None:
        self._event.record(self._module.current_stream(self._device))

    def elapsed_s(self, end: "_TorchEvent") -> float:
        return self._event.elapsed_time(end._event) * 1e-3


class Device:
    """One torch device with the operations the harness needs."""

    def __init__(self, torch_device: "torch.device", info: DeviceInfo):
        self.torch_device = torch_device
        self.info = info
        self._module = getattr(torch, torch_device.type, None) if torch_device.type != "cpu" else None
        self._flush_buffer = None
        if torch_device.type in ("cuda", "xpu") and torch_device.index is not None:
            # a probe process works on one device: make it the current one, so that allocations and
            # libraries without an explicit device land there too (events name their stream anyway)
            self._module.set_device(torch_device.index)

    @property
    def type(self) -> str:
        return self.torch_device.type

    @property
    def has_events(self) -> bool:
        return self.type in ("cuda", "xpu")

    def synchronize(self) -> None:
        if self.type == "cuda":
            torch.cuda.synchronize(self.torch_device)
        elif self.type in ("xpu", "mps"):
            self._module.synchronize()

    def event(self):
        """A timing event; create them before the timed loop starts."""
        return _TorchEvent(self._module, self.torch_device) if self.has_events else _ClockEvent(self)

    def flush_bytes(self) -> int:
        """Twice the last-level cache: enough writes to evict what a timed op left behind."""
        return 2 * (self.info.llc_bytes or DEFAULT_CPU_LLC_BYTES)

    def flush_cache(self) -> None:
        """Overwrite a buffer larger than the last-level cache (allocated once, on first use)."""
        if self._flush_buffer is None:
            self._flush_buffer = torch.empty(self.flush_bytes() // 4, dtype=torch.int32, device=self.torch_device)
        self._flush_buffer.fill_(1)

    def free_memory_bytes(self) -> int | None:
        if self.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.torch_device)
            return int(free)
        if self.type == "cpu":
            return _host_available_bytes()
        return self.info.total_memory_bytes

    def empty_cache(self) -> None:
        if self.type == "cuda":
            torch.cuda.empty_cache()
        elif self.type in ("xpu", "mps"):
            self._module.empty_cache()

    def is_oom(self, exc: BaseException) -> bool:
        """Whether an exception is the device running out of memory."""
        if isinstance(exc, torch.OutOfMemoryError if hasattr(torch, "OutOfMemoryError") else ()):
            return True
        return isinstance(exc, (RuntimeError, MemoryError)) and (
            isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
        )

    def __repr__(self) -> str:
        return f"Device({self.torch_device}, {self.info.name!r})"


def accelerator_types() -> list[str]:
    """Accelerator device types that are present here, in preference order."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        found.append("xpu")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        found.append("mps")
    return found


def parse_device_spec(spec: str) -> tuple[str, int | None]:
    """Validate `auto|cpu|cuda[:N]|xpu[:N]|mps` without touching any device."""
    match = _DEVICE_RE.match((spec or "auto").strip().lower())
    if not match:
        raise UsageError(f"bad --device {spec!r}: expected auto, cpu, cuda, cuda:N, xpu, xpu:N or mps")
    kind, index = match.group(1), match.group(2)
    return kind, (int(index) if index is not None else None)


def resolve(spec: str = "auto") -> Device:
    """Pick a device: `auto` is the first accelerator (under torchrun, the LOCAL_RANK one), else the CPU."""
    kind, index = parse_device_spec(spec)
    if kind == "auto":
        present = accelerator_types()
        kind = present[0] if present else "cpu"
        if kind != "cpu" and index is None and kind in ("cuda", "xpu"):
            index = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cpu":
        return Device(torch.device("cpu"), _cpu_info())
    if kind not in accelerator_types():
        raise UsageError(f"--device {spec}: no {kind} device is available here (torch {torch.__version__})")
    if kind == "mps":
        return Device(torch.device("mps"), DeviceInfo("mps", 0, "Apple MPS", None, None))
    module = getattr(torch, kind)
    count = module.device_count()
    index = 0 if index is None else index
    if index >= count:
        raise UsageError(f"--device {kind}:{index}: only {count} {kind} device(s) visible")
    return Device(torch.device(kind, index), _accelerator_info(kind, index))


def _accelerator_info(kind: str, index: int) -> DeviceInfo:
    props = getattr(torch, kind).get_device_properties(index)
    extra = {}
    for attr in ("major", "minor", "multi_processor_count", "gcnArchName", "uuid"):
        value = getattr(props, attr, None)
        if value is not None:
            extra[attr] = str(value) if attr == "uuid" else value
    if kind == "cuda":
        extra["backend"] = "rocm" if getattr(torch.version, "hip", None) else "cuda"
    llc = getattr(props, "L2_cache_size", None) or None
    return DeviceInfo(
        type=kind,
        index=index,
        name=str(props.name),
        total_memory_bytes=int(getattr(props, "total_memory", 0)) or None,
        llc_bytes=int(llc) if llc else None,
        extra=extra,
    )


def _cpu_info() -> DeviceInfo:
    return DeviceInfo(
        type="cpu",
        index=None,
        name=_cpu_model_name(),
        total_memory_bytes=_host_total_bytes(),
        llc_bytes=_cpu_llc_bytes(),
        extra={"threads": torch.get_num_threads(), "cores": os.cpu_count()},
    )


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _cpu_llc_bytes() -> int | None:
    """The largest cache level the OS lists for cpu0 (sysfs), e.g. '32768K'."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = None
    try:
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            try:
                with open(os.path.join(base, entry, "size")) as f:
                    text = f.read().strip()
            except OSError:
                continue
            match = re.match(r"^(\d+)([KMG]?)", text)
            if match:
                size = int(match.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2)]
                best = max(best or 0, size)
    except OSError:
        return None
    return best


def _meminfo_bytes(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _host_total_bytes() -> int | None:
    return _meminfo_bytes("MemTotal")


def _host_available_bytes() -> int | None:
    return _meminfo_bytes("MemAvailable")
