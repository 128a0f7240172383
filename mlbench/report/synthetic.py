"""Synthetic records for a fleet: for tests (small fleets with known answers) and the report benchmark.

Deterministic for a seed. Each node gets one file per probe in one run directory
(`<out>/<run_id>/<probe>-<host>.jsonl`), every record valid for `mlbench.records.validate`.
The figures follow the H100 SXM by default: MAMF ~80% of 989 TFLOPS with a ~2% silicon lottery,
HBM copy ~90% of 3.35 TB/s, h2d/d2h ~53 GB/s, 8-rank ring all_reduce ~370 GB/s busbw reaching half
at ~16 MiB (algbw from busbw by the op's busbw factor at the fleet's GPU count), local NVMe ~1.8 GB/s.
`slow` scales a node's (or one device's) figures: {"node0003": 0.7} or {("node0003", 5): 0.8}.
Nothing here measures anything: these are made-up records.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from .. import SCHEMA
from ..collectives.plan import OPS as COLLECTIVE_SPECS

MAMF_SHAPES = tuple((m, n, k) for m in (2048, 4096, 8192) for n in (4096, 8192) for k in (4096, 8192))
MEMBW_OPS = ("copy", "read", "write", "triad", "h2d", "d2h")
MEMBW_SIZES = tuple(1 << p for p in range(20, 31, 2))
COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
COLLECTIVE_SIZES = tuple(1 << p for p in range(10, 31, 2))
DISK_MODES = ("seqwrite", "seqread", "randread", "randwrite")


@dataclass(frozen=True)
class FleetSpec:
    nodes: int = 4
    gpus: int = 8
    device_name: str = "NVIDIA H100 80GB HBM3"
    probes: tuple = ("mamf", "membw", "collectives", "diskio")
    slow: dict = field(default_factory=dict)
    seed: int = 0
    raw_samples: int = 10
    run_id: str = "synthetic-fleet"
    mamf_tflops: float = 794.5
    hbm_gbps: float = 3015.0
    busbw_gbps: float = 370.0


def host_name(i: int) -> str:
    return f"node{i:04d}"


def _record(spec: FleetSpec, probe, host, index, params, metrics, rank=0, world_size=1, raw=None, flags=()):
    record = {
        "schema": SCHEMA,
        "probe": probe,
        "run_id": spec.run_id,
        "time": "2026-11-26T18:00:00Z",
        "host": host,
        "rank": rank,
        "world_size": world_size,
        "device": {"type": "cuda", "name": spec.device_name, "index": index},
        "params": params,
        "metrics": metrics,
        "status": "ok",
        "error": None,
    }
    if flags:
        record["flags"] = list(flags)
    if raw:
        record["raw"] = raw
    return record


def _samples(rng, center, n):
    return [round(center * (1 + rng.gauss(0, 0.004)), 6) for _ in range(n)]


def mamf_records(spec, rng, host, index, scale):
    device_peak = spec.mamf_tflops * scale * (1 + rng.uniform(-0.02, 0.02))
    for shape_i, (m, n, k) in enumerate(MAMF_SHAPES):
        tflops = device_peak * (0.86 + 0.14 * shape_i / (len(MAMF_SHAPES) - 1))
        time_ms = 2 * m * n * k / (tflops * 1e12) * 1e3
        raw = _samples(rng, time_ms, spec.raw_samples)
        metrics = {
            "tflops": tflops,
            "tflops_mean": tflops * 0.995,
            "tflops_max": tflops * 1.01,
            "time_ms": time_ms,
            "cv": 0.004,
        }
        yield _record(
            spec,
            "mamf",
            host,
            index,
            {"m": m, "n": n, "k": k, "dtype": "bf16", "mode": "sweep"},
            metrics,
            raw={"time_ms": raw},
        )


def membw_records(spec, rng, host, index, scale):
    for op in MEMBW_OPS:
        top = 53.0 if op in ("h2d", "d2h") else spec.hbm_gbps * (1.0 if op == "copy" else 0.97)
        for size in MEMBW_SIZES:
            gbps = top * scale * size / (size + (1 << 22)) * (1 + rng.uniform(-0.01, 0.01))
            metrics = {"gbps": gbps, "gbps_copied": gbps / 2 if op == "copy" else gbps, "time_ms": size / gbps / 1e6}
            yield _record(
                spec,
                "membw",
                host,
                index,
                {"op": op, "bytes": size},
                metrics,
                raw={"time_ms": _samples(rng, metrics["time_ms"], spec.raw_samples)},
            )


def collective_records(spec, rng, host, scale):
    world = spec.gpus
    for op in COLLECTIVE_OPS:
        for size in COLLECTIVE_SIZES:
            shaped = spec.busbw_gbps * scale * size / (size + (16 << 20)) * (1 + rng.uniform(-0.01, 0.01))
            factor = COLLECTIVE_SPECS[op].busbw_factor(world)  # nccl-tests' busbw / algbw at this world size
            busbw, algbw = (shaped, shaped / factor) if factor else (0.0, shaped)  # one rank: no bus traffic
            time_us = size / (algbw * 1e3)
            params = {
                "op": op,
                "bytes": size,
                "count": size // 4,
                "dtype": "float32",
                "world_size": world,
                "backend": "nccl",
                "in_place": False,
                "mode": "throughput",
                "nnodes": 1,
                "local_world_size": world,
            }
            metrics = {"time_us": time_us, "algbw_gbps": algbw, "busbw_gbps": busbw, "errors": 0}
            yield _record(spec, "collectives", host, 0, params, metrics, world_size=world)


def diskio_records(spec, rng, host, scale):
    for mode in DISK_MODES:
        for block in (4096, 1 << 20):
            for jobs in (1, 4):
                seq = mode.startswith("seq")
                nominal = 1.8 if block > 4096 else (0.24 if seq else 0.12 * jobs)
                gbps = scale * nominal * (1 + rng.uniform(-0.02, 0.02))
                params = {"mode": mode, "block_size": block, "jobs": jobs, "direct": True, "file_size": 1 << 30}
                metrics = {
                    "gbps": gbps,
                    "iops": gbps * 1e9 / block,
                    "lat_us_p50": block / gbps / 1e3 * jobs,
                    "lat_us_p99": block / gbps / 1e3 * jobs * 3,
                    "lat_us_p999": block / gbps / 1e3 * jobs * 8,
                }
                record = _record(spec, "diskio", host, 0, params, metrics)
                record["device"] = {"type": "storage", "name": "/mnt/nvme", "index": 0}
                yield record


def node_records(spec: FleetSpec, node: int):
    """{probe: [records]} of one node."""
    rng = random.Random(spec.seed * 1_000_003 + node)
    host = host_name(node)
    node_scale = spec.slow.get(host, 1.0)
    out = {probe: [] for probe in spec.probes}
    for index in range(spec.gpus):
        scale = node_scale * spec.slow.get((host, index), 1.0)
        if "mamf" in out:
            out["mamf"] += mamf_records(spec, rng, host, index, scale)
        if "membw" in out:
            out["membw"] += membw_records(spec, rng, host, index, scale)
    if "collectives" in out:
        out["collectives"] += collective_records(spec, rng, host, node_scale)
    if "diskio" in out:
        out["diskio"] += diskio_records(spec, rng, host, node_scale)
    return out


def write_fleet(out_dir, spec: FleetSpec = FleetSpec()) -> Path:
    """Write the fleet's records under `out_dir/<run_id>/`; return that run directory."""
    run_dir = Path(out_dir) / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    for node in range(spec.nodes):
        for probe, records in node_records(spec, node).items():
            with open(run_dir / f"{probe}-{host_name(node)}.jsonl", "w", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    return run_dir
