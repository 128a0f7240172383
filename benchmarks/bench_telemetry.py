"""The telemetry sampler must not disturb what it measures: a CPU matmul loop with and without it.

Workload: float32 matmuls (torch, all its threads) timed with time.perf_counter, the same work in every
round. Rounds alternate: without the sampler, then with this machine's telemetry sampler running beside
it (`mlbench.telemetry.Sampler`, the backend the harness would use for `--device cpu`, default
interval), so a noisy neighbour hits both alike. Each side's figure is the median of its rounds; the
overhead is the median of the paired ratios (with / without) minus one. Also shown: the cost of one
sample and of one mark (a sample plus the counters, taken twice per record), and the sampler's share
of one core.

Target: overhead <= 2%. Exit 0 when met, 1 otherwise.
    .venv/bin/python benchmarks/bench_telemetry.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mlbench.faults import Faults  # noqa: E402
from mlbench.telemetry import INTERVAL_S, DeviceRef, Sampler, Unavailable, open_source  # noqa: E402

TARGET_OVERHEAD = 0.02
ROUNDS = 9
SIZE = 768
CALLS = 40
TIMED_READS = 200


def workload(a, b, c) -> float:
    """Seconds for CALLS matmuls into a preallocated output."""
    start = time.perf_counter()
    for _ in range(CALLS):
        torch.mm(a, b, out=c)
    return time.perf_counter() - start


def read_cost_us(fn, reads: int = TIMED_READS) -> float:
    start = time.perf_counter()
    for _ in range(reads):
        fn()
    return (time.perf_counter() - start) / reads * 1e6


def main() -> int:
    source = open_source(DeviceRef("cpu"), Faults())
    if isinstance(source, Unavailable):
        print(f"no CPU telemetry backend here ({source.reason}): nothing to measure")
        return 2
    a, b = torch.randn(SIZE, SIZE), torch.randn(SIZE, SIZE)
    c = torch.empty(SIZE, SIZE)
    workload(a, b, c)  # warm-up
    without, with_sampler, ratios = [], [], []
    for _ in range(ROUNDS):
        plain = workload(a, b, c)
        with Sampler([source]):
            sampled = workload(a, b, c)
        without.append(plain)
        with_sampler.append(sampled)
        ratios.append(sampled / plain)
    probe = Sampler([source])
    sample_us = read_cost_us(probe.tick)
    mark_us = read_cost_us(probe.mark)
    overhead = statistics.median(ratios) - 1
    print(
        f"backend {source.backend}, interval {INTERVAL_S * 1e3:.0f} ms, torch threads {torch.get_num_threads()}, "
        f"{CALLS} x {SIZE}^3 fp32 matmuls per round, {ROUNDS} rounds alternated"
    )
    print(f"without sampler: median {statistics.median(without) * 1e3:.1f} ms per round")
    print(f"with sampler:    median {statistics.median(with_sampler) * 1e3:.1f} ms per round")
    print(f"overhead: {100 * overhead:+.2f}% (median of paired ratios; target <= {100 * TARGET_OVERHEAD:.0f}%)")
    print(
        f"one sample {sample_us:.0f} us, one mark {mark_us:.0f} us; sampler busy "
        f"{100 * sample_us * 1e-6 / INTERVAL_S:.2f}% of one core"
    )
    met = overhead <= TARGET_OVERHEAD
    print("target met" if met else "target MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
