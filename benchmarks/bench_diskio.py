"""mlbench diskio against fio, same file system, same parameters, in one run.

    .venv/bin/python benchmarks/bench_diskio.py [--dir PATH] [--duration S] [--file-size 1G] [--rounds 2]
        [--cases seqread,...] [--fio-iomem auto|malloc|mmaphuge]

Both tools: O_DIRECT, synchronous IO per job (fio `ioengine=psync`, mlbench's processes), the same
block size, job count, file size, time bound (fio `time_based`, mlbench `--io-size 1T` so time ends
the test), each on a file it lays out itself in a fresh directory. Rounds alternate which tool goes
first (the virtual disks this runs on are bursty); each tool's figure is the median of its rounds.

IO buffers: mlbench reads into transparent huge pages (one scatter-gather segment per IO up to 2 MiB;
records say `buffer_pages`); fio's default `malloc` buffers are 4 KiB pages, as scattered as the page
allocator leaves them, which devices that pay per segment (virtio disks) turn into up to 2x less
throughput at 1 MiB. fio has no THP buffers; its huge-page buffers are `--iomem=mmaphuge` from the
hugetlb pool. `--fio-iomem auto` (default) uses them when the pool has enough free pages for the case
(reserve them as root: `sysctl vm.nr_hugepages=N`), else fio's default, and says so. Targets:
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

from mlbench.sizes import parse_size
from mlbench.stats import median

ROOT = Path(__file__).resolve().parents[1]
CASES = (  # (name, fio rw, mlbench mode, block size, jobs, target ratio, metric)
    ("seqread 1MiB x1", "read", "seqread", "1M", 1, 0.95, "gbps"),
    ("seqwrite 1MiB x1", "write", "seqwrite", "1M", 1, 0.95, "gbps"),
    ("randread 4KiB x4", "randread", "randread", "4K", 4, 0.90, "iops"),
    ("randread 4KiB x16", "randread", "randread", "4K", 16, 0.90, "iops"),
)


def hugetlb_pool(meminfo: str = "/proc/meminfo") -> tuple[int, int]:
    """(free hugetlb pages, their size in bytes) from /proc/meminfo; (0, 0) when unknown."""
    fields = {}
    try:
        for line in Path(meminfo).read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.split()
    except OSError:
        return 0, 0
    try:
        return int(fields["HugePages_Free"][0]), int(fields["Hugepagesize"][0]) * 1024
    except (KeyError, IndexError, ValueError):
        return 0, 0


def fio_buffer_options(choice: str, block_bytes: int, jobs: int) -> list:
    """fio's --iomem for a case: huge-page buffers (like mlbench's) when asked, or in auto when the pool has room."""
    free_pages, page_bytes = hugetlb_pool()
    if choice == "malloc" or (choice == "auto" and not page_bytes):
        return []
    need_pages = jobs * -(-(block_bytes + 4096) // page_bytes) if page_bytes else 0  # fio rounds up to whole pages
    if choice == "auto" and free_pages < need_pages:
        return []
    return ["--iomem=mmaphuge", f"--hugepage-size={page_bytes or 2 << 20}"]


def run_fio(
    directory: Path, rw: str, bs: str, jobs: int, file_size: str, duration_s: float, buffer_options: list
) -> dict:
    work = Path(tempfile.mkdtemp(prefix="fio-", dir=directory))
    try:
        cmd = [
            "fio",
            "--name=bench",
            f"--filename={work / 'file'}",
            f"--size={file_size}",
            "--direct=1",
            "--ioengine=psync",
            f"--rw={rw}",
            f"--bs={bs}",
            f"--numjobs={jobs}",
            "--time_based=1",
            f"--runtime={duration_s:g}",
            "--group_reporting=1",
            "--output-format=json",
            *buffer_options,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        job = json.loads(out.stdout[out.stdout.index("{") :])["jobs"][0]
        side = job["write" if "write" in rw else "read"]
        return {"gbps": side["bw_bytes"] / 1e9, "iops": side["iops"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_mlbench(directory: Path, mode: str, bs: str, jobs: int, file_size: str, duration_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mlbench-bench-") as results:
        out = Path(results) / "diskio.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "mlbench.diskio",
            "--dir",
            str(directory),
            "--modes",
            mode,
            "--block-sizes",
            bs,
            "--jobs",
            str(jobs),
            "--file-size",
            file_size,
            "--duration",
            f"{duration_s:g}",
            "--io-size",
            "1T",
            "--out",
            str(out),
        ]
        subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        record = json.loads(out.read_text().splitlines()[0])
        if record["status"] != "ok":
            raise RuntimeError(f"mlbench {mode}: {record['status']}: {record['error']}")
        return {
            "gbps": record["metrics"]["gbps"],
            "iops": record["metrics"]["iops"],
            "buffer_pages": record["params"].get("buffer_pages", "?"),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="a directory on the file system to test (default: here)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per test and tool")
    parser.add_argument("--file-size", default="1G")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--cases", default=None, help="comma list of the cases' first words (default: all), e.g. seqread,randread"
    )
    parser.add_argument(
        "--fio-iomem",
        choices=("auto", "malloc", "mmaphuge"),
        default="auto",
        help="fio's IO buffers: huge pages like mlbench's (mmaphuge, needs vm.nr_hugepages), "
        "fio's default (malloc), or huge pages when the pool has room (auto)",
    )
    args = parser.parse_args()
    if shutil.which("fio") is None:
        print("fio not installed, skipped (apt-get install -y fio)")
        return 0
    directory = Path(args.dir).resolve()
    version = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"diskio vs {version} on {directory}: direct=1, psync, file {args.file_size}, "
        f"{args.duration:g} s per test, {args.rounds} round(s), median of rounds"
    )
    print(f"{'case':<20}{'fio':>14}{'mlbench':>14}{'ratio':>8}{'target':>8}  verdict")
    all_met = True
    wanted = set(args.cases.split(",")) if args.cases else None
    for name, rw, mode, bs, jobs, target, metric in CASES:
        if wanted is not None and name.split()[0] not in wanted:
            continue
        fio_runs, ml_runs, ml_pages = [], [], set()
        buffer_options = fio_buffer_options(args.fio_iomem, parse_size(bs), jobs)
        for round_index in range(args.rounds):
            order = ("fio", "ml") if round_index % 2 == 0 else ("ml", "fio")
            for tool in order:
                if tool == "fio":
                    fio_runs.append(
                        run_fio(directory, rw, bs, jobs, args.file_size, args.duration, buffer_options)[metric]
                    )
                else:
                    got = run_mlbench(directory, mode, bs, jobs, args.file_size, args.duration)
                    ml_runs.append(got[metric])
                    ml_pages.add(got["buffer_pages"])
        fio_value, ml_value = median(fio_runs), median(ml_runs)
        ratio = ml_value / fio_value
        met = ratio >= target
        all_met &= met

        def fmt(value: float, metric: str = metric) -> str:
            return f"{value:.3f} GB/s" if metric == "gbps" else f"{value:,.0f} IOPS"

        verdict = "ok" if met else "MISSED"
        print(
            f"{name:<20}{fmt(fio_value):>14}{fmt(ml_value):>14}{ratio:>8.3f}{target:>8.2f}  {verdict}"
            f"   (rounds fio {', '.join(f'{v:.4g}' for v in fio_runs)}; "
            f"mlbench {', '.join(f'{v:.4g}' for v in ml_runs)}; "
            f"buffers fio {'hugetlb' if buffer_options else 'malloc'}, mlbench {'/'.join(sorted(ml_pages))})"
        )
    print("all targets met" if all_met else "some targets missed")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
