"""Hand-written records for the report tests: every one valid under `mlbench.records.validate`."""

from __future__ import annotations

import json
from pathlib import Path

from mlbench.records import make_record, validate

H100 = "NVIDIA H100 80GB HBM3"


def rec(
    probe,
    params,
    metrics=None,
    *,
    host="n1",
    index=0,
    name=H100,
    dev_type="cuda",
    status="ok",
    error=None,
    flags=None,
    run_id="r1",
    world_size=1,
    rank=0,
):
    record = make_record(
        probe,
        run_id,
        {"type": dev_type, "name": name, "index": index},
        params,
        metrics or {},
        status=status,
        error=error,
        rank=rank,
        world_size=world_size,
    )
    record["host"], record["time"] = host, "2026-11-26T18:00:00Z"
    if flags:
        record["flags"] = list(flags)
    record["raw"] = {"time_ms": [1.0, 1.1, 0.9]}
    assert validate(record) == [], validate(record)
    return record


def mamf(tflops, *, m=4096, n=4096, k=4096, dtype="bf16", **kw):
    params = {"m": m, "n": n, "k": k, "dtype": dtype, **kw.pop("params", {})}
    metrics = {"tflops": tflops, "tflops_mean": tflops * 0.99, "tflops_max": tflops * 1.01, "time_ms": 1.0}
    return rec("mamf", params, metrics if kw.get("status", "ok") == "ok" else {}, **kw)


def membw(op, gbps, *, size=1 << 30, copied=None, **kw):
    metrics = {"gbps": gbps, "time_ms": 1.0}
    if copied is not None:
        metrics["gbps_copied"] = copied
    return rec("membw", {"op": op, "bytes": size}, metrics if kw.get("status", "ok") == "ok" else {}, **kw)


def coll(op, size, busbw, *, world=8, errors=0, time_us=None, backend="nccl", in_place=False, extra=None, **kw):
    params = {
        "op": op,
        "bytes": size,
        "count": size // 4,
        "dtype": "fp32",
        "world_size": world,
        "backend": backend,
        "in_place": in_place,
        **(extra or {}),
    }
    metrics = {
        "time_us": time_us if time_us is not None else size / max(busbw, 1e-9) / 1e3,
        "algbw_gbps": busbw,
        "busbw_gbps": busbw,
        "errors": errors,
    }
    return rec("collectives", params, metrics, world_size=world, **kw)


def disk(mode, gbps, *, block=1 << 20, jobs=1, direct=True, p99=500.0, **kw):
    params = {"mode": mode, "block_size": block, "jobs": jobs, "direct": direct, "file_size": 1 << 30}
    metrics = {
        "gbps": gbps,
        "iops": gbps * 1e9 / block,
        "lat_us_p50": p99 / 3,
        "lat_us_p99": p99,
        "lat_us_p999": p99 * 2,
    }
    return rec("diskio", params, metrics, name="nvme0n1", dev_type="storage", **kw)


def write_jsonl(path, records) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
