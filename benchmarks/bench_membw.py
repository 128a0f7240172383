"""membw against an independent measurement of the same machine, in the same run.

Ours: `mlbench.membw`'s probe measuring `copy` (dst.copy_(src), torch's threads) at large sizes
(at least 8x the last-level cache, so the buffers stream from DRAM), median of the harness's samples.
Independent: a plain numpy loop, `np.copyto(dst, src)` on separate random buffers, each call timed
with time.perf_counter, median (also with torch's thread count, buffers split in slices: shown
for information). Both in the same convention: bytes copied once per second
(`gbps_copied`, GB/s = 1e9 B/s). The two run interleaved for several rounds so a noisy neighbour
hits both alike; each side's figure is the median of its per-round medians, and the ratio is the
median of the rounds' paired ratios (each pair measured back to back, under the same neighbours).

Target: ours >= 0.9 x the independent figure at every size. Exit 0 when met, 1 otherwise.
    .venv/bin/python benchmarks/bench_membw.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlbench.device import resolve  # noqa: E402
from mlbench.membw.plan import Point, buffer_bytes  # noqa: E402
from mlbench.membw.probe import BandwidthProbe  # noqa: E402
from mlbench.sizes import format_bytes  # noqa: E402

TARGET_RATIO = 0.9
ROUNDS = 7
NUMPY_CALLS = 9
MiB = 1 << 20


class NumpyCopy:
    """The independent measurement: np.copyto between two random float32 buffers, perf_counter per call.

    `threads` > 1 splits the buffers into that many slices copied by as many Python threads (np.copyto
    releases the GIL), to see what the same parallelism as torch's reaches; one thread is the plain loop.
    """

    def __init__(self, nbytes: int):
        rng = np.random.default_rng(0)
        self.nbytes = nbytes
        self.src = rng.random(nbytes // 4, dtype=np.float32) + 1.0
        self.dst = np.full_like(self.src, -1.0)

    def gbps(self, threads: int = 1, calls: int = NUMPY_CALLS) -> float:
        """Bytes copied once per second, median of `calls` timed calls after one warm-up call."""
        n = self.src.size
        bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

        def part(i):
            lo, hi = bounds[i]
            np.copyto(self.dst[lo:hi], self.src[lo:hi])

        with ThreadPoolExecutor(threads) as pool:

            def copy():
                if threads == 1:
                    np.copyto(self.dst, self.src)
                else:
                    list(pool.map(part, range(threads)))

            copy()
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                copy()
                times.append(time.perf_counter() - start)
        assert np.array_equal(self.dst[::4097], self.src[::4097]), "numpy copy went wrong"
        return self.nbytes / statistics.median(times) / 1e9


def _fmt(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> int:
    device = resolve("cpu")
    llc = device.info.llc_bytes or 32 * MiB
    threads = torch.get_num_threads()
    sizes = [buffer_bytes(max(256 * MiB, 8 * llc)), buffer_bytes(max(512 * MiB, 16 * llc))]
    load = os.getloadavg()[0]
    print(
        f"membw copy vs numpy np.copyto on {device.info.name}: LLC {format_bytes(llc)}, torch threads {threads}, "
        f"{ROUNDS} interleaved rounds, GB/s = bytes copied once / s; load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    if load > (os.cpu_count() or 1):
        print("  WARNING: the machine is busy (load above the CPU count): both figures swing with the neighbours")
    met = True
    with BandwidthProbe(device) as probe:
        for nbytes in sizes:
            reference = NumpyCopy(nbytes)
            ours, single, multi = [], [], []
            for _ in range(ROUNDS):
                result = probe.measure(Point("copy", nbytes, sets=1))
                if not result.ok:
                    print(f"  {format_bytes(nbytes)}: ours failed: {result.error}")
                    return 1
                ours.append(result.metrics["gbps_copied"])
                single.append(reference.gbps(1))
                if threads > 1:
                    multi.append(reference.gbps(threads))
            del reference
            mine, ref = statistics.median(ours), statistics.median(single)
            ratio = statistics.median(o / r for o, r in zip(ours, single))  # paired: same neighbours
            ok = ratio >= TARGET_RATIO
            met &= ok
            print(f"  {format_bytes(nbytes):>8}: mlbench copy {mine:6.2f} GB/s  [{_fmt(ours)}]")
            print(f"  {'':>8}  numpy 1 thread {ref:6.2f} GB/s  [{_fmt(single)}]")
            if multi:
                print(
                    f"  {'':>8}  numpy {threads} threads {statistics.median(multi):6.2f} GB/s  [{_fmt(multi)}]"
                    f"  (ratio {mine / statistics.median(multi):.3f}, for information)"
                )
            print(
                f"  {'':>8}  ratio mlbench / numpy 1 thread = {ratio:.3f} (median of the rounds' ratios; "
                f"of the medians {mine / ref:.3f}) (target >= {TARGET_RATIO}) {'OK' if ok else 'MISSED'}"
            )
    print("target met" if met else "target missed")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
