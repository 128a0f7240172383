"""Run every benchmark in this folder (`make bench`), each in its own process, and sum up.

Each `bench_*.py` prints its figures and ratios against a peer measured in the same run, and exits
0 when its target is met, 1 when missed (other codes: it could not run). Output of each goes to
stdout and to `results/bench-<stamp>/<name>.txt`.

    python benchmarks/run_all.py [NAME ...]     # e.g. mamf_search diskio train fabric_report
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    out_dir = HERE.parent / "results" / f"bench-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        text = proc.stdout + (("\n" + proc.stderr) if proc.returncode not in (0, 1) else "")
        print(text, flush=True)
        (out_dir / f"{script.stem}.txt").write_text(text)
        verdict = {0: "met", 1: "MISSED"}.get(proc.returncode, f"could not run (exit {proc.returncode})")
        summary.append((script.stem, verdict, time.monotonic() - t0))
    print("== summary")
    for name, verdict, seconds in summary:
        print(f"{name:32s} {verdict:28s} {seconds:7.1f} s")
    print(f"outputs in {out_dir}")
    return 0 if all(v == "met" for _, v, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
