"""The AMD backend, through `amdsmi` (ROCm's Python package) when it is importable.

Figures per sample: GFX and memory clocks (`amdsmi_get_clock_info`, MHz), socket power
(`amdsmi_get_power_info`: `current_socket_power`, else `average_socket_power`, W) and the power cap
(`amdsmi_get_power_cap_info`, microwatts), hotspot and memory temperatures
(`amdsmi_get_temp_metric`, C; the edge sensor when there is no hotspot), GFX and memory activity
(`amdsmi_get_gpu_activity`, %).

Counters (`amdsmi_get_violation_status`, Instinct MI300 and later): accumulated violation counts
per cause against the accumulation counter (`acc_counter`), so a share is
delta(acc_<cause>) / delta(acc_counter): PPT power (power), socket thermal (thermal), PROCHOT
(hardware thermal), HBM thermal (memory thermal), voltage regulator thermal. Older GPUs have no
counters; their records carry figures only.

The GPU is found by PCI bus id (the amdsmi numbering ignores *_VISIBLE_DEVICES), by index only when
nothing is hidden. A call the GPU does not support fails once and is not asked again.
"""

from __future__ import annotations

import os
from typing import Optional

from .model import Backend, Calls, Cause, CounterReading, DeviceRef, Sample, Unavailable

VIOLATIONS = {
    "acc_ppt_pwr": Cause.POWER,
    "acc_socket_thrm": Cause.THERMAL,
    "acc_prochot_thrm": Cause.HW_THERMAL,
    "acc_hbm_thrm": Cause.MEM_THERMAL,
    "acc_vr_thrm": Cause.VR_THERMAL,
}
VISIBLE_ENVS = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def _number(value) -> Optional[float]:
    """A reading as a float; None for amdsmi's "N/A" (an unsupported value) and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _bus_id(text: Optional[str]) -> str:
    return (text or "").strip().lower()


def find_handle(smi, ref: DeviceRef, environ=None):
    """The amdsmi handle of the GPU torch calls `ref.index`; None when not found."""
    environ = os.environ if environ is None else environ
    handles = smi.amdsmi_get_processor_handles()
    if ref.pci_bus_id:
        for handle in handles:
            try:
                if _bus_id(smi.amdsmi_get_gpu_device_bdf(handle)) == _bus_id(ref.pci_bus_id):
                    return handle
            except Exception:  # noqa: BLE001
                continue
    if not any(environ.get(name) is not None for name in VISIBLE_ENVS) and ref.index < len(handles):
        return handles[ref.index]
    return None


class AmdSource:
    """One GPU through amdsmi: `sample(t)` and `counters(t)`; `close()` shuts amdsmi down."""

    backend = Backend.AMDSMI
    sampled_causes = frozenset()

    def __init__(self, smi, handle):
        self.smi = smi
        self.handle = handle
        self._call = Calls()

    def _temp(self, *sensors) -> Optional[float]:
        smi = self.smi
        for sensor in sensors:
            value = self._call(
                ("temp", sensor),
                smi.amdsmi_get_temp_metric,
                self.handle,
                getattr(smi.AmdSmiTemperatureType, sensor),
                smi.AmdSmiTemperatureMetric.CURRENT,
            )
            if _number(value) is not None:
                return float(value)
        return None

    def sample(self, t_s: float) -> Sample:
        smi, handle, call = self.smi, self.handle, self._call
        figures = {}
        for name, kind in (("sm_clock_mhz", "GFX"), ("mem_clock_mhz", "MEM")):
            info = call(name, smi.amdsmi_get_clock_info, handle, getattr(smi.AmdSmiClkType, kind))
            if info and _number(info.get("clk")) is not None:
                figures[name] = float(info["clk"])
        power = call("power", smi.amdsmi_get_power_info, handle) or {}
        watts = _number(power.get("current_socket_power"))
        watts = watts if watts is not None else _number(power.get("average_socket_power"))
        if watts is not None:
            figures["power_w"] = watts
        cap = call("power_cap", smi.amdsmi_get_power_cap_info, handle) or {}
        if _number(cap.get("power_cap")):
            figures["power_limit_w"] = cap["power_cap"] / 1e6  # microwatts
        temps = (("temp_c", ("HOTSPOT", "EDGE")), ("mem_temp_c", ("VRAM",)))
        for name, sensors in temps:
            value = self._temp(*sensors)
            if value is not None:
                figures[name] = value
        activity = call("activity", smi.amdsmi_get_gpu_activity, handle) or {}
        for name, key in (("util_pct", "gfx_activity"), ("mem_util_pct", "umc_activity")):
            if _number(activity.get(key)) is not None:
                figures[name] = float(activity[key])
        return Sample(t_s, figures)

    def counters(self, t_s: float) -> CounterReading:
        status = self._call("violations", self.smi.amdsmi_get_violation_status, self.handle) or {}
        base = _number(status.get("acc_counter"))
        counters = {}
        if base is not None:
            for key, cause in VIOLATIONS.items():
                amount = _number(status.get(key))
                if amount is not None:
                    counters[cause] = (amount, base)
        return CounterReading(t_s, counters, amount_ns=False)

    def close(self) -> None:
        try:
            self.smi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass


def open_amdsmi(ref: DeviceRef, smi=None, environ=None):
    """An `AmdSource` for the GPU, or `Unavailable` saying why (`smi`: a module standing in for amdsmi)."""
    if smi is None:
        try:
            import amdsmi as smi
        except Exception:  # noqa: BLE001 - ImportError, or OSError when its library does not load
            return Unavailable("amdsmi is not importable")
    try:
        smi.amdsmi_init()
        handle = find_handle(smi, ref, environ)
    except Exception as exc:  # noqa: BLE001
        return Unavailable(f"amdsmi did not start: {exc}")
    if handle is None:
        try:
            smi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass
        return Unavailable(f"amdsmi has no GPU matching {ref.describe()} (PCI {ref.pci_bus_id or '?'})")
    return AmdSource(smi, handle)
