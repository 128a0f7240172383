"""Facts about the host, read from the OS (no torch): cores, CPU model, cache, memory, NUMA layout.

Every reader takes `root` (default `/`): the file-system root that `/proc` and `/sys` are found
under, so tests can build a fake tree. A fact the OS does not give is `None` (or empty), never a guess.

- `cpu_count()`, `usable_cpus()`: logical CPUs on the machine, and those this process may run on.
- `cpu_model_name()`, `cpu_llc_bytes()`: the CPU's model string and its largest cache level (cpu0).
- `meminfo_bytes(key)`, `total_memory_bytes()`, `available_memory_bytes()`: `/proc/meminfo` figures.
- `numa_nodes()`: NUMA node -> its CPUs; `pci_numa_node(bus_id)`: the node a PCI device hangs off;
  `numa_binding_for(bus_id, allowed)`: the CPUs to run on for that device, or why there are none.
- `parse_cpulist()` / `format_cpulist()`: the kernel's `0-3,8-11` notation.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_PCI_BUS_ID_RE = re.compile(r"^(?:([0-9a-f]+):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$")


def _path(root: str, absolute: str) -> Path:
    return Path(root) / absolute.lstrip("/")


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def cpu_count() -> int:
    """Logical CPUs on the machine (0 when the OS does not say)."""
    return os.cpu_count() or 0


def usable_cpus() -> frozenset:
    """The CPUs this process may run on (its affinity: cgroups, Slurm, taskset)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return frozenset(range(cpu_count()))


def cpu_model_name(root: str = "/") -> str:
    """The `model name` of /proc/cpuinfo, else what the platform module says."""
    text = _read_text(_path(root, "/proc/cpuinfo")) or ""
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def cpu_llc_bytes(root: str = "/") -> Optional[int]:
    """The largest cache level the OS lists for cpu0 (sysfs sizes such as `32768K`)."""
    base = _path(root, "/sys/devices/system/cpu/cpu0/cache")
    try:
        entries = [entry for entry in base.iterdir() if entry.name.startswith("index")]
    except OSError:
        return None
    sizes = []
    for entry in entries:
        match = re.match(r"^(\d+)([KMG]?)", (_read_text(entry / "size") or "").strip())
        if match:
            sizes.append(int(match.group(1)) * SIZE_UNITS[match.group(2)])
    return max(sizes) if sizes else None


def meminfo_bytes(key: str, root: str = "/") -> Optional[int]:
    """One `/proc/meminfo` line (`MemTotal`, `MemAvailable`, ...) in bytes."""
    text = _read_text(_path(root, "/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def total_memory_bytes(root: str = "/") -> Optional[int]:
    return meminfo_bytes("MemTotal", root)


def available_memory_bytes(root: str = "/") -> Optional[int]:
    return meminfo_bytes("MemAvailable", root)


def parse_cpulist(text: str) -> tuple:
    """`0-3,8,10-11` -> (0, 1, 2, 3, 8, 10, 11); an empty list is ()."""
    cpus = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return tuple(sorted(cpus))


def format_cpulist(cpus: Iterable[int]) -> str:
    """(0, 1, 2, 3, 8, 10, 11) -> `0-3,8,10-11` (the kernel's notation)."""
    ranges = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in ranges)


def numa_nodes(root: str = "/") -> dict:
    """NUMA node number -> its CPUs (a tuple), from sysfs; {} when the OS lists no nodes."""
    base = _path(root, "/sys/devices/system/node")
    nodes = {}
    try:
        entries = list(base.iterdir())
    except OSError:
        return {}
    for entry in entries:
        match = re.match(r"^node(\d+)$", entry.name)
        text = _read_text(entry / "cpulist") if match else None
        if text is not None:
            nodes[int(match.group(1))] = parse_cpulist(text)
    return dict(sorted(nodes.items()))


def normalize_pci_bus_id(bus_id: str) -> Optional[str]:
    """A PCI address as sysfs names it (`0000:18:00.0`): lower case, 4-digit domain (NVML writes 8)."""
    match = _PCI_BUS_ID_RE.match(bus_id.strip().lower())
    if not match:
        return None
    domain, bus, device, function = match.groups()
    return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{function}"


def pci_numa_node(bus_id: str, root: str = "/") -> Optional[int]:
    """The NUMA node of a PCI device (`/sys/bus/pci/devices/<bdf>/numa_node`); None when unknown (-1)."""
    bdf = normalize_pci_bus_id(bus_id)
    text = _read_text(_path(root, f"/sys/bus/pci/devices/{bdf}/numa_node")) if bdf else None
    try:
        node = int((text or "").strip())
    except ValueError:
        return None
    return node if node >= 0 else None


@dataclass(frozen=True)
class NumaBinding:
    """The CPUs a process was (or would be) bound to for a device on NUMA node `node`, or why not."""

    node: Optional[int]
    cpus: tuple = ()  # empty when not bound
    reason: Optional[str] = None  # why there is no binding; None when bound

    @property
    def bound(self) -> bool:
        return bool(self.cpus)

    def params(self) -> dict:
        """As record params: `numa_node`, `cpus` (kernel notation), `numa_bound`, `numa_reason`."""
        return {
            "numa_node": self.node,
            "cpus": format_cpulist(self.cpus) if self.cpus else None,
            "numa_bound": self.bound,
            "numa_reason": self.reason,
        }


def numa_binding_for(bus_id: Optional[str], allowed_cpus: Iterable[int], root: str = "/") -> NumaBinding:
    """Which CPUs to run on for the PCI device `bus_id`: its NUMA node's CPUs that this process may use."""
    nodes = numa_nodes(root)
    if len(nodes) <= 1:
        return NumaBinding(next(iter(nodes), None), reason="one NUMA node" if nodes else "no NUMA nodes listed")
    if not bus_id:
        return NumaBinding(None, reason="the device's PCI address is unknown")
    node = pci_numa_node(bus_id, root)
    if node is None:
        return NumaBinding(None, reason=f"no NUMA node given for PCI device {bus_id}")
    cpus = tuple(sorted(set(nodes.get(node, ())) & set(allowed_cpus)))
    if not cpus:
        return NumaBinding(node, reason=f"none of NUMA node {node}'s CPUs is allowed to this process")
    return NumaBinding(node, cpus)
