"""Provenance: what produced a run, written to `env.json` in the run directory.

Host, platform, Python, torch / CUDA / HIP / cuDNN / NCCL versions, the GPU driver, devices, the
command lines of the probes that wrote into the run, and the environment variables that change
results (NCCL_*, CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS, torchrun's and Slurm's layout, ...).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from . import SCHEMA, __version__, host
from .records import hostname, utc_now, write_json

ENV_PREFIXES = (
    "NCCL_",
    "CUDA_",
    "HIP_",
    "ROCR_",
    "TORCH_",
    "MLBENCH_",
    "SLURM_JOB",
    "SLURM_NNODES",
    "SLURM_NTASKS",
    "SLURM_NODELIST",
    "UCX_",
    "FI_",
)
ENV_NAMES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "TORCHELASTIC_RUN_ID",
)


def relevant_environment(environ=None) -> dict:
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}


def _driver_version() -> str | None:
    try:
        import pynvml  # optional extra: nvidia-ml-py

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=15
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def software_versions() -> dict:
    import torch

    from .device import gpu_count, runtime_versions

    versions = {
        "mlbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **runtime_versions(),
        "driver": None,
    }
    if gpu_count():
        versions["driver"] = _driver_version()
    return versions


def devices() -> list[dict]:
    from .device import accelerator_inventory

    return [
        {
            "type": info.type,
            "index": info.index,
            "name": info.name,
            "total_memory_bytes": info.total_memory_bytes or 0,
            "capability": f"{info.extra.get('major', '?')}.{info.extra.get('minor', '?')}",
            **info.llc_params(),
            "uuid": info.extra.get("uuid") or None,
        }
        for info in accelerator_inventory()
    ]


def host_info() -> dict:
    return {
        "host": hostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": host.cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": host.total_memory_bytes(),
    }


def collect(probe: str | None = None, argv=None) -> dict:
    """One env.json document for this process."""
    return {
        "schema": SCHEMA,
        "time": utc_now(),
        **host_info(),
        "versions": software_versions(),
        "devices": devices(),
        "commands": {probe or "mlbench": " ".join(argv if argv is not None else getattr(sys, "orig_argv", sys.argv))},
        "environment": relevant_environment(),
    }


def write_env_json(run_dir: str | os.PathLike, probe: str | None = None, argv=None) -> Path:
    """Write (or update) `run_dir/env.json`: the first writer sets it, later probes add their command line."""
    path = Path(run_dir) / "env.json"
    doc = collect(probe, argv)
    if path.exists():
        try:
            old = json.loads(path.read_text())
            commands = dict(old.get("commands", {}))
            commands.update(doc["commands"])
            old["commands"] = commands
            doc = old
        except (OSError, ValueError):
            pass
    write_json(path, doc)
    return path
