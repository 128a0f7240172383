"""mlbench diskio against fio, same file system, same parameters, in one run.

    .venv/bin/python benchmarks/bench_diskio.py [--dir PATH] [--duration S] [--file-size 1G] [--rounds 2]

Both tools: O_DIRECT, synchronous IO per job (fio `ioengine=psync`, mlbench's threads), the same
block size, job count, file size, time bound (fio `time_based`, mlbench `--io-size 1T` so time ends
the test), each on a file it lays out itself in a fresh directory. Rounds alternate which tool goes
first (the virtual disks this runs on are bursty); each tool's figure is the median of its rounds. Targets:
    sequential 1 MiB read and write, 1 job   >= 0.95 x fio
    4 KiB random read, 4 and 16 jobs        >= 0.90 x fio psync
Exit 0 when every target is met (or fio is absent: "fio not installed, skipped"), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlbench.stats import median

ROOT = Path(__file__).resolve().parents[1]
CASES = (  # (name, fio rw, mlbench mode, block size, jobs, target ratio, metric)
    ("seqread 1MiB x1", "read", "seqread", "1M", 1, 0.95, "gbps"),
    ("seqwrite 1MiB x1", "write", "seqwrite", "1M", 1, 0.95, "gbps"),
    ("randread 4KiB x4", "randread", "randread", "4K", 4, 0.90, "iops"),
    ("randread 4KiB x16", "randread", "randread", "4K", 16, 0.90, "iops"),
)


def run_fio(directory: Path, rw: str, bs: str, jobs: int, file_size: str, duration_s: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="fio-", dir=directory))
    try:
        cmd = ["fio", "--name=bench", f"--filename={work / 'file'}", f"--size={file_size}", "--direct=1",
               "--ioengine=psync", f"--rw={rw}", f"--bs={bs}", f"--numjobs={jobs}", "--time_based=1",
               f"--runtime={duration_s:g}", "--group_reporting=1", "--output-format=json"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]
        side = job["write" if "write" in rw else "read"]
        return {"gbps": side["bw_bytes"] / 1e9, "iops": side["iops"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_mlbench(directory: Path, mode: str, bs: str, jobs: int, file_size: str, duration_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mlbench-bench-") as results:
        out = Path(results) / "diskio.jsonl"
        cmd = [sys.executable, "-m", "mlbench.diskio", "--dir", str(directory), "--modes", mode, "--block-sizes", bs,
               "--jobs", str(jobs), "--file-size", file_size, "--duration", f"{duration_s:g}", "--io-size", "1T",
               "--out", str(out)]
        subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        record = json.loads(out.read_text().splitlines()[0])
        if record["status"] != "ok":
            raise RuntimeError(f"mlbench {mode}: {record['status']}: {record['error']}")
        return {"gbps": record["metrics"]["gbps"], "iops": record["metrics"]["iops"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="a directory on the file system to test (default: here)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per test and tool")
    parser.add_argument("--file-size", default="1G")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("fio") is None:
        print("fio not installed, skipped (apt-get install -y fio)")
        return 0
    directory = Path(args.dir).resolve()
    version = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"diskio vs {version} on {directory}: direct=1, psync, file {args.file_size}, "
          f"{args.duration:g} s per test, {args.rounds} round(s), median of rounds")
    print(f"{'case':<20}{'fio':>14}{'mlbench':>14}{'ratio':>8}{'target':>8}  verdict")
    all_met = True
    for name, rw, mode, bs, jobs, target, metric in CASES:
        fio_runs, ml_runs = [], []
        for round_index in range(args.rounds):
            order = ("fio", "ml") if round_index % 2 == 0 else ("ml", "fio")
            for tool in order:
                if tool == "fio":
                    fio_runs.append(run_fio(directory, rw, bs, jobs, args.file_size, args.duration)[metric])
                else:
                    ml_runs.append(run_mlbench(directory, mode, bs, jobs, args.file_size, args.duration)[metric])
        fio_value, ml_value = median(fio_runs), median(ml_runs)
        ratio = ml_value / fio_value
        met = ratio >= target
        all_met &= met
        unit = "GB/s" if metric == "gbps" else "IOPS"
        fmt = (lambda v: f"{v:.3f} {unit}") if metric == "gbps" else (lambda v: f"{v:,.0f} {unit}")
        print(f"{name:<20}{fmt(fio_value):>14}{fmt(ml_value):>14}{ratio:>8.3f}{target:>8.2f}  {'ok' if met else 'MISSED'}"
              f"   (rounds fio {', '.join(f'{v:.4g}' for v in fio_runs)}; mlbench {', '.join(f'{v:.4g}' for v in ml_runs)})")
    print("all targets met" if all_met else "some targets missed")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
