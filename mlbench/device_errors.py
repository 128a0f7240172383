"""A device's error counters, read before, during and after a burn-in (through `mlbench.device.error_counters`).

Every counter is cumulative: a burn-in reads them at its start and after every interval, and any
increase is an error. What is read, by backend (a counter the device or driver does not support is
left out, and `unavailable` says why):

- `nvml` (NVIDIA, `nvidia-ml-py` installed): volatile ECC errors (`ecc_corrected`, `ecc_uncorrected`),
  retired pages (`retired_pages_sbe`, `retired_pages_dbe`, `retired_pages_pending`: up to Volta),
  row remapping (`remapped_rows_correctable`, `remapped_rows_uncorrectable`, `remap_pending`,
  `remap_failure`: Ampere and newer), and `xid_events`: the critical XID events NVML reported for the
  device since the counters were opened (their codes in `xid_codes`).
- `amdsmi` (AMD, `amdsmi` installed): `ecc_corrected`, `ecc_uncorrected`, `ecc_deferred`.
- `edac` (the CPU, where the kernel's EDAC driver is loaded): the memory controllers' `ce_count` and
  `ue_count` summed as `ecc_corrected` and `ecc_uncorrected`.
- `none`: no backend here; `why` says so.

No torch here; the NVML and amdsmi modules are passed in by tests (fakes with the same functions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional


class ErrorCounters:
    """No counters: `read()` is empty and `why` says why."""

    backend = "none"

    def __init__(self, why: str = "no error-counter backend for this device"):
        self.why: Optional[str] = why
        self.unavailable: dict = {}  # counter -> why it is not read
        self.xid_codes: list = []

    def read(self) -> dict:
        """counter name -> cumulative value now."""
        return {}

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        """What a record says about the counters: backend, why none, counters that are not read."""
        out = {"backend": self.backend}
        if self.why:
            out["why"] = self.why
        if self.unavailable:
            out["unavailable"] = dict(self.unavailable)
        if self.xid_codes:
            out["xid_codes"] = list(self.xid_codes)
        return out


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class NvmlCounters(ErrorCounters):
    """NVIDIA counters through NVML for one device handle (see the module docstring)."""

    backend = "nvml"

    def __init__(self, nvml, handle):
        super().__init__(why=None)
        self.nvml = nvml
        self.handle = handle
        self.xid_events = 0
        self._events = None
        self._readers = self._supported(self._all_readers())
        self._open_events()

    def _all_readers(self) -> dict:
        nv, h = self.nvml, self.handle
        kinds = {
            "ecc_corrected": "NVML_MEMORY_ERROR_TYPE_CORRECTED",
            "ecc_uncorrected": "NVML_MEMORY_ERROR_TYPE_UNCORRECTED",
        }
        readers = {}
        for name, kind in kinds.items():
            readers[name] = lambda kind=kind: int(
                nv.nvmlDeviceGetTotalEccErrors(h, getattr(nv, kind), nv.NVML_VOLATILE_ECC)
            )
        causes = {
            "retired_pages_sbe": "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS",
            "retired_pages_dbe": "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR",
        }
        for name, cause in causes.items():
            readers[name] = lambda cause=cause: len(list(nv.nvmlDeviceGetRetiredPages(h, getattr(nv, cause))))
        readers["retired_pages_pending"] = lambda: int(nv.nvmlDeviceGetRetiredPagesPendingStatus(h))
        for position, name in enumerate(
            ("remapped_rows_correctable", "remapped_rows_uncorrectable", "remap_pending", "remap_failure")
        ):
            readers[name] = lambda position=position: int(nv.nvmlDeviceGetRemappedRows(h)[position])
        return readers

    def _supported(self, readers: dict) -> dict:
        """The readers that work on this device; the others go to `unavailable` with the reason."""
        working = {}
        for name, reader in readers.items():
            try:
                reader()
            except Exception as exc:  # noqa: BLE001 - NVML says "not supported" by raising
                self.unavailable[name] = _why(exc)
            else:
                working[name] = reader
        return working

    def _open_events(self) -> None:
        nv = self.nvml
        try:
            self._events = nv.nvmlEventSetCreate()
            nv.nvmlDeviceRegisterEvents(self.handle, nv.nvmlEventTypeXidCriticalError, self._events)
        except Exception as exc:  # noqa: BLE001 - no events (permissions, MIG, an old driver): say why
            self.unavailable["xid_events"] = _why(exc)
            self._free_events()

    def _drain_events(self) -> None:
        """Count the XID events waiting (non-blocking)."""
        wait = getattr(self.nvml, "nvmlEventSetWait_v2", None) or getattr(self.nvml, "nvmlEventSetWait", None)
        if self._events is None or wait is None:
            return
        while True:
            try:
                data = wait(self._events, 0)
            except Exception:  # noqa: BLE001 - NVML_ERROR_TIMEOUT: nothing waiting
                return
            self.xid_events += 1
            code = getattr(data, "eventData", None)
            if code is not None and len(self.xid_codes) < 64:
                self.xid_codes.append(int(code))

    def read(self) -> dict:
        values = {}
        for name, reader in self._readers.items():
            try:
                values[name] = reader()
            except Exception as exc:  # noqa: BLE001 - a counter that stopped answering is not read
                self.unavailable[name] = _why(exc)
        if self._events is not None:
            self._drain_events()
            values["xid_events"] = self.xid_events
        return values

    def _free_events(self) -> None:
        if self._events is not None:
            try:
                self.nvml.nvmlEventSetFree(self._events)
            except Exception:  # noqa: BLE001
                pass
        self._events = None

    def close(self) -> None:
        self._free_events()
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


class AmdsmiCounters(ErrorCounters):
    """AMD counters through amdsmi's total ECC count for one processor handle."""

    backend = "amdsmi"

    def __init__(self, amdsmi, handle):
        super().__init__(why=None)
        self.amdsmi = amdsmi
        self.handle = handle

    def read(self) -> dict:
        try:
            counts = self.amdsmi.amdsmi_get_gpu_total_ecc_count(self.handle)
        except Exception as exc:  # noqa: BLE001
            self.unavailable["ecc"] = _why(exc)
            return {}
        names = {
            "correctable_count": "ecc_corrected",
            "uncorrectable_count": "ecc_uncorrected",
            "deferred_count": "ecc_deferred",
        }
        return {ours: int(counts[theirs]) for theirs, ours in names.items() if theirs in counts}

    def close(self) -> None:
        try:
            self.amdsmi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass


class EdacCounters(ErrorCounters):
    """The host's memory-controller ECC counts (Linux EDAC), summed over controllers."""

    backend = "edac"

    def __init__(self, controllers: list):
        super().__init__(why=None)
        self.controllers = controllers

    def read(self) -> dict:
        totals = {"ecc_corrected": 0, "ecc_uncorrected": 0}
        for controller in self.controllers:
            for file, name in (("ce_count", "ecc_corrected"), ("ue_count", "ecc_uncorrected")):
                try:
                    totals[name] += int((controller / file).read_text().strip())
                except (OSError, ValueError):
                    pass
        return totals


def edac_counters(root: str = "/") -> ErrorCounters:
    """The host's EDAC counters, or none (why) when the kernel has no EDAC memory controller."""
    base = Path(root) / "sys/devices/system/edac/mc"
    controllers = sorted(p for p in base.glob("mc[0-9]*") if (p / "ce_count").exists()) if base.is_dir() else []
    if not controllers:
        return ErrorCounters("cpu: no EDAC memory controller in /sys (host memory ECC counts not exposed)")
    return EdacCounters(controllers)


def nvml_handle(nvml, index: Optional[int], uuid: Optional[str], pci_bus_id: Optional[str]):
    """The NVML handle of the GPU torch calls `index`: by UUID, then PCI bus id (NVML ignores
    CUDA_VISIBLE_DEVICES); by index only when nothing is hidden. None when it cannot be found."""
    if uuid:
        text = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        try:
            return nvml.nvmlDeviceGetHandleByUUID(text)
        except Exception:  # noqa: BLE001
            pass
    if pci_bus_id:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
        except Exception:  # noqa: BLE001
            pass
    if index is not None and os.environ.get("CUDA_VISIBLE_DEVICES") is None:
        try:
            return nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # noqa: BLE001
            return None
    return None


def nvml_counters(
    index: Optional[int], uuid: Optional[str], pci_bus_id: Optional[str], load: Optional[Callable[[], object]] = None
) -> ErrorCounters:
    """NVML counters of one NVIDIA GPU, or none (why) without nvidia-ml-py, a driver, or the GPU's handle."""
    try:
        nvml = load() if load is not None else __import__("pynvml")
    except ImportError:
        return ErrorCounters("nvidia-ml-py is not installed (pip install 'mlbench[nvml]'): no ECC/XID counters")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        return ErrorCounters(f"NVML could not start: {_why(exc)}")
    handle = nvml_handle(nvml, index, uuid, pci_bus_id)
    if handle is None:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
        return ErrorCounters(f"NVML does not know this GPU (index {index}, uuid {uuid}, PCI {pci_bus_id})")
    return NvmlCounters(nvml, handle)


def amdsmi_counters(pci_bus_id: Optional[str], load: Optional[Callable[[], object]] = None) -> ErrorCounters:
    """amdsmi counters of one AMD GPU (found by PCI bus id), or none (why)."""
    try:
        amdsmi = load() if load is not None else __import__("amdsmi")
    except ImportError:
        return ErrorCounters("amdsmi is not installed: no ECC counters")
    try:
        amdsmi.amdsmi_init()
        handles = amdsmi.amdsmi_get_processor_handles()
    except Exception as exc:  # noqa: BLE001
        return ErrorCounters(f"amdsmi could not start: {_why(exc)}")
    wanted = (pci_bus_id or "").lower()
    for handle in handles:
        try:
            if wanted and str(amdsmi.amdsmi_get_gpu_device_bdf(handle)).lower() == wanted:
                return AmdsmiCounters(amdsmi, handle)
        except Exception:  # noqa: BLE001
            continue
    try:
        amdsmi.amdsmi_shut_down()
    except Exception:  # noqa: BLE001
        pass
    return ErrorCounters(f"amdsmi does not know this GPU (PCI {pci_bus_id})")
