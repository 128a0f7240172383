"""`mlbench diskio` / `python -m mlbench.diskio`: the probe's definition for the shared loop.

Options and plan: `plan.py`; one test's measurement: `probe.py` (the IO itself: `engine.py`; where
diskio may write and how full the disk may get: `safety.py`); here: the workspace the run lives in,
the results, and the summary. No torch; numpy only once the probe starts.

The workspace is removed however the run ends (success, error, disk full, Ctrl-C or SIGTERM), with
both signals ignored while it is removed. An interruption reaches the IO jobs through the run's stop
flag (`harness.Stop.when_set`), wherever its KeyboardInterrupt lands: a test cut short is not
recorded.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

from .. import harness
from ..exitcodes import MeasurementFailed, UsageError
from .plan import DiskioOptions, DiskioPlan, make_plan

if TYPE_CHECKING:  # numpy comes with the probe: imported when it runs
    from .probe import DiskioProbe

DEVICES = ("auto", "cpu")


class Diskio(harness.Probe):
    """Storage IO as ML uses it: O_DIRECT sequential and random reads and writes, and checkpoint bursts.

    Each job is a process doing one synchronous read or write at a time (fio's psync engine), on
    stamped random data (never zeros; reads are checked). GB/s and IOPS use fio's accounting: all
    bytes / the longest job's time; latencies are per IO (p50, p99, p99.9). Only files it creates in
    a fresh directory under --dir are written, and all are removed at the end, on errors and on
    Ctrl-C; a test that would fill the file system past 90% is refused.
    """

    name = "diskio"
    options = DiskioOptions
    help = __doc__

    def validate(self, options: DiskioOptions) -> None:
        make_plan(options)
        if options.device not in DEVICES:
            raise UsageError(f"--device {options.device}: diskio measures storage from the host; use auto or cpu")

    @contextlib.contextmanager
    def start(self, options: DiskioOptions, stop: harness.Stop) -> Iterator[harness.Run]:
        from .engine import StopFlag
        from .probe import DiskioProbe

        plan = make_plan(options)
        jobs_stop = StopFlag()  # what the forked IO jobs watch
        stop.when_set(jobs_stop.set)
        ending = Ending()
        with open_target(options.directory, plan, options.allow_buffered) as (workspace, target):
            probe = DiskioProbe(workspace, target, plan)
            probe.stop = jobs_stop
            refused = "O_DIRECT refused here: measuring through the page cache (labelled 'buffered')"
            yield harness.Run(
                target.device_record(),
                f"{target.mount.describe()} (test directory {workspace.path}); {plan.describe()}; "
                f"O_DIRECT alignment {target.offset_align} B ({target.align_source})",
                measure_all(plan, probe, stop, ending),
                summary=lambda records, interrupted: summary_text(records),
                total=plan.result_count,
                progress_text=progress_text,
                notes=[refused] if target.direct_refused else [],
                warnings=lambda: list(probe.warnings),
                noun="test(s)",
                require_ok=True,
            )
        if ending.disk_full:  # said after the workspace is gone
            raise MeasurementFailed(f"{ending.disk_full}: stopped, test files removed")


@dataclass
class Ending:
    """How the tests ended early, when they did: the disk filled (why, in one line)."""

    disk_full: Optional[str] = None


def measure_all(plan: DiskioPlan, probe: DiskioProbe, stop: threading.Event, ending: Ending) -> Iterator:
    """The results of the plan's tests, in order; stops at a full disk (one failed result) or when `stop` is set.

    A test the stop flag cut short yields nothing: its figures cover less than the test asked for.
    """
    from ..records import Result
    from .probe import DiskFull

    for test in plan.tests:
        try:
            results = probe.measure(test)
        except DiskFull as exc:
            ending.disk_full = str(exc)
            yield Result.failed(probe._params(test), f"{test}: {exc}")
            return
        if stop.is_set():
            return
        yield from results


@contextlib.contextmanager
def open_target(directory: str, plan: DiskioPlan, allow_buffered: bool = False) -> Iterator[tuple]:
    """Check `directory`, make the workspace, find how IO can be done there; yield (workspace, target).

    The workspace is removed on any exit, with SIGINT and SIGTERM ignored while it is.
    """
    from .probe import Target
    from .safety import DirectIORefused, Workspace, check_target_dir, find_mount, probe_direct_io

    parent = check_target_dir(directory)
    mount = find_mount(parent)
    workspace = Workspace(parent)
    try:
        workspace.open()
        direct, refused = plan.direct, False
        try:
            mem, offset, source = probe_direct_io(workspace)
        except DirectIORefused as exc:
            if plan.direct and not allow_buffered:
                raise UsageError(
                    f"--dir {parent}: O_DIRECT refused by {mount.fs_type} ({exc}); "
                    f"use --buffered, or --allow-buffered to fall back (labelled)"
                ) from None
            direct, refused, (mem, offset, source) = False, True, (4096, 512, "none")
        if direct:
            plan.check_alignment(offset)
        yield workspace, Target(mount, direct, mem, offset, source, direct_refused=refused)
    finally:
        with signals_ignored():
            workspace.close()


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM are ignored inside the block (main thread only), then restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def progress_text(record: dict) -> str:
    from ..sizes import format_bytes

    p, m = record["params"], record["metrics"]
    mode = p["mode"] + (f"/{p['phase']}" if p.get("phase") else "")
    now = f"{m['gbps']:.3f} GB/s" if record["status"] == "ok" else record["status"]
    return f"{mode} bs={format_bytes(p['block_size'])} jobs={p['jobs']} {now}"


def summary_text(records: list) -> str:
    """One row per record: GB/s, IOPS and latency percentiles, or why there are none."""
    from ..sizes import format_bytes

    lines = [
        f"{'mode':<16}{'bs':>8}{'jobs':>6}{'GB/s':>10}{'IOPS':>11}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}  flags"
    ]
    for r in records:
        p, m = r["params"], r["metrics"]
        mode = p["mode"] + (f"/{p['phase']}" if p.get("phase") else "")
        head = f"{mode:<16}{format_bytes(p['block_size']):>8}{p['jobs']:>6}"
        if r["status"] == "ok" or m.get("gbps") is not None:
            lines.append(
                f"{head}{m['gbps']:>10.3f}{m['iops']:>11.0f}{m['lat_us_p50']:>10.1f}{m['lat_us_p99']:>10.1f}"
                f"{m['lat_us_p999']:>10.1f}  {','.join(r.get('flags', []))}"
            )
        else:
            lines.append(f"{head}  {r['status']}: {r['error']}")
    return "\n".join(lines)


command = harness.command(Diskio)
