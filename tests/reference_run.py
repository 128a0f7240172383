"""The kept reference run (results/reference/cpu-quick-20261126), copied and edited for compare/export tests.

`relabelled` turns its CPU device into an H100 of the registry (figures kept); `scaled` multiplies the figures
of chosen checks (a degraded or improved copy); `renamed` moves it to other node names. Every copy is written
as real `.jsonl` files in a run directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "cpu-quick-20261126"
H100 = "NVIDIA H100 80GB HBM3"
# figures scaled per (probe, selector): the metrics that make each check's value
SCALED_METRICS = {
    "mamf": ("tflops", "tflops_mean", "tflops_max", "tflops_min"),
    "membw": ("gbps", "gbps_copied"),
    "collectives": ("busbw_gbps", "algbw_gbps"),
    "diskio": ("gbps", "iops"),
}


def records(run: Path) -> dict:
    """{file name: [record, ...]} of a run directory."""
    return {
        p.name: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        for p in sorted(run.glob("*.jsonl"))
    }


def write_run(run: Path, files: dict, env: bool = True) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    for name, recs in files.items():
        (run / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    if env:
        shutil.copy(REFERENCE / "env.json", run / "env.json")
    return run


def relabel(record: dict, name: str = H100) -> dict:
    """A CPU record as if measured on GPU 0 of the same host; storage and node records are kept."""
    record = json.loads(json.dumps(record))
    if record["device"]["type"] == "cpu":
        record["device"] = {"type": "cuda", "name": name, "index": 0}
    return record


def relabelled(root: Path, name: str = "gpu-base") -> Path:
    """The reference run with its CPU relabelled as an H100 (figures unchanged)."""
    return write_run(root / name, {f: [relabel(r) for r in recs] for f, recs in records(REFERENCE).items()})


def scaled(source: Path, root: Path, name: str, factors: dict) -> Path:
    """A copy of `source` whose figures are multiplied: factors {(probe, selector): factor}, where selector is
    a params value the record must have (an op, a mode, a dtype) or None for every record of the probe."""
    out = {}
    for file, recs in records(source).items():
        out[file] = []
        for record in recs:
            record = json.loads(json.dumps(record))
            for (probe, selector), factor in factors.items():
                if record["probe"] == probe and (selector is None or selector in record["params"].values()):
                    for key in SCALED_METRICS[probe]:
                        if isinstance(record["metrics"].get(key), (int, float)):
                            record["metrics"][key] *= factor
            out[file].append(record)
    return write_run(root / name, out)


def renamed(source: Path, root: Path, name: str, hosts: dict) -> Path:
    """A copy of `source` with its host names replaced ({old: new})."""
    out = {}
    for file, recs in records(source).items():
        out[file] = [dict(r, host=hosts.get(r["host"], r["host"])) for r in recs]
    return write_run(root / name, out)


def merged(root: Path, name: str, runs: list) -> Path:
    """One run directory holding the records of several (each file kept, prefixed by the run's name)."""
    out = {}
    for run in runs:
        out.update({f"{run.name}-{file}": recs for file, recs in records(run).items()})
    return write_run(root / name, out)
