"""The device seam: the one module that talks to torch.cuda / torch.xpu and the GPU runtime.

`Device` is one torch device with what the harness needs: `synchronize()`, `event()` (a timestamp
recorded in the device's stream order), `flush_cache()`, free memory, `make_current()` /
`as_current()` (selecting the current device is always an explicit call), the raw stream handle,
the compute capability, `bind_host_numa()` (run the process on the CPUs next to the device) and
`error_counters()` (ECC, retired pages, row remapping, XID events: `mlbench.device_errors`).
CUDA and ROCm (torch's `cuda` device) and XPU get device events; MPS and the CPU get a
synchronize-then-read monotonic clock.

Module functions answer questions about the GPUs as a whole: `accelerator_types()`, `gpu_count()`,
`can_access_peer()`, `is_rocm()`, `runtime_versions()`, `nccl_version()`, `accelerator_inventory()`,
and `peer_memcpy()` (the runtime's destination-issued peer copy, `mlbench.device_runtime`).
Host facts come from `mlbench.host`. Tests substitute fakes with the same methods.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch

from . import device_errors, device_runtime, host
from .exitcodes import UsageError

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|xpu|mps)(?::(\d+))?$")
DEFAULT_CPU_LLC_BYTES = 32 << 20  # when the OS does not say
MIB = 1 << 20


class LlcSource(str, enum.Enum):
    """Where a device's last-level cache size came from."""

    DEVICE = "device"  # what the device reports (torch's L2_cache_size)
    REGISTRY = "registry"  # the spec registry's `llc_mib`, larger than what the device reports
    OS = "os"  # the CPU's largest cache level in sysfs


@dataclass(frozen=True)
class DeviceInfo:
    """What a record says about a device, plus what the harness sizes things from."""

    type: str
    index: int | None
    name: str
    total_memory_bytes: int | None = None
    llc_bytes: int | None = None
    extra: dict = field(default_factory=dict)
    llc_source: LlcSource | None = None

    def record(self) -> dict:
        return {"type": self.type, "name": self.name, "index": self.index}

    def llc_params(self) -> dict:
        """The cache size a probe sized its buffers from, and where it came from (record params)."""
        return {"llc_bytes": self.llc_bytes, "llc_source": self.llc_source.value if self.llc_source else None}


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


def spin_cycles(seconds: float, cycles_per_s: float) -> int:
    """Clock cycles a spin kernel runs to last `seconds` (at least one)."""
    return max(1, int(seconds * cycles_per_s))


class Device:
    """One torch device with the operations the harness needs. Creating one changes nothing."""

    def __init__(self, torch_device: "torch.device", info: DeviceInfo):
        self.torch_device = torch_device
        self.info = info
        self._module = getattr(torch, torch_device.type, None) if torch_device.type != "cpu" else None
        self._flush_buffer = None
        self._spin_cycles_per_s = None

    @property
    def type(self) -> str:
        return self.torch_device.type

    @property
    def has_events(self) -> bool:
        return self.type in ("cuda", "xpu")

    @property
    def _selectable(self) -> bool:
        return self.type in ("cuda", "xpu") and self.torch_device.index is not None

    @property
    def queue_delay(self):
        """`delay(seconds)`: queue that long of device-side spinning on this device's current stream (so
        the host can queue what follows before the device reaches it); None where the device has none."""
        if self.type != "cuda" or not hasattr(torch.cuda, "_sleep"):
            return None
        return self._queue_delay

    def _queue_delay(self, seconds: float) -> None:
        if self._spin_cycles_per_s is None:
            self._spin_cycles_per_s = self._calibrate_spin()
        torch.cuda._sleep(spin_cycles(seconds, self._spin_cycles_per_s))

    def _calibrate_spin(self, cycles: int = 1_000_000) -> float:
        """Clock cycles per second of the spin kernel, timed once with events."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        return cycles / max(start.elapsed_time(end) * 1e-3, 1e-9)

    def make_current(self) -> None:
        """Make this the process's current device (cuda/xpu), so allocations and libraries without an
        explicit device land here too; nothing to do on the CPU and MPS."""
        if self._selectable:
            self._module.set_device(self.torch_device.index)

    def as_current(self):
        """A context manager: this device is the current one inside, the previous one again after."""
        if self._selectable:
            return self._module.device(self.torch_device.index)
        return contextlib.nullcontext()

    def stream_handle(self) -> int:
        """The raw handle (cudaStream_t / hipStream_t) of this device's current stream (cuda only)."""
        if self.type != "cuda":
            raise ValueError(f"{self.torch_device} has no CUDA stream")
        return int(torch.cuda.current_stream(self.torch_device).cuda_stream)

    def capability(self) -> tuple | None:
        """CUDA compute capability (major, minor); None on ROCm, XPU, MPS and the CPU."""
        if self.type != "cuda" or is_rocm():
            return None
        return tuple(torch.cuda.get_device_capability(self.torch_device))

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
            return host.available_memory_bytes()
        return self.info.total_memory_bytes

    def empty_cache(self) -> None:
        if self.type == "cuda":
            torch.cuda.empty_cache()
        elif self.type in ("xpu", "mps"):
            self._module.empty_cache()

    def reset_peak_memory(self) -> None:
        """Start a new peak for `peak_memory_bytes` (cuda/xpu; nothing elsewhere)."""
        if self.type in ("cuda", "xpu"):
            self._module.reset_peak_memory_stats(self.torch_device)

    def peak_memory_bytes(self) -> int | None:
        """The most device memory tensors held since the last reset (cuda/xpu); None where unknown (cpu, mps)."""
        if self.type in ("cuda", "xpu"):
            return int(self._module.max_memory_allocated(self.torch_device))
        return None

    def is_oom(self, exc: BaseException) -> bool:
        """Whether an exception is the device running out of memory."""
        if isinstance(exc, torch.OutOfMemoryError if hasattr(torch, "OutOfMemoryError") else ()):
            return True
        return isinstance(exc, (RuntimeError, MemoryError)) and (
            isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
        )

    def bind_host_numa(
        self, root: str = "/", set_affinity: Optional[Callable[[tuple], None]] = None
    ) -> host.NumaBinding:
        """Run this process (all its threads) on the CPUs of the NUMA node this device hangs off, so
        host buffers allocated afterwards are local to it; no binding when the OS gives no NUMA
        information or there is one node (the returned binding says why)."""
        binding = host.numa_binding_for(self.info.extra.get("pci_bus_id"), host.usable_cpus(), root)
        if binding.bound:
            (set_affinity or _set_process_affinity)(binding.cpus)
        return binding

    def error_counters(self) -> device_errors.ErrorCounters:
        """The device's cumulative error counters (ECC, retired pages, row remapping, XID events; EDAC on the
        CPU) through NVML / amdsmi when installed (`mlbench.device_errors`); `.why` says when there are none."""
        extra = self.info.extra
        if self.type == "cpu":
            return device_errors.edac_counters()
        if self.type == "cuda" and not is_rocm():
            return device_errors.nvml_counters(self.info.index, extra.get("uuid"), extra.get("pci_bus_id"))
        if self.type == "cuda":
            return device_errors.amdsmi_counters(extra.get("pci_bus_id"))
        return device_errors.ErrorCounters(f"{self.type}: no error-counter backend")

    def __repr__(self) -> str:
        return f"Device({self.torch_device}, {self.info.name!r})"


def _set_process_affinity(cpus: tuple, task_dir: str = "/proc/self/task") -> None:
    """Every thread of this process onto `cpus` (threads created later inherit the calling thread's)."""
    try:
        threads = [int(name) for name in os.listdir(task_dir)]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # the thread ended meanwhile
            pass


# -- the GPUs as a whole --------------------------------------------------------------------------


def is_rocm() -> bool:
    """Whether torch is the ROCm build (its `cuda` device is an AMD GPU)."""
    return bool(getattr(torch.version, "hip", None))


def gpu_count() -> int:
    """GPUs torch's `cuda` device sees (0 without any, or on a CPU-only build)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def can_access_peer(src: int, dst: int) -> bool:
    """Whether GPU `src` can reach GPU `dst`'s memory directly (NVLink, XGMI, PCIe peer access)."""
    return bool(torch.cuda.can_device_access_peer(src, dst))


def peer_memcpy() -> device_runtime.PeerMemcpy:
    """The runtime's async peer copy, issued on a stream of the caller's choice; OSError with a reason."""
    return device_runtime.peer_memcpy()


def nccl_version() -> str | None:
    """The NCCL (ROCm: RCCL) version torch was built with, e.g. `2.21.5`; None when unknown."""
    try:
        version = torch.cuda.nccl.version()
    except Exception:  # noqa: BLE001 - a version we cannot read is unknown
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def runtime_versions() -> dict:
    """Versions of the GPU software torch runs on: `cuda`, `hip`, `cudnn`, `nccl` (None when absent)."""
    versions = {"cuda": torch.version.cuda, "hip": getattr(torch.version, "hip", None), "cudnn": None, "nccl": None}
    try:
        versions["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001
        pass
    if torch.cuda.is_available():
        versions["nccl"] = nccl_version()
    return versions


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


def accelerator_inventory(kinds: Iterable[str] = ("cuda", "xpu")) -> list[DeviceInfo]:
    """Every visible GPU of the given kinds, described as `resolve` describes it."""
    found = []
    for kind in kinds:
        module = getattr(torch, kind, None)
        if module is None or not module.is_available():
            continue
        found.extend(_accelerator_info(kind, index) for index in range(module.device_count()))
    return found


# -- selecting and describing a device -------------------------------------------------------------


def parse_device_spec(spec: str) -> tuple[str, int | None]:
    """Validate `auto|cpu|cuda[:N]|xpu[:N]|mps` without touching any device."""
    match = _DEVICE_RE.match((spec or "auto").strip().lower())
    if not match:
        raise UsageError(f"bad --device {spec!r}: expected auto, cpu, cuda, cuda:N, xpu, xpu:N or mps")
    kind, index = match.group(1), match.group(2)
    return kind, (int(index) if index is not None else None)


def resolve(spec: str = "auto") -> Device:
    """Pick a device: `auto` is the first accelerator (under torchrun, the LOCAL_RANK one), else the CPU.

    Resolving selects nothing: call `make_current()` (or use `as_current()`) where the work starts."""
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
    return info_from_properties(kind, index, getattr(torch, kind).get_device_properties(index), is_rocm())


def info_from_properties(kind: str, index: int, props, rocm: bool = False) -> DeviceInfo:
    """A `DeviceInfo` from torch's device properties; the cache is the larger of the device's and the registry's."""
    extra = {}
    for attr in ("major", "minor", "multi_processor_count", "gcnArchName", "uuid"):
        value = getattr(props, attr, None)
        if value is not None:
            extra[attr] = str(value) if attr == "uuid" else value
    if kind == "cuda":
        extra["backend"] = "rocm" if rocm else "cuda"
    bus_id = _pci_bus_id(props)
    if bus_id:
        extra["pci_bus_id"] = bus_id
    name = str(props.name)
    llc_bytes, llc_source = pick_llc(int(getattr(props, "L2_cache_size", 0) or 0) or None, registry_llc_bytes(name))
    return DeviceInfo(
        type=kind,
        index=index,
        name=name,
        total_memory_bytes=int(getattr(props, "total_memory", 0)) or None,
        llc_bytes=llc_bytes,
        extra=extra,
        llc_source=llc_source,
    )


def pick_llc(reported_bytes: int | None, registry_bytes: int | None) -> tuple:
    """(bytes, LlcSource): the larger of what the device reports and the registry's figure for the part.

    ROCm reports the L2 of one compute die (MI300X: 4 MiB), not the 256 MiB Infinity Cache in front of HBM."""
    if registry_bytes and registry_bytes > (reported_bytes or 0):
        return registry_bytes, LlcSource.REGISTRY
    if reported_bytes:
        return reported_bytes, LlcSource.DEVICE
    return None, None


@functools.lru_cache(maxsize=None)
def registry_llc_bytes(device_name: str) -> int | None:
    """The spec registry's last-level cache (`llc_mib`) for a device name, in bytes; None when unknown."""
    from . import specs

    try:
        spec = specs.lookup(device_name)
    except specs.SpecsError:
        return None
    mib = spec.number("llc_mib") if spec else None
    return int(mib * MIB) if mib else None


def _pci_bus_id(props) -> str | None:
    """`dddd:bb:dd.0` from torch's pci_domain_id / pci_bus_id / pci_device_id, when torch has them."""
    parts = [getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    if any(not isinstance(part, int) for part in parts):
        return None
    domain, bus, device = parts
    return f"{domain:04x}:{bus:02x}:{device:02x}.0"


def _cpu_info() -> DeviceInfo:
    llc_bytes = host.cpu_llc_bytes()
    return DeviceInfo(
        type="cpu",
        index=None,
        name=host.cpu_model_name(),
        total_memory_bytes=host.total_memory_bytes(),
        llc_bytes=llc_bytes,
        extra={"threads": torch.get_num_threads(), "cores": host.cpu_count()},
        llc_source=LlcSource.OS if llc_bytes else None,
    )
