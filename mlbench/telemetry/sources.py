"""Which backend reads a device: the replayed timeline for device 0 when one is set, else the vendor's.

| device | backend |
|---|---|
| device 0 (any type), `MLBENCH_FAULTS=telemetry=FILE` set | `replay` (FILE) |
| `cpu` | `cpu` (sysfs/procfs) |
| `cuda` (NVIDIA or ROCm) | `nvml`, else `amdsmi` |
| `xpu`, `mps` | none (the records say so) |

Devices that are not compute devices (a storage target) get no telemetry at all.
"""

from __future__ import annotations

from typing import Optional

from .. import faults as faults_module
from .model import DeviceRef, Unavailable

COMPUTE_TYPES = ("cpu", "cuda", "xpu", "mps")


def preflight(faults=None) -> None:
    """Read the replay file now, if one is set, so a bad one is a usage error before anything is written."""
    from .replay import load_timeline

    faults = faults_module.current() if faults is None else faults
    if faults.telemetry_file:
        load_timeline(faults.telemetry_file)


def open_source(ref: DeviceRef, faults=None, root: str = "/", origin_s: float = 0.0):
    """A source for the device (see the table above), `Unavailable` with the reason, or None for a device
    that is not a compute device. `origin_s`: the sampler-clock time a replayed timeline starts at."""
    if ref.type not in COMPUTE_TYPES:
        return None
    faults = faults_module.current() if faults is None else faults
    if faults.telemetry_file and ref.index == 0:
        from .replay import ReplaySource, load_timeline

        return ReplaySource(load_timeline(faults.telemetry_file), origin_s)
    if ref.type == "cpu":
        from .cpu import open_cpu

        return open_cpu(root)
    if ref.type == "cuda":
        return _gpu_source(ref)
    return Unavailable(f"no telemetry backend for {ref.type} devices")


def _gpu_source(ref: DeviceRef):
    from .amd import open_amdsmi
    from .nvml import open_nvml

    reasons = []
    for opener in (open_nvml, open_amdsmi):
        source = opener(ref)
        if not isinstance(source, Unavailable):
            return source
        reasons.append(source.reason)
    return Unavailable("; ".join(reasons))


def enrich(ref: DeviceRef) -> DeviceRef:
    """The ref with the UUID and PCI bus id torch reports for a GPU, when torch is already loaded."""
    if ref.type != "cuda" or ref.uuid or ref.pci_bus_id:
        return ref
    info = _gpu_info(ref.index)
    return DeviceRef.from_info(info) if info is not None else ref


def _gpu_info(index: int) -> Optional[object]:
    import sys

    if "torch" not in sys.modules:
        return None
    try:
        from ..device import accelerator_inventory

        found = [info for info in accelerator_inventory(("cuda",)) if info.index == index]
    except Exception:  # noqa: BLE001 - no usable GPU runtime: the ref stays as it was
        return None
    return found[0] if found else None
