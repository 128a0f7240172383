"""Node sanity facts for the acceptance run, as `node` records (the reporter judges them).

The record `check: nics` lists the node's network ports (InfiniBand/RoCE/EFA with state, rate and
link layer, Ethernet speed; PCIe/NUMA placement next to each GPU) and its fabric summary
(`mlbench.nics`); the report flags a node whose fabric differs from the fleet's (`fabric.nics`).

Sizing rules of thumb: 2-3 data-loader workers per accelerator plus one process, so at
least 3 CPU cores per GPU; host memory at least the GPUs' total memory; storage planned at 80% of
what was sold (warn at 80% full, fail at 90%). With NVML (optional extra `nvidia-ml-py`) each GPU's
inventory and state: UUID, PCI bus, clocks, power, temperature, ECC mode and error counts.

    python -m mlbench.acceptance.nodecheck --io-dir PATH --out node.jsonl
"""

from __future__ import annotations

import os
import shutil

import click

from ..cli import Command


def facts(io_dir: str) -> list:
    """(device record, params, metrics) triples: CPU, host memory, disk, one per GPU."""
    from .. import host, nics
    from ..records import hostname

    gpus = _gpus()
    node = {"type": "node", "name": hostname(), "index": None}
    cores = host.cpu_count()
    usable = len(host.usable_cpus())
    host_memory = host.total_memory_bytes()
    gpu_memory = sum(g.get("memory_bytes") or 0 for g in gpus)
    out = [
        (
            node,
            {"check": "cpu_cores", "cpu": host.cpu_model_name()},
            {
                "cores": cores,
                "usable_cores": usable,
                "gpus": len(gpus),
                "cores_per_gpu": (usable / len(gpus)) if gpus else None,
                "needed_cores": 3 * len(gpus),
            },
        ),
        (
            node,
            {"check": "host_memory"},
            {
                "bytes": host_memory,
                "gpu_memory_bytes": gpu_memory,
                "ratio_to_gpu_memory": (host_memory or 0) / gpu_memory if gpu_memory else None,
            },
        ),
    ]
    usage = shutil.disk_usage(io_dir)
    out.append(
        (
            node,
            {"check": "disk", "path": os.path.abspath(io_dir)},
            {
                "total_bytes": usage.total,
                "free_bytes": usage.free,
                "used_pct": 100.0 * (usage.total - usage.free) / usage.total,
            },
        )
    )
    nic_params, nic_metrics = nics.node_record()  # fabric ports, placement next to the GPUs (mlbench.nics)
    out.append((node, nic_params, nic_metrics))
    for gpu in gpus:
        device = {"type": gpu["type"], "name": gpu["name"], "index": gpu["index"]}
        params = {"check": "gpu", **{k: gpu[k] for k in ("uuid", "pci_bus") if gpu.get(k)}}
        metrics = {k: v for k, v in gpu.items() if k not in ("type", "name", "index", "uuid", "pci_bus")}
        out.append((device, params, metrics))
    return out


def _gpus() -> list:
    """Accelerators torch sees, with NVML state where NVML is there."""
    try:
        from ..device import accelerator_inventory
    except ImportError:  # no torch
        return []
    found = [
        {
            "type": info.type,
            "name": info.name,
            "index": info.index,
            "memory_bytes": info.total_memory_bytes or 0,
            "uuid": info.extra.get("uuid") or None,
        }
        for info in accelerator_inventory(("cuda",))
    ]
    if found:
        _add_nvml(found)
    return found


def _nvml_handle(pynvml, gpu: dict):
    """The NVML handle of the GPU torch calls `index`: by UUID, since NVML ignores CUDA_VISIBLE_DEVICES
    (under Slurm torch's GPU 0 may be the node's GPU 4); by index only when nothing is hidden."""
    uuid = gpu.get("uuid")
    if uuid:
        text = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(text)
        except Exception:
            pass
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None:
        try:
            return pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
        except Exception:
            return None
    return None


def _add_nvml(gpus: list) -> None:
    try:
        import pynvml
    except ImportError:
        return
    try:
        pynvml.nvmlInit()
    except Exception:
        return
    try:
        for gpu in gpus:
            handle = _nvml_handle(pynvml, gpu)
            if handle is None:
                continue

            def read(name, fn, *args, scale=1.0, handle=handle, gpu=gpu):
                try:
                    value = fn(handle, *args)
                    if isinstance(value, bytes):
                        value = value.decode()
                    elif isinstance(value, (int, float)):
                        value = value * scale
                    gpu[name] = value
                except Exception:
                    pass

            try:
                gpu["pci_bus"] = pynvml.nvmlDeviceGetPciInfo(handle).busId
                gpu["pci_bus"] = gpu["pci_bus"].decode() if isinstance(gpu["pci_bus"], bytes) else gpu["pci_bus"]
            except Exception:
                pass
            read("sm_clock_mhz", pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_SM)
            read("max_sm_clock_mhz", pynvml.nvmlDeviceGetMaxClockInfo, pynvml.NVML_CLOCK_SM)
            read("mem_clock_mhz", pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_MEM)
            read("power_w", pynvml.nvmlDeviceGetPowerUsage, scale=1e-3)
            read("power_limit_w", pynvml.nvmlDeviceGetEnforcedPowerLimit, scale=1e-3)
            read("temperature_c", pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU)
            try:
                current, _pending = pynvml.nvmlDeviceGetEccMode(handle)
                gpu["ecc_enabled"] = int(current)
            except Exception:
                pass
            read(
                "ecc_uncorrected_errors",
                pynvml.nvmlDeviceGetTotalEccErrors,
                pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                pynvml.NVML_VOLATILE_ECC,
            )
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


@click.command(cls=Command, name="nodecheck")
@click.option("--io-dir", default=".", show_default=True, help="The file system whose fill level is checked.")
@click.option("--out", required=True, help="JSON Lines file the node records are appended to.")
@click.option("--run-id", default=None, envvar="MLBENCH_RUN_ID")
def command(io_dir, out, run_id):
    """Node sanity facts: CPU cores, host memory and disk per GPU, GPU inventory (NVML)."""
    from ..exitcodes import UsageError
    from ..records import Result
    from ..session import ProbeSession

    if not os.path.isdir(io_dir):
        raise UsageError(f"--io-dir {io_dir}: not a directory")
    session = ProbeSession("node", {"type": "node", "name": "", "index": None}, out=out, run_id=run_id).start()
    with session:
        for device, params, metrics in facts(io_dir):
            session.add(Result(params=params, metrics=metrics), device_record=device)
    return 0


if __name__ == "__main__":
    command.main(prog_name="python -m mlbench.acceptance.nodecheck")
