"""The acceptance run end to end, and the CLI's start-up, on this machine.

Targets: `mlbench run --profile quick` on a 2-core CPU machine, end to end (2-rank gloo
collectives, real O_DIRECT IO, the report with its plots): under 90 s. `mlbench --help`: under 0.3 s.
The start-up is also shown against the interpreter's own start (`python -c pass`), measured in the
same run, since absolute times on a shared machine are noise.

    python benchmarks/bench_run.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall_s(argv, cwd=None) -> tuple:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    help_s, bare_s = [], []
    for _ in range(args.repeats):  # alternated, so drift hits both
        seconds, proc = wall_s([sys.executable, "-m", "mlbench", "--help"])
        assert proc.returncode == 0, proc.stderr
        help_s.append(seconds)
        bare_s.append(wall_s([sys.executable, "-c", "pass"])[0])
    help_median, bare_median = statistics.median(help_s), statistics.median(bare_s)
    print(
        f"mlbench --help: median {help_median * 1e3:.0f} ms over {args.repeats} runs "
        f"(python -c pass: {bare_median * 1e3:.0f} ms; mlbench's own share {1e3 * (help_median - bare_median):.0f} ms) "
        f"target < 300 ms"
    )

    with tempfile.TemporaryDirectory(prefix="mlbench-bench-run-") as tmp:
        seconds, proc = wall_s(
            [sys.executable, "-m", "mlbench", "run", "--profile", "quick", "--device", "cpu", "--out", "run"], cwd=tmp
        )
        verdict = next((line for line in proc.stdout.splitlines() if line.startswith("**Verdict")), "no verdict line")
        steps = [
            line
            for line in proc.stderr.splitlines()
            if ": done in" in line or ": failed" in line or ": incomplete" in line
        ]
    print(f"mlbench run --profile quick (CPU): {seconds:.1f} s end to end, exit {proc.returncode}; {verdict}")
    for line in steps:
        print(f"    {line}")
    print("target < 90 s")
    met = help_median < 0.3 and seconds < 90 and proc.returncode == 0
    print("TARGET MET" if met else "TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
