"""Benchmark: `mlbench report` on a synthetic fleet of 1,024 nodes x 8 GPUs, all four probes.

Target: under 20 s and under 2 GiB of memory on the 2-core development machine, end to
end as a user runs it (`python -m mlbench.report RUN_DIR --out DIR -q`: start-up, parsing,
verdicts, fleet view, Markdown/CSV/HTML and the four plots). Memory is the peak of the summed
resident set of the report process and its worker processes, sampled every 50 ms from /proc.
The generated fleet has one slow node (node0100 at 80%) and one slow GPU (node0500 GPU 3 at 85%);
the run also checks that the report finds exactly those as suspects, so speed never comes at the
price of a wrong answer. Exits 0 when the targets are met, 1 otherwise.

    python benchmarks/bench_report_fleet.py [--nodes 1024] [--gpus 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_S = 20.0
TARGET_BYTES = 2 << 30


def tree_rss_bytes(root_pid: int) -> int:
    """Summed RSS of a process and its descendants (Linux /proc)."""
    parents, rss = {}, {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * page
        except (OSError, IndexError, ValueError):
            continue
    family, grew = {root_pid}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return sum(rss.get(pid, 0) for pid in family)


def run_report(run_dir: Path, out_dir: Path) -> tuple[float, int, int, str]:
    """(wall seconds, peak tree RSS bytes, exit code, stderr) of one report run."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlbench.report", str(run_dir), "--out", str(out_dir), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    return wall, peak, proc.returncode, proc.stderr.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1024)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--keep", default=None, help="generate into this directory and keep it")
    args = parser.parse_args()
    from mlbench.report.synthetic import FleetSpec, write_fleet

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        slow_node, slow_gpu = f"node{min(100, args.nodes - 1):04d}", (f"node{min(500, args.nodes - 2):04d}", 3)
        t0 = time.perf_counter()
        run_dir = write_fleet(root, FleetSpec(nodes=args.nodes, gpus=args.gpus, slow={slow_node: 0.8, slow_gpu: 0.85}))
        files = list(run_dir.glob("*.jsonl"))
        size = sum(p.stat().st_size for p in files)
        lines = sum(1 for p in files for _ in p.open("rb"))
        print(
            f"synthetic fleet: {args.nodes} nodes x {args.gpus} GPUs, 4 probes: {lines:,} records in {len(files):,} "
            f"files, {size / 1e6:.0f} MB (generated in {time.perf_counter() - t0:.1f} s; not timed)"
        )
        wall, peak, code, err = run_report(run_dir, root / "report")
        suspects = set()
        with open(root / "report" / "fleet.csv") as f:
            suspects = {r["host"] for r in csv.DictReader(f) if r["suspect"] == "True"}
        ok_answer = code == 1 and suspects == {slow_node, slow_gpu[0]}
        print(
            f"report: {wall:.2f} s wall (target < {TARGET_S:.0f} s: {wall / TARGET_S:.0%} of it), "
            f"peak memory {peak / 2**30:.2f} GiB (target < 2 GiB: {peak / TARGET_BYTES:.0%} of it), exit {code}"
        )
        print(
            f"throughput: {lines / wall:,.0f} records/s; suspects found: {', '.join(sorted(suspects)) or 'none'} "
            f"(expected {slow_node}, {slow_gpu[0]}): {'right' if ok_answer else 'WRONG'}"
        )
        if code not in (0, 1):
            print(err.strip())
        met = wall < TARGET_S and peak < TARGET_BYTES and ok_answer
        print("target met" if met else "target MISSED")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
