"""Host facts from a fake /proc and /sys tree: memory, CPU, caches, NUMA nodes, a PCI device's node."""

import pytest

from mlbench import host


def write(root, path, text):
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


@pytest.fixture
def dual_socket(tmp_path):
    """Two sockets of 4 cores (+ hyperthreads); GPU 0000:18:00.0 on node 0, 0000:9a:00.0 on node 1."""
    write(tmp_path, "/proc/meminfo", "MemTotal:       2097152 kB\nMemFree:  1000 kB\nMemAvailable:   1048576 kB\n")
    write(tmp_path, "/proc/cpuinfo", "processor\t: 0\nmodel name\t: Fake Xeon 8480\nprocessor\t: 1\n")
    for index, size in enumerate(("48K", "32K", "2048K", "105M")):
        write(tmp_path, f"/sys/devices/system/cpu/cpu0/cache/index{index}/size", size + "\n")
    write(tmp_path, "/sys/devices/system/node/node0/cpulist", "0-3,8-11\n")
    write(tmp_path, "/sys/devices/system/node/node1/cpulist", "4-7,12-15\n")
    write(tmp_path, "/sys/devices/system/node/possible", "0-1\n")
    write(tmp_path, "/sys/bus/pci/devices/0000:18:00.0/numa_node", "0\n")
    write(tmp_path, "/sys/bus/pci/devices/0000:9a:00.0/numa_node", "1\n")
    write(tmp_path, "/sys/bus/pci/devices/0000:c1:00.0/numa_node", "-1\n")
    return str(tmp_path)


def test_memory_and_cpu_from_proc(dual_socket):
    assert host.total_memory_bytes(dual_socket) == 2 << 30
    assert host.available_memory_bytes(dual_socket) == 1 << 30
    assert host.meminfo_bytes("SwapTotal", dual_socket) is None
    assert host.cpu_model_name(dual_socket) == "Fake Xeon 8480"
    assert host.cpu_llc_bytes(dual_socket) == 105 << 20


def test_nothing_listed_is_none_not_a_guess(tmp_path):
    root = str(tmp_path)
    assert host.total_memory_bytes(root) is None
    assert host.cpu_llc_bytes(root) is None
    assert host.numa_nodes(root) == {}
    assert host.pci_numa_node("0000:18:00.0", root) is None


def test_cpulists_both_ways():
    assert host.parse_cpulist("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert host.parse_cpulist("") == ()
    assert host.format_cpulist([11, 10, 8, 3, 2, 1, 0]) == "0-3,8,10-11"
    assert host.format_cpulist([5]) == "5"


def test_numa_nodes_and_a_pci_devices_node(dual_socket):
    assert host.numa_nodes(dual_socket) == {0: (0, 1, 2, 3, 8, 9, 10, 11), 1: (4, 5, 6, 7, 12, 13, 14, 15)}
    assert host.pci_numa_node("0000:9a:00.0", dual_socket) == 1
    assert host.pci_numa_node("00000000:9A:00.0", dual_socket) == 1  # NVML's spelling
    assert host.pci_numa_node("0000:c1:00.0", dual_socket) is None  # the kernel's "unknown"


def test_pci_bus_id_spellings():
    assert host.normalize_pci_bus_id("00000000:9A:00.0") == "0000:9a:00.0"
    assert host.normalize_pci_bus_id("9a:00.0") == "0000:9a:00.0"
    assert host.normalize_pci_bus_id("not a bus id") is None


def test_binding_takes_the_devices_node_within_the_allowed_cpus(dual_socket):
    binding = host.numa_binding_for("0000:9a:00.0", range(16), dual_socket)
    assert binding.bound and binding.node == 1 and binding.cpus == (4, 5, 6, 7, 12, 13, 14, 15)
    assert binding.params() == {"numa_node": 1, "cpus": "4-7,12-15", "numa_bound": True, "numa_reason": None}
    # Slurm gave this job CPUs 0-5 only: node 1's share of them
    assert host.numa_binding_for("0000:9a:00.0", range(6), dual_socket).cpus == (4, 5)


@pytest.mark.parametrize(
    "bus_id, allowed, reason",
    [
        ("0000:c1:00.0", range(16), "no NUMA node given for PCI device 0000:c1:00.0"),
        (None, range(16), "the device's PCI address is unknown"),
        ("0000:9a:00.0", range(4), "none of NUMA node 1's CPUs is allowed to this process"),
    ],
)
def test_no_binding_says_why(dual_socket, bus_id, allowed, reason):
    binding = host.numa_binding_for(bus_id, allowed, dual_socket)
    assert not binding.bound and binding.reason == reason
    assert binding.params()["cpus"] is None and binding.params()["numa_bound"] is False


def test_one_node_or_none_is_not_bound(tmp_path):
    root = str(tmp_path)
    assert host.numa_binding_for("0000:18:00.0", range(4), root).reason == "no NUMA nodes listed"
    write(tmp_path, "/sys/devices/system/node/node0/cpulist", "0-3\n")
    write(tmp_path, "/sys/bus/pci/devices/0000:18:00.0/numa_node", "0\n")
    binding = host.numa_binding_for("0000:18:00.0", range(4), root)
    assert (binding.bound, binding.node, binding.reason) == (False, 0, "one NUMA node")


def test_this_machine_answers_without_errors():
    assert host.cpu_count() >= 1
    assert host.usable_cpus() and host.usable_cpus() <= set(range(4096))
    assert isinstance(host.cpu_model_name(), str)
