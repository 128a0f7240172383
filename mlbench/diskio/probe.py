"""Measuring one diskio test: jobs -> the engine -> a `Result` (never prints, never writes records).

Metrics (fio's group-reporting accounting, so they compare with fio's numbers):
    gbps  = bytes of all completed IOs / the longest job's run time / 1e9 (decimal GB/s)
    iops  = completed IOs / the longest job's run time
    lat_us_p50 / p99 / p999: percentiles over every IO's latency (the one pread/pwrite call)
    gbps_interval_median, cv: the aggregate throughput in 100 ms intervals (the spread)
`params.buffer_pages` says what backed the jobs' IO buffers: "thp" (transparent huge pages: an IO of
up to 2 MiB is one scatter-gather segment), the base page ("4k": IOs of one page, or THP off), or
"mixed"; see `engine.AlignedBuffer`.
`raw` keeps the 100 ms throughput samples and an evenly spaced subsample of per-IO latencies
(at most RAW_LAT_SAMPLES; the percentiles come from all of them).

The checkpoint test yields two results: phase `write` (each of `jobs` writers writes its
`file_size / jobs` share to a fresh file and fsyncs it; time = slowest writer, fsync included,
MLPerf Storage's convention) and phase `read` (the files read back with O_DIRECT: cold).
"""

from __future__ import annotations

import errno
import math
import secrets
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..records import Result
from ..stats import percentile, summarize
from . import engine, safety
from .plan import DiskioPlan, IoTest
from .safety import FsUsage, Mount, Workspace, capacity_verdict

METHOD = (
    "mlbench-diskio/2: one process per job, one synchronous pread/pwrite per IO (fio psync), "
    "IO buffers in transparent huge pages where the kernel allows (params.buffer_pages), "
    "stamped random data, fio group accounting"
)
RAW_LAT_SAMPLES = 2000
MEMORY_FS = ("tmpfs", "ramfs")


class DiskFull(Exception):
    """ENOSPC while writing: the run stops, cleans up and exits 1."""


@dataclass(frozen=True)
class Target:
    """Where and how the tests run, as found on this file system."""

    mount: Mount
    direct: bool  # the IO actually done (False with --buffered or the --allow-buffered fallback)
    mem_align: int
    offset_align: int
    align_source: str  # "statx" or "default"
    direct_refused: bool = False

    def device_record(self) -> dict:
        return {"type": "storage", "name": self.mount.describe(), "index": None}


def io_metrics(results: list, interval_s: float = engine.INTERVAL_NS / 1e9) -> tuple[dict, dict, list]:
    """(metrics, raw, flags) from the jobs' results of one test (see the module docstring)."""
    total_bytes = sum(r.bytes for r in results)
    ios = sum(r.ios for r in results)
    runtime_s = max(r.runtime_ns for r in results) / 1e9
    lat_ns = np.sort(np.concatenate([np.frombuffer(r.lat_ns, dtype=np.int64) for r in results if r.ios]))
    lat_us = (lat_ns / 1e3).tolist()  # sorted: summarize's sorts cost O(n)
    lat = summarize(lat_us)
    metrics = {
        "gbps": total_bytes / runtime_s / 1e9,
        "iops": ios / runtime_s,
        "lat_us_p50": lat.median,
        "lat_us_p99": lat.p99,
        "lat_us_p999": percentile(lat_us, 99.9),
        "lat_us_mean": lat.mean,
        "lat_us_min": lat.min,
        "lat_us_max": lat.max,
        "bytes": total_bytes,
        "ios": ios,
        "runtime_s": runtime_s,
        "verified_ios": sum(r.verified_ios for r in results),
        "bad_stamps": sum(r.bad_stamps for r in results),
    }
    flags = []
    raw = {}
    # aggregate throughput per interval: full intervals only (each job's last one is partial)
    full = min(len(r.interval_bytes) for r in results) - 1
    if full >= 2:
        per_interval = [sum(r.interval_bytes[i] for r in results) / interval_s / 1e9 for i in range(full)]
        spread = summarize(per_interval)
        metrics.update(
            gbps_interval_median=spread.median, gbps_interval_min=spread.min, gbps_interval_max=spread.max, cv=spread.cv
        )
        raw[f"gbps_per_{int(interval_s * 1e3)}ms"] = per_interval
        if spread.noisy:
            flags.append("noisy")
    # time-ordered subsample of per-IO latencies (every k-th IO of each job)
    step = max(1, math.ceil(ios / RAW_LAT_SAMPLES))
    raw["lat_us_sample"] = [v / 1e3 for r in results for v in r.lat_ns[::step]]
    raw["lat_sample_every"] = step
    return metrics, raw, flags


def buffer_pages(results: list) -> str:
    """What backed the IO buffers of a test's jobs: their common `buffer_pages`, or "mixed"."""
    kinds = {r.buffer_pages for r in results}
    return kinds.pop() if len(kinds) == 1 else "mixed"


class DiskioProbe:
    """Runs a plan's tests in a workspace; `usage` is injectable (tests simulate a full disk).

    `huge_pages=False` puts the jobs' IO buffers in base pages (fio's default buffers) instead of
    transparent huge pages; records say which in `params.buffer_pages`.
    """

    def __init__(
        self,
        workspace: Workspace,
        target: Target,
        plan: DiskioPlan,
        usage: Optional[Callable[[str], FsUsage]] = None,
        huge_pages: bool = True,
    ):
        self.workspace = workspace
        self.huge_pages = huge_pages
        self.target = target
        self.plan = plan
        self.usage = usage or safety.fs_usage
        self.salt = secrets.randbits(63)
        self.data_file: Optional[str] = None
        self.data_refusal: Optional[str] = None
        self.warnings: list = []
        self.seed = 0
        self.stop = None  # an engine.StopFlag the jobs watch (set when the run is interrupted)

    # -- preparation ------------------------------------------------------------------------------

    def _capacity(self, need_bytes: int) -> tuple[Optional[str], FsUsage]:
        usage = self.usage(str(self.workspace.path))
        refusal, warning = capacity_verdict(usage, need_bytes)
        if warning and warning not in self.warnings:
            self.warnings.append(warning)
        return refusal, usage

    def _ensure_data_file(self) -> Optional[str]:
        """Lay out the shared data file once (None when ready, else why it cannot be)."""
        if self.data_file or self.data_refusal:
            return self.data_refusal
        refusal, _ = self._capacity(self.plan.file_size + self.plan.checkpoint_bytes)
        if refusal:
            self.data_refusal = f"refused: the {self.plan.file_size / 2**30:.2f} GiB test file {refusal}"
            return self.data_refusal
        path = self.workspace.new_file("data")
        engine.lay_out(
            str(path), self.plan.file_size, self.target.direct, self.salt, self.target.mem_align, stop=self.stop
        )
        self.data_file = str(path)
        return None

    def _params(self, test: IoTest, **extra) -> dict:
        t = self.target
        return {
            **test.params(),
            "direct": t.direct,
            "fs_type": t.mount.fs_type,
            "mount": t.mount.mount_point,
            "source": t.mount.source,
            "dio_mem_align": t.mem_align,
            "dio_offset_align": t.offset_align,
            "align_source": t.align_source,
            "engine": "processes-psync",
            "method": METHOD,
            **extra,
        }

    def _flags(self) -> list:
        flags = [] if self.target.direct else ["buffered"]
        if self.target.direct_refused:
            flags.append("direct_refused")
        if self.warnings:
            flags.append("fs_over_80pct")
        if self.target.mount.fs_type in MEMORY_FS:
            flags.append("memory_backed")  # tmpfs takes O_DIRECT (Linux >= 6.6) but there is no storage below it
        return flags

    def _spec(
        self,
        test: IoTest,
        path: str,
        job: int,
        write: bool,
        sequential: bool,
        direct: bool,
        start: int,
        length: int,
        quota: int,
        duration_s,
        fsync: bool = False,
    ) -> engine.JobSpec:
        self.seed += 1
        return engine.JobSpec(
            path=path,
            write=write,
            direct=direct,
            block_size=test.block_size,
            range_start=start,
            range_bytes=length,
            sequential=sequential,
            quota_bytes=quota,
            duration_s=duration_s,
            salt=self.salt,
            seed=self.seed * 1000 + job,
            align_bytes=self.target.mem_align,
            fsync_at_end=fsync,
            huge_pages=self.huge_pages,
        )

    # -- measuring --------------------------------------------------------------------------------

    def measure(self, test: IoTest) -> list:
        """The results of one test (two for a checkpoint: write, then read back).

        ENOSPC raises `DiskFull` (the run must stop); any other OS error fails this test only.
        """
        try:
            return self._checkpoint(test) if test.mode == "checkpoint" else self._measure(test)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"no space left on {self.target.mount.describe()} (ENOSPC)") from None
            return [Result.failed(self._params(test), f"{test}: {type(exc).__name__}: {exc}")]

    def _measure(self, test: IoTest) -> list:
        params = self._params(test)
        why = self._ensure_data_file()
        if why:
            return [Result.skipped(params, why)]
        bs, n = test.block_size, test.jobs
        quota = -(-test.io_bytes // n)
        specs = []
        for job in range(n):
            if test.sequential:
                region = (test.file_size // n) // bs * bs
                start, length = job * region, region
            else:
                start, length = 0, test.file_size // bs * bs
            specs.append(
                self._spec(
                    test,
                    self.data_file,
                    job,
                    test.writes,
                    test.sequential,
                    self.target.direct,
                    start,
                    length,
                    quota,
                    test.duration_s,
                )
            )
        results = self._run(specs)
        return [self._result(params, results, test)]

    def _checkpoint(self, test: IoTest) -> list:
        write_params = self._params(test, phase="write", fsync=True)
        read_params = self._params(test, phase="read", direct=not self.target.direct_refused)
        refusal, _ = self._capacity(test.file_size)
        if refusal:
            why = f"refused: the {test.file_size / 2**30:.2f} GiB checkpoint {refusal}"
            return [Result.skipped(write_params, why), Result.skipped(read_params, why)]
        bs, n = test.block_size, test.jobs
        share = (test.file_size // n) // bs * bs
        paths = [str(self.workspace.new_file(f"ckpt-{self.seed}-{job}")) for job in range(n)]
        try:
            writers = [
                self._spec(test, p, j, True, True, self.target.direct, 0, share, share, None, fsync=True)
                for j, p in enumerate(paths)
            ]
            written = self._run(writers)
            read_direct = not self.target.direct_refused  # read back cold: O_DIRECT whenever the fs allows it
            readers = [
                self._spec(test, p, j, False, True, read_direct, 0, share, share, None) for j, p in enumerate(paths)
            ]
            read = self._run(readers)
        finally:
            for p in paths:
                self.workspace.remove(p)
        write_result = self._result(write_params, written, test)
        write_result.metrics["fsync_ms_max"] = max(r.fsync_ns for r in written) / 1e6
        read_result = self._result(read_params, read, test)
        return [write_result, read_result]

    def _run(self, specs: list) -> list:
        return engine.run_jobs(specs, self.stop)

    def _result(self, params: dict, results: list, test: IoTest) -> Result:
        params = {**params, "buffer_pages": buffer_pages(results)}
        metrics, raw, flags = io_metrics(results)
        usage = self.usage(str(self.workspace.path))
        metrics["fs_fill_pct"] = 100 * usage.fill
        metrics["fs_total_bytes"] = usage.total_bytes
        flags = self._flags() + flags
        if metrics["bad_stamps"]:
            first = next(r.first_bad for r in results if r.first_bad)
            return Result.check_failed(
                params,
                metrics,
                f"read-back check failed for {test}: {first}",
                flags,
                raw,
            )
        return Result(params=params, metrics=metrics, flags=flags, raw=raw)
