"""The device seam on a fake GPU: no side effect on creation, the part's real cache, the NUMA binding."""

import threading
import types

import pytest
import torch

from mlbench import device as seam
from mlbench.device import LlcSource, pick_llc, resolve

MIB = 1 << 20
GIB = 1 << 30


def mi300x_properties(index):
    # what ROCm's torch reports for an MI300X: the L2 of one compute die, not the 256 MiB Infinity Cache
    return types.SimpleNamespace(
        name="AMD Instinct MI300X",
        total_memory=192 * GIB,
        L2_cache_size=4 * MIB,
        major=9,
        minor=4,
        multi_processor_count=304,
        gcnArchName="gfx942:sramecc+:xnack-",
        uuid=f"uuid-{index}",
        pci_domain_id=0,
        pci_bus_id=(0x18, 0x9A)[index],
        pci_device_id=0,
    )


def h100_properties(index):
    return types.SimpleNamespace(
        name="NVIDIA H100 80GB HBM3",
        total_memory=80 * GIB,
        L2_cache_size=50 * MIB,
        major=9,
        minor=0,
        uuid=f"GPU-{index}",
    )


@pytest.fixture
def fake_gpus(monkeypatch):
    """Two visible `cuda` GPUs (MI300X unless a test swaps the properties); records set_device calls."""
    calls = {"set_device": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", mi300x_properties)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls["set_device"].append(index))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * GIB, 192 * GIB))
    return calls


def test_resolving_a_device_selects_nothing_until_asked(fake_gpus):
    gpu = resolve("cuda:1")
    assert fake_gpus["set_device"] == []  # creating a Device leaves the current device alone
    gpu.make_current()
    assert fake_gpus["set_device"] == [1]
    resolve("cpu").make_current()  # nothing to select on the CPU
    assert fake_gpus["set_device"] == [1]


def test_mi300x_cache_is_the_infinity_cache_from_the_registry(fake_gpus):
    from mlbench.membw.probe import BandwidthProbe, device_facts

    gpu = resolve("cuda:0")
    assert gpu.info.llc_bytes == 256 * MIB and gpu.info.llc_source is LlcSource.REGISTRY
    assert gpu.info.llc_params() == {"llc_bytes": 256 * MIB, "llc_source": "registry"}
    # everything that sizes from the cache sees 256 MiB: the flush, the membw plan (rotation, the
    # large-buffer rule) and the probe (cache_resident)
    assert gpu.flush_bytes() == 512 * MIB
    assert device_facts(gpu).llc_bytes == 256 * MIB
    assert device_facts(gpu).gpu_count == 2
    assert BandwidthProbe(gpu).llc_bytes == 256 * MIB


def test_a_device_reporting_its_whole_cache_keeps_its_figure(fake_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", h100_properties)
    gpu = resolve("cuda:0")
    assert (gpu.info.llc_bytes, gpu.info.llc_source) == (50 * MIB, LlcSource.DEVICE)
    assert gpu.info.extra["major"] == 9 and "pci_bus_id" not in gpu.info.extra  # torch without PCI fields


@pytest.mark.parametrize(
    "reported, registry, expected",
    [
        (4 * MIB, 256 * MIB, (256 * MIB, LlcSource.REGISTRY)),
        (50 * MIB, 50 * MIB, (50 * MIB, LlcSource.DEVICE)),
        (60 * MIB, None, (60 * MIB, LlcSource.DEVICE)),
        (None, 96 * MIB, (96 * MIB, LlcSource.REGISTRY)),
        (None, None, (None, None)),
    ],
)
def test_the_larger_cache_figure_wins(reported, registry, expected):
    assert pick_llc(reported, registry) == expected


def test_the_registry_names_the_mi300_caches():
    assert seam.registry_llc_bytes("AMD Instinct MI300X") == 256 * MIB
    assert seam.registry_llc_bytes("AMD Instinct MI325X") == 256 * MIB
    assert seam.registry_llc_bytes("Some Unknown Accelerator") is None


def test_inventory_and_provenance_use_the_same_description(fake_gpus):
    from mlbench.provenance import devices

    found = devices()
    assert [d["index"] for d in found] == [0, 1]
    assert found[1]["llc_bytes"] == 256 * MIB and found[1]["llc_source"] == "registry"
    assert found[0]["capability"] == "9.4" and found[0]["uuid"] == "uuid-0"


def test_nodecheck_lists_the_gpus_through_the_seam(fake_gpus):
    from mlbench.acceptance.nodecheck import _gpus

    gpus = _gpus()
    assert [(g["index"], g["memory_bytes"], g["uuid"]) for g in gpus] == [
        (0, 192 * GIB, "uuid-0"),
        (1, 192 * GIB, "uuid-1"),
    ]


def test_rocm_is_told_by_torchs_build(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", None)
    assert not seam.is_rocm()
    monkeypatch.setattr(torch.version, "hip", "6.2.41133")
    assert seam.is_rocm()


def test_capability_is_cuda_only(fake_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.version, "hip", None)
    assert resolve("cuda:0").capability() == (9, 0)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert resolve("cuda:0").capability() is None
    assert resolve("cpu").capability() is None


def test_this_cpu_build_sees_no_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU build")
    assert seam.gpu_count() == 0
    assert set(seam.runtime_versions()) == {"cuda", "hip", "cudnn", "nccl"}
    assert seam.runtime_versions()["nccl"] is None


# -- host NUMA binding --------------------------------------------------------------------------


def fake_sysfs(root):
    for path, text in {
        "sys/devices/system/node/node0/cpulist": "0-3\n",
        "sys/devices/system/node/node1/cpulist": "4-7\n",
        "sys/bus/pci/devices/0000:18:00.0/numa_node": "0\n",
        "sys/bus/pci/devices/0000:9a:00.0/numa_node": "1\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return str(root)


def test_binding_puts_the_process_on_the_gpus_node(fake_gpus, tmp_path, monkeypatch):
    root = fake_sysfs(tmp_path)
    monkeypatch.setattr(seam.host, "usable_cpus", lambda: frozenset(range(8)))
    bound = []
    gpu = resolve("cuda:1")
    assert gpu.info.extra["pci_bus_id"] == "0000:9a:00.0"
    binding = gpu.bind_host_numa(root, set_affinity=bound.append)
    assert bound == [(4, 5, 6, 7)]
    assert binding.params() == {"numa_node": 1, "cpus": "4-7", "numa_bound": True, "numa_reason": None}
    resolve("cuda:0").bind_host_numa(root, set_affinity=bound.append)
    assert bound[-1] == (0, 1, 2, 3)


def test_no_numa_information_binds_nothing(fake_gpus, tmp_path):
    bound = []
    binding = resolve("cuda:0").bind_host_numa(str(tmp_path), set_affinity=bound.append)
    assert bound == [] and not binding.bound and binding.reason == "no NUMA nodes listed"
    assert (
        resolve("cpu").bind_host_numa(fake_sysfs(tmp_path), set_affinity=bound.append).reason
        == "the device's PCI address is unknown"
    )
    assert bound == []


def test_affinity_is_set_on_every_thread(tmp_path):
    tasks = tmp_path / "task"
    tasks.mkdir()
    (tasks / str(threading.get_native_id())).mkdir()
    (tasks / "2147483646").mkdir()  # a thread that ended meanwhile
    import os

    current = tuple(sorted(os.sched_getaffinity(0)))
    seam._set_process_affinity(current, str(tasks))  # the same CPUs: a real call that changes nothing
    assert tuple(sorted(os.sched_getaffinity(0))) == current


def test_membw_binds_before_the_first_host_buffer(monkeypatch):
    from mlbench.host import NumaBinding
    from mlbench.membw.probe import BandwidthProbe

    cpu = resolve("cpu")
    order = []
    monkeypatch.setattr(cpu, "bind_host_numa", lambda: order.append("bind") or NumaBinding(1, (4, 5, 6, 7)))
    real_empty = torch.empty

    def empty(*args, **kwargs):
        order.append("allocate")
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", empty)
    probe = BandwidthProbe(cpu)
    probe._host_arena("pageable", 4096)
    probe._host_arena("pinned" if torch.cuda.is_available() else "pageable", 1 << 20)
    assert order == ["bind", "allocate", "allocate"]  # bound once, before anything was allocated
    transfer = types.SimpleNamespace(spec=types.SimpleNamespace(kind="transfer"))
    device_op = types.SimpleNamespace(spec=types.SimpleNamespace(kind="device"))
    assert probe._placement_params(transfer)["cpus"] == "4-7"
    assert "cpus" not in probe._placement_params(device_op)


def test_queue_delay_only_where_the_device_can_spin_and_its_cycle_count():
    from mlbench import device as D

    assert D.resolve("cpu").queue_delay is None  # the CPU times with a synchronized clock: nothing to queue
    # 100 us at a 1.755 GHz spin clock (hand: 1.755e9 * 1e-4 = 175,500 cycles)
    assert D.spin_cycles(100e-6, 1.755e9) == 175_500
    assert D.spin_cycles(0.0, 1e9) == 1
