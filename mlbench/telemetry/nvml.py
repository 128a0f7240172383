"""The NVIDIA backend, through NVML (`nvidia-ml-py`, imported as `pynvml`; the optional extra `nvml`).

Figures per sample: SM and memory clocks (`nvmlDeviceGetClockInfo`, MHz), power and the enforced
limit (`nvmlDeviceGetPowerUsage`, `nvmlDeviceGetEnforcedPowerLimit`, mW), GPU temperature
(`nvmlDeviceGetTemperature`), memory temperature (field `NVML_FI_DEV_MEMORY_TEMP`, where the GPU
reports it), utilisation (`nvmlDeviceGetUtilizationRates`: compute and memory controller), and the
current clock-event reasons mask (`nvmlDeviceGetCurrentClocksEventReasons`).

Counters, read at both ends of a window: the violation times of the performance policies
(`nvmlDeviceGetViolationStatus`: power, thermal, sync boost, board limit, low utilisation,
reliability; `violationTime` in ns, `referenceTime` in microseconds of CPU time) and, on drivers that
have them, the clock-event-reason counters (fields 269-271: software thermal, hardware thermal,
hardware power brake; ns). A share is delta(violationTime) / delta(referenceTime), or / our span when
the reference did not move. Hardware slowdown as a whole has no counter: its share is that of the
samples whose reasons mask has the bit.

The GPU is found by UUID (NVML ignores CUDA_VISIBLE_DEVICES, so torch's GPU 0 may be NVML's GPU 4),
then by PCI bus id, and by index only when nothing is hidden. A call the GPU does not support fails
once and is not asked again.
"""

from __future__ import annotations

import os
from typing import Optional

from .model import Backend, Calls, Cause, CounterReading, DeviceRef, Sample, Unavailable

# reasons-mask bits (nvmlClocksEventReason*) -> cause
MASK_CAUSES = {
    0x4: Cause.POWER,
    0x8: Cause.HW_SLOWDOWN,
    0x10: Cause.SYNC_BOOST,
    0x20: Cause.SW_THERMAL,
    0x40: Cause.HW_THERMAL,
    0x80: Cause.HW_POWER_BRAKE,
    0x200: Cause.BOARD_LIMIT,
    0x400: Cause.RELIABILITY,
}
# performance policy constant name -> cause (nvmlDeviceGetViolationStatus)
POLICIES = {
    "NVML_PERF_POLICY_POWER": Cause.POWER,
    "NVML_PERF_POLICY_THERMAL": Cause.THERMAL,
    "NVML_PERF_POLICY_SYNC_BOOST": Cause.SYNC_BOOST,
    "NVML_PERF_POLICY_BOARD_LIMIT": Cause.BOARD_LIMIT,
    "NVML_PERF_POLICY_LOW_UTILIZATION": Cause.LOW_UTILIZATION,
    "NVML_PERF_POLICY_RELIABILITY": Cause.RELIABILITY,
}
# field id constant name (and its value in NVML 12.5+ headers) -> cause
REASON_FIELDS = {
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN": (269, Cause.SW_THERMAL),
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN": (270, Cause.HW_THERMAL),
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN": (271, Cause.HW_POWER_BRAKE),
}
MEMORY_TEMP_FIELD = ("NVML_FI_DEV_MEMORY_TEMP", 82)
# nvmlValueType_t -> the member of the c_nvmlValue_t union that holds it
VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


def field_value(value) -> Optional[float]:
    """The number an NVML field value holds (None when its read failed)."""
    if getattr(value, "nvmlReturn", 0) != 0:
        return None
    member = VALUE_MEMBERS.get(int(getattr(value, "valueType", 3)))
    return float(getattr(value.value, member)) if member else None


def find_handle(nvml, ref: DeviceRef, environ=None):
    """The NVML handle of the GPU torch calls `ref.index` (see the module docstring); None when not found."""
    environ = os.environ if environ is None else environ
    if ref.uuid:
        text = ref.uuid if ref.uuid.startswith(("GPU-", "MIG-")) else f"GPU-{ref.uuid}"
        try:
            return nvml.nvmlDeviceGetHandleByUUID(text)
        except Exception:  # noqa: BLE001 - try the next way
            pass
    if ref.pci_bus_id:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(ref.pci_bus_id)
        except Exception:  # noqa: BLE001
            pass
    if environ.get(VISIBLE_ENV) is None:
        try:
            return nvml.nvmlDeviceGetHandleByIndex(ref.index)
        except Exception:  # noqa: BLE001
            return None
    return None


class NvmlSource:
    """One GPU through NVML: `sample(t)` and `counters(t)`; `close()` shuts NVML down."""

    backend = Backend.NVML

    def __init__(self, nvml, handle):
        self.nvml = nvml
        self.handle = handle
        self._call = Calls()
        self._policies = {getattr(nvml, name): cause for name, cause in POLICIES.items() if hasattr(nvml, name)}
        self._fields = {getattr(nvml, name, number): cause for name, (number, cause) in REASON_FIELDS.items()}
        self._memory_temp_field = getattr(nvml, MEMORY_TEMP_FIELD[0], MEMORY_TEMP_FIELD[1])
        reasons = "nvmlDeviceGetCurrentClocksEventReasons"
        self._reasons = getattr(nvml, reasons, None) or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        self.sampled_causes = frozenset(MASK_CAUSES.values()) if self._reasons else frozenset()

    def sample(self, t_s: float) -> Sample:
        nvml, handle, call = self.nvml, self.handle, self._call
        figures = {}
        for name, key in (("sm_clock_mhz", "NVML_CLOCK_SM"), ("mem_clock_mhz", "NVML_CLOCK_MEM")):
            value = call(name, nvml.nvmlDeviceGetClockInfo, handle, getattr(nvml, key))
            if value is not None:
                figures[name] = float(value)
        powers = (("power_w", nvml.nvmlDeviceGetPowerUsage), ("power_limit_w", nvml.nvmlDeviceGetEnforcedPowerLimit))
        for name, fn in powers:
            value = call(name, fn, handle)
            if value is not None:
                figures[name] = value / 1000.0  # mW
        value = call("temp_c", nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        if value is not None:
            figures["temp_c"] = float(value)
        values = call("mem_temp_c", nvml.nvmlDeviceGetFieldValues, handle, [self._memory_temp_field])
        memory_temp = field_value(values[0]) if values else None
        if memory_temp:  # 0 where the GPU has no memory sensor
            figures["mem_temp_c"] = memory_temp
        util = call("util", nvml.nvmlDeviceGetUtilizationRates, handle)
        if util is not None:
            figures["util_pct"], figures["mem_util_pct"] = float(util.gpu), float(util.memory)
        active = frozenset()
        if self._reasons:
            mask = call("reasons", self._reasons, handle)
            if mask is not None:
                active = frozenset(cause for bit, cause in MASK_CAUSES.items() if int(mask) & bit)
        return Sample(t_s, figures, active)

    def counters(self, t_s: float) -> CounterReading:
        nvml, handle, call = self.nvml, self.handle, self._call
        counters = {}
        for policy, cause in self._policies.items():
            status = call(("policy", policy), nvml.nvmlDeviceGetViolationStatus, handle, policy)
            if status is not None:
                counters[cause] = (float(status.violationTime), float(status.referenceTime) * 1000.0)
        values = call("reason_fields", nvml.nvmlDeviceGetFieldValues, handle, list(self._fields))
        for field_id, value in zip(self._fields, values or ()):
            amount = field_value(value)
            if amount is not None:
                stamp = getattr(value, "timestamp", 0)
                counters[self._fields[field_id]] = (amount, float(stamp) * 1000.0 if stamp else None)
        return CounterReading(t_s, counters)

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def open_nvml(ref: DeviceRef, nvml=None, environ=None):
    """An `NvmlSource` for the GPU, or `Unavailable` saying why (`nvml`: a module standing in for pynvml)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return Unavailable("NVML: nvidia-ml-py is not installed (pip install 'mlbench[nvml]')")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no GPU
        return Unavailable(f"NVML did not start: {exc}")
    handle = find_handle(nvml, ref, environ)
    if handle is None:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
        return Unavailable(f"NVML has no GPU matching {ref.describe()} (uuid {ref.uuid or '?'})")
    return NvmlSource(nvml, handle)
