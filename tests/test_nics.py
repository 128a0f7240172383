"""NIC discovery from a fake sysfs tree: InfiniBand/RoCE/EFA ports, Ethernet, PCIe placement next to GPUs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlbench import nics

ROOT_COMPLEX = "pci0000:00"


def pci_device(
    root: Path,
    *chain: str,
    numa: int = 0,
    driver: str = "",
    vendor: str = "",
    klass: str = "",
    complex_: str = ROOT_COMPLEX,
) -> Path:
    """A PCI function at /sys/devices/<root complex>/<bridges...>/<address> with its files."""
    device = root / "sys/devices" / complex_ / Path(*chain)
    device.mkdir(parents=True, exist_ok=True)
    (device / "numa_node").write_text(f"{numa}\n")
    if driver:
        target = root / "sys/bus/pci/drivers" / driver
        target.mkdir(parents=True, exist_ok=True)
        os.symlink(target, device / "driver")
    if vendor:
        (device / "vendor").write_text(vendor + "\n")
        (device / "class").write_text(klass + "\n")
        link = root / "sys/bus/pci/devices" / chain[-1]
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(device, link)
    return device


def rdma(root: Path, name: str, device: Path, ports: dict, netdev: str = "") -> None:
    """/sys/class/infiniband/<name> -> ..., ports {n: (state, rate, link layer)}."""
    dev = device / "infiniband" / name
    for port, (state, rate, layer) in ports.items():
        p = dev / "ports" / str(port)
        p.mkdir(parents=True)
        (p / "state").write_text(state + "\n")
        (p / "rate").write_text(rate + "\n")
        (p / "link_layer").write_text(layer + "\n")
    os.symlink(device, dev / "device")
    (root / "sys/class/infiniband").mkdir(parents=True, exist_ok=True)
    os.symlink(dev, root / "sys/class/infiniband" / name)
    if netdev:
        (device / "net" / netdev).mkdir(parents=True)


def ethernet(root: Path, name: str, device, speed: str, state: str = "up", kind: str = "1") -> None:
    iface = (device / "net" / name) if device is not None else root / "sys/devices/virtual/net" / name
    iface.mkdir(parents=True, exist_ok=True)
    (iface / "speed").write_text(speed + "\n")
    (iface / "operstate").write_text(state + "\n")
    (iface / "type").write_text(kind + "\n")
    if device is not None:
        os.symlink(device, iface / "device")
    (root / "sys/class/net").mkdir(parents=True, exist_ok=True)
    os.symlink(iface, root / "sys/class/net" / name)


NDR = "400 Gb/sec (4X NDR)"


@pytest.fixture
def dgx(tmp_path):
    """Two GPUs, each behind a PCIe switch with its own 400G InfiniBand HCA (one port down), a RoCE
    port used for storage, a 25G management port, IPoIB and a virtual interface."""
    root = tmp_path
    for i, (bus, numa, complex_) in enumerate((("10", 0, "pci0000:00"), ("90", 1, "pci0000:80"))):
        switch = (f"0000:{complex_[-2:]}:01.0", f"0000:{bus}:00.0")
        pci_device(
            root, *switch, f"0000:{int(bus) + 1}:00.0", numa=numa, vendor="0x10de", klass="0x030200", complex_=complex_
        )
        hca = pci_device(root, *switch, f"0000:{int(bus) + 2}:00.0", numa=numa, driver="mlx5_core", complex_=complex_)
        state = "4: ACTIVE" if i == 0 else "1: DOWN"
        rdma(root, f"mlx5_{i}", hca, {1: (state, NDR, "InfiniBand")}, netdev=f"ib{i}")
        ethernet(root, f"ib{i}", hca, "-1", kind="32")  # IPoIB: not counted again
    storage = pci_device(root, "0000:40:01.0", "0000:41:00.0", numa=0, driver="mlx5_core", complex_="pci0000:40")
    rdma(root, "mlx5_2", storage, {1: ("4: ACTIVE", "200 Gb/sec (4X HDR)", "Ethernet")}, netdev="eth1")
    ethernet(root, "eth1", storage, "200000")
    mgmt = pci_device(root, "0000:c0:01.0", "0000:c1:00.0", numa=1, driver="ixgbe", complex_="pci0000:c0")
    ethernet(root, "eth0", mgmt, "25000")
    ethernet(root, "lo", None, "-1")
    return root


def test_discovers_rdma_ports_and_ethernet(dgx):
    found = {n.name: n for n in nics.discover(dgx)}
    assert sorted(found) == ["eth0", "mlx5_0:1", "mlx5_1:1", "mlx5_2:1"]  # no IPoIB, no RoCE netdev twice, no lo
    ib0, ib1, roce, mgmt = found["mlx5_0:1"], found["mlx5_1:1"], found["mlx5_2:1"], found["eth0"]
    assert (ib0.kind, ib0.active, ib0.rate_gbits, ib0.state, ib0.driver) == (
        "infiniband",
        True,
        400.0,
        "ACTIVE",
        "mlx5_core",
    )
    assert (ib1.active, ib1.state) == (False, "DOWN")
    assert (roce.kind, roce.rate_gbits, roce.netdev) == ("roce", 200.0, "eth1")
    assert (mgmt.kind, mgmt.rate_gbits, mgmt.driver, mgmt.pci) == ("ethernet", 25.0, "ixgbe", "0000:c1:00.0")


def test_placement_next_to_the_gpus(dgx):
    found = {n.name: n for n in nics.discover(dgx)}
    assert [g.pci for g in nics.gpus(dgx)] == ["0000:11:00.0", "0000:91:00.0"]
    assert (found["mlx5_0:1"].nearest_gpus, found["mlx5_0:1"].gpu_path) == ((0,), "PIX")  # same switch as GPU 0
    assert (found["mlx5_1:1"].nearest_gpus, found["mlx5_1:1"].gpu_path) == ((1,), "PIX")
    assert (found["mlx5_2:1"].nearest_gpus, found["mlx5_2:1"].gpu_path) == ((0,), "NODE")  # NUMA 0, another host bridge
    assert found["eth0"].nearest_gpus == (1,) and found["eth0"].gpu_path == "NODE"


def test_relation_words():
    gpu = nics.Gpu(0, "0000:11:00.0", (ROOT_COMPLEX, "0000:00:01.0", "0000:10:00.0", "0000:11:00.0"), 0)
    assert nics.relation((ROOT_COMPLEX, "0000:00:01.0", "0000:10:00.0", "0000:12:00.0"), 0, gpu) == "PIX"
    assert nics.relation((ROOT_COMPLEX, "0000:00:01.0", "0000:20:00.0", "0000:21:00.0"), 0, gpu) == "PXB"
    assert nics.relation((ROOT_COMPLEX, "0000:00:02.0", "0000:30:00.0"), 0, gpu) == "PHB"
    assert nics.relation(("pci0000:80", "0000:80:01.0"), 0, gpu) == "NODE"
    assert nics.relation(("pci0000:80", "0000:80:01.0"), 1, gpu) == "SYS"


def test_summary_is_the_fabric_with_the_most_bandwidth(dgx):
    summary = nics.summarize(nics.discover(dgx))
    assert (summary.kind, summary.count, summary.active, summary.rate_gbits) == ("infiniband", 2, 1, 400.0)
    assert summary.down == ("mlx5_1:1",) and summary.total_gbits == 400.0
    assert summary.descriptor == "infiniband 2x400G mlx5_core"


def test_nccl_ib_hca_narrows_the_fabric(dgx):
    found = nics.discover(dgx)
    assert nics.summarize(found, "mlx5_2").descriptor == "roce 1x200G mlx5_core"
    assert nics.summarize(found, "=mlx5_0:1").descriptor == "infiniband 1x400G mlx5_core"
    assert nics.summarize(found, "^mlx5_1,mlx5_2").descriptor == "infiniband 1x400G mlx5_core"


def test_efa_ports(tmp_path):
    for i in range(4):
        device = pci_device(tmp_path, "0000:00:01.0", f"0000:1{i}:00.0", driver="efa")
        rdma(tmp_path, f"rdmap{i}s0", device, {1: ("4: ACTIVE", "100 Gb/sec (4X EDR)", "Unspecified")})
    summary = nics.summarize(nics.discover(tmp_path))
    assert summary.descriptor == "efa 4x100G efa" and summary.total_gbits == 400.0


def test_no_sysfs_at_all(tmp_path):
    assert nics.discover(tmp_path) == [] and nics.summarize([]).descriptor == "none"
    params, metrics = nics.node_record(tmp_path, environ={})
    assert params["check"] == "nics" and metrics["nic_count"] == 0 and params["nics"] == []


def test_node_record(dgx):
    params, metrics = nics.node_record(dgx, environ={"NCCL_IB_HCA": "mlx5_0,mlx5_1"})
    assert params["descriptor"] == "infiniband 2x400G mlx5_core" and params["nccl_ib_hca"] == "mlx5_0,mlx5_1"
    assert params["down_ports"] == "mlx5_1:1" and len(params["nics"]) == 4 and params["gpus_pci"][0] == "0000:11:00.0"
    assert (metrics["nic_count"], metrics["nic_active"], metrics["nic_down"], metrics["nic_total_gbps"]) == (
        2,
        1,
        1,
        50,
    )
