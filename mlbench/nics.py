"""Network adapters from sysfs: InfiniBand, RoCE and EFA ports, Ethernet speed, PCIe/NUMA placement next to the GPUs.

Read (under `root`, "/" on a real machine; a fake tree in tests):
- `/sys/class/infiniband/<dev>/ports/<port>/{state,rate,link_layer}`: one entry per RDMA port. The
  kind is `efa` (driver efa), `infiniband` (link layer InfiniBand) or `roce` (link layer Ethernet);
  `state` "4: ACTIVE" is up; `rate` "400 Gb/sec (4X NDR)" gives Gbit/s.
- `/sys/class/infiniband/<dev>/device`: the PCI function (its address, `numa_node`, `driver`), and
  `device/net/*`, the Ethernet interface of a RoCE port (not counted again as Ethernet).
- `/sys/class/net/<if>/{speed,operstate,type}` for physical Ethernet interfaces (Mb/s; IPoIB and
  virtual interfaces are left out).
- `/sys/bus/pci/devices/*/{class,vendor}`: the GPUs (NVIDIA, AMD, Habana), ordered by PCI address.

Placement of a NIC relative to a GPU, as `nvidia-smi topo -m` words it: `PIX` (behind the same PCIe
switch port), `PXB` (behind a shared PCIe switch), `PHB` (the same host bridge), `NODE` (the same NUMA
node), `SYS` (across the CPU interconnect).

The node's fabric is the RDMA kind and rate with the most bandwidth (Ethernet when there is no RDMA
port); `NCCL_IB_HCA` (`mlx5_0,mlx5_1`, `=mlx5_0:1`, `^mlx5_8`) narrows it to the adapters NCCL uses.
Its `descriptor` ("infiniband 8x400G mlx5_core") is what the fabric registry's `match` patterns are
searched in. No torch here.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

RDMA_KINDS = ("infiniband", "roce", "efa")
GPU_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x1da3": "habana"}
GPU_CLASSES = ("0x0300", "0x0302", "0x1200")  # display, 3D controller, processing accelerator
ARPHRD_ETHER = "1"
_RATE = re.compile(r"([\d.]+)\s*Gb/sec")


@dataclass(frozen=True)
class Nic:
    """One network port."""

    name: str  # mlx5_0:1, efa_0:1, eth0
    kind: str  # infiniband, roce, efa, ethernet
    state: str  # as sysfs says it: "ACTIVE", "DOWN", "up"...
    active: bool
    rate_gbits: Optional[float]  # line rate, Gbit/s
    link_layer: str
    driver: str
    pci: str  # PCI address of the function ("" when virtual)
    numa_node: Optional[int]
    netdev: str  # the Ethernet interface of a RoCE port, or the interface itself
    nearest_gpus: tuple = ()  # indices of the closest GPUs
    gpu_path: str = ""  # PIX, PXB, PHB, NODE or SYS to those GPUs ("" without GPUs)

    def record(self) -> dict:
        out = asdict(self)
        out["nearest_gpus"] = list(self.nearest_gpus)
        return out


@dataclass(frozen=True)
class NicSummary:
    """A node's fabric: the ports of its main kind and rate."""

    kind: str
    count: int  # ports of the fabric (active or not)
    active: int
    rate_gbits: Optional[float]  # the fabric ports' line rate
    total_gbits: float  # sum of the active fabric ports' rates
    driver: str
    down: tuple  # fabric ports that are not active
    descriptor: str  # "infiniband 8x400G mlx5_core": what the fabric registry matches

    def params(self) -> dict:
        return {
            "fabric_kind": self.kind,
            "descriptor": self.descriptor,
            "driver": self.driver,
            "down_ports": ",".join(self.down),
        }

    def metrics(self) -> dict:
        return {
            "nic_count": self.count,
            "nic_active": self.active,
            "nic_down": len(self.down),
            "nic_rate_gbits": self.rate_gbits,
            "nic_total_gbits": self.total_gbits,
            "nic_total_gbps": self.total_gbits / 8,
        }


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _int(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def _driver(device: Path) -> str:
    link = device / "driver"
    try:
        return Path(os.readlink(link)).name
    except OSError:
        return ""


def _pci_path(device: Path) -> tuple:
    """The PCI path of a device: ("pci0000:15", "0000:15:01.0", ..., "0000:17:00.0"); () when not PCI."""
    try:
        parts = device.resolve().parts
    except OSError:
        return ()
    for i, part in enumerate(parts):
        if part.startswith("pci") and ":" in part:
            return tuple(parts[i:])
    return ()


_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", re.IGNORECASE)


def _pci_address(path: tuple) -> str:
    """The last PCI address of a device path (a virtio or platform device sits below one)."""
    return next((part for part in reversed(path) if _PCI_ADDRESS.match(part)), "")


def rate_gbits(text: str) -> Optional[float]:
    """`400 Gb/sec (4X NDR)` -> 400.0; None when it says no rate."""
    match = _RATE.search(text)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class Gpu:
    index: int
    pci: str
    path: tuple
    numa_node: Optional[int]


def gpus(root: str | os.PathLike = "/") -> list:
    """Accelerators on the PCI bus (NVIDIA, AMD, Habana), ordered by PCI address."""
    base = Path(root) / "sys/bus/pci/devices"
    found = []
    for device in sorted(base.iterdir()) if base.is_dir() else []:
        if _read(device / "vendor").lower() in GPU_VENDORS and _read(device / "class").lower().startswith(GPU_CLASSES):
            found.append((device.name, _pci_path(device), _int(_read(device / "numa_node"))))
    return [Gpu(i, pci, path, numa) for i, (pci, path, numa) in enumerate(found)]


def relation(nic_path: tuple, nic_numa: Optional[int], gpu: Gpu) -> str:
    """PIX, PXB, PHB, NODE or SYS between a NIC and a GPU (see the module docstring)."""
    if nic_path and gpu.path and nic_path[0] == gpu.path[0]:
        shared = 0
        for a, b in zip(nic_path[1:-1], gpu.path[1:-1]):
            if a != b:
                break
            shared += 1
        if shared == 0:
            return "PHB"
        same_parent = nic_path[:-1] == gpu.path[:-1] or (len(nic_path) > 2 and nic_path[-2] == gpu.path[-2])
        return "PIX" if same_parent else "PXB"
    if nic_numa is not None and nic_numa == gpu.numa_node and nic_numa >= 0:
        return "NODE"
    return "SYS"


ORDER = ("PIX", "PXB", "PHB", "NODE", "SYS")


def _placement(path: tuple, numa: Optional[int], gpu_list: list) -> tuple:
    if not gpu_list:
        return (), ""
    relations = [(ORDER.index(relation(path, numa, g)), g.index) for g in gpu_list]
    best = min(r for r, _ in relations)
    return tuple(i for r, i in relations if r == best), ORDER[best]


def discover(root: str | os.PathLike = "/") -> list:
    """Every RDMA port and physical Ethernet interface of this node (see the module docstring)."""
    root = Path(root)
    gpu_list = gpus(root)
    nics, rdma_netdevs = [], set()
    ib = root / "sys/class/infiniband"
    for dev in sorted(ib.iterdir()) if ib.is_dir() else []:
        device = dev / "device"
        driver = _driver(device)
        path = _pci_path(device)
        numa = _int(_read(device / "numa_node"))
        netdevs = sorted(p.name for p in (device / "net").iterdir()) if (device / "net").is_dir() else []
        rdma_netdevs.update(netdevs)
        near, via = _placement(path, numa, gpu_list)
        ports = dev / "ports"
        for port in sorted(ports.iterdir(), key=lambda p: _int(p.name) or 0) if ports.is_dir() else []:
            state = _read(port / "state")
            layer = _read(port / "link_layer")
            kind = (
                "efa"
                if driver == "efa" or dev.name.startswith("efa")
                else ("infiniband" if layer.lower() == "infiniband" else "roce")
            )
            nics.append(
                Nic(
                    f"{dev.name}:{port.name}",
                    kind,
                    state.split(":")[-1].strip(),
                    "ACTIVE" in state.upper(),
                    rate_gbits(_read(port / "rate")),
                    layer,
                    driver,
                    _pci_address(path),
                    numa,
                    netdevs[0] if netdevs else "",
                    near,
                    via,
                )
            )
    net = root / "sys/class/net"
    for iface in sorted(net.iterdir()) if net.is_dir() else []:
        device = iface / "device"
        if iface.name in rdma_netdevs or not device.exists() or _read(iface / "type") not in ("", ARPHRD_ETHER):
            continue
        speed = _int(_read(iface / "speed"))
        state = _read(iface / "operstate")
        path = _pci_path(device)
        numa = _int(_read(device / "numa_node"))
        near, via = _placement(path, numa, gpu_list)
        nics.append(
            Nic(
                iface.name,
                "ethernet",
                state,
                state == "up",
                speed / 1000 if speed and speed > 0 else None,
                "Ethernet",
                _driver(device),
                _pci_address(path),
                numa,
                iface.name,
                near,
                via,
            )
        )
    return nics


def nccl_selected(nics: Sequence[Nic], nccl_ib_hca: Optional[str]) -> list:
    """The RDMA ports NCCL_IB_HCA lets NCCL use (all when unset): prefix match, `=` exact, `^` excludes."""
    if not nccl_ib_hca:
        return list(nics)
    spec = nccl_ib_hca.strip()
    exclude = spec.startswith("^")
    exact = spec.lstrip("^").startswith("=")
    entries = [e.strip() for e in spec.lstrip("^").lstrip("=").split(",") if e.strip()]

    def hit(nic: Nic) -> bool:
        device, port = nic.name.split(":", 1) if ":" in nic.name else (nic.name, "")
        for entry in entries:
            name, _, want_port = entry.partition(":")
            same = device == name if exact else device.startswith(name)
            if same and (not want_port or want_port == port):
                return True
        return False

    return [n for n in nics if n.kind not in RDMA_KINDS or hit(n) != exclude]


def summarize(nics: Sequence[Nic], nccl_ib_hca: Optional[str] = None) -> NicSummary:
    """The node's fabric: the (kind, rate) group of RDMA ports with the most bandwidth, else Ethernet."""
    chosen = nccl_selected(nics, nccl_ib_hca)
    rdma = [n for n in chosen if n.kind in RDMA_KINDS]
    ports = rdma or [n for n in chosen if n.kind == "ethernet"]
    if not ports:
        return NicSummary("none", 0, 0, None, 0.0, "", (), "none")
    groups = Counter((n.kind, n.rate_gbits) for n in ports)
    kind, rate = max(groups, key=lambda key: (groups[key] * (key[1] or 0), groups[key], key[0]))
    fabric = [n for n in ports if n.kind == kind and (n.rate_gbits == rate or not n.active)]  # down ports count too
    active = [n for n in fabric if n.active]
    total = sum(n.rate_gbits or 0 for n in active)
    drivers = Counter(n.driver for n in fabric)
    driver = drivers.most_common(1)[0][0] if drivers else ""
    descriptor = f"{kind} {len(fabric)}x{f'{rate:g}G' if rate else '?'} {driver}".strip()
    return NicSummary(
        kind, len(fabric), len(active), rate, total, driver, tuple(n.name for n in fabric if not n.active), descriptor
    )


def node_record(root: str | os.PathLike = "/", environ=None) -> tuple:
    """(params, metrics) of the node record `check: nics`: every port, and the fabric summary."""
    environ = os.environ if environ is None else environ
    found = discover(root)
    summary = summarize(found, environ.get("NCCL_IB_HCA"))
    params = {
        "check": "nics",
        **summary.params(),
        "nics": [n.record() for n in found],
        "gpus_pci": [g.pci for g in gpus(root)],
    }
    if environ.get("NCCL_IB_HCA"):
        params["nccl_ib_hca"] = environ["NCCL_IB_HCA"]
    metrics = {**summary.metrics(), "ports": len(found)}
    return params, metrics
