"""Benchmark: `mlbench report` on the fabric records of 1,024 nodes (both pair rounds), end to end.

Target: under 10 s on the 2-core development machine, as a user runs it (`python -m mlbench.report
RUN_DIR --out DIR -q`: start-up, parsing, the pair rounds judged again, the fabric section and the
pair heatmap). The records come from `mlbench.fabric.synthetic`: round 1 pairs the 1,024 nodes at
random (512 pairs at once), round 2 re-pairs the suspects with nodes that passed, a pair that failed
only together is measured again; two nodes are slow (30% of the pair busbw), one link is slow, one
node has a NIC port down. The run also checks that the report names exactly those, so speed never
comes at the price of a wrong answer. Printed beside it: what the pair rounds cost at this size
against every pair once (round-robin), one pair at a time, and bisection (`fabric.plan.cost`).
Exits 0 when the target is met and the answer is right, 1 otherwise.

    python benchmarks/bench_fabric_report.py [--nodes 1024] [--keep DIR]
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

TARGET_S = 10.0


def main() -> int:
    from mlbench.fabric.plan import Rounds, bisection, cost, exhaustive_sequential, random_pairing
    from mlbench.fabric.synthetic import FabricFleet, write

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1024)
    parser.add_argument("--keep", default=None, help="keep the run directory and report here")
    args = parser.parse_args()
    names = [f"node{i:04d}" for i in range(args.nodes)]
    link = random_pairing(names, 11).pairs[7]  # a pair of round 1: quick rounds can only see a link they pair
    slow = (names[100], names[777])
    fleet = FabricFleet(nodes=args.nodes, seed=11, slow_nodes=slow, slow_links=(link,), down=(names[500],))
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mlbench-bench-fabric-"))
    run_dir, out_dir = base / "run", base / "report"
    t0 = time.perf_counter()
    write(fleet, run_dir)
    generate_s = time.perf_counter() - t0
    lines = sum(1 for _ in open(run_dir / "fabric.jsonl"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mlbench.report", str(run_dir), "--out", str(out_dir), "-q"],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    with open(out_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    failed_nodes = sorted(r["host"] for r in rows if r["check"] == "fabric.node" and r["verdict"] == "FAIL")
    failed_links = sorted(r["host"] for r in rows if r["check"] == "fabric.link" and r["verdict"] == "FAIL")
    failed_nics = sorted(r["host"] for r in rows if r["check"] == "fabric.nics" and r["verdict"] == "FAIL")
    right = (
        failed_nodes == sorted(slow)
        and failed_links == ["+".join(link)]
        and failed_nics == [names[500]]
        and proc.returncode == 1
        and (out_dir / "plots" / "fabric.png").exists()
    )
    print(f"fabric report: {args.nodes} nodes, {lines} fabric records (generated in {generate_s:.1f} s)")
    print(f"  mlbench report: {seconds:.2f} s (target < {TARGET_S:g} s), exit {proc.returncode}")
    print(
        f"  named nodes {failed_nodes}, links {failed_links}, NIC mismatches {failed_nics}: "
        f"{'right' if right else 'WRONG'} (expected {sorted(slow)}, {'+'.join(link)}, {names[500]})"
    )
    quick, full = cost(args.nodes, Rounds.QUICK), cost(args.nodes, Rounds.FULL)
    one_by_one, halving = exhaustive_sequential(args.nodes), bisection(args.nodes, slow_nodes=len(slow))
    print(
        f"  pair rounds at {args.nodes} nodes: quick {quick.rounds} rounds of up to {quick.parallel_pairs} pairs "
        f"(~{quick.wall_s / 60:.1f} min with the views); every pair once {full.rounds} rounds "
        f"(~{full.wall_s / 3600:.1f} h); one pair at a time {one_by_one.pair_tests} tests "
        f"(~{one_by_one.wall_s / 86400:.0f} days); bisection {halving.rounds} rounds for {len(slow)} slow nodes, "
        "no link"
    )
    if proc.returncode not in (0, 1):
        print(proc.stderr[-2000:])
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0 if right and seconds < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
