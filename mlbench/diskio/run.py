"""Running a diskio plan safely: the workspace, the O_DIRECT check, signals, and cleanup.

`open_target` yields (workspace, target) and removes the workspace however the block ends;
SIGTERM is turned into KeyboardInterrupt while it is open, so `kill` cleans up like Ctrl-C.
`run_plan` measures every test, hands each `Result` to the session (one flushed line each) and
reports how the run ended; it never prints.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from ..exitcodes import UsageError
from ..records import Result
from ..sizes import format_bytes
from .plan import DiskioPlan
from .engine import StopFlag
from .probe import DiskFull, DiskioProbe, Target
from .safety import DirectIORefused, FsUsage, Workspace, check_target_dir, find_mount, probe_direct_io


@dataclass
class Outcome:
    interrupted: bool = False
    disk_full: Optional[str] = None
    warnings: list = field(default_factory=list)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C inside the block; both are ignored while the block's cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)


def _check_alignment(plan: DiskioPlan, align: int) -> None:
    if plan.file_size % align:
        raise UsageError(f"--file-size {plan.file_size} is not a multiple of this file system's O_DIRECT alignment ({align} bytes)")
    for test in plan.tests:
        if test.block_size % align:
            raise UsageError(f"block size {format_bytes(test.block_size)} is not a multiple of this file system's "
                             f"O_DIRECT alignment ({align} bytes)")


@contextlib.contextmanager
def open_target(directory: str, plan: DiskioPlan, allow_buffered: bool = False) -> Iterator[tuple]:
    """Check `directory`, make the workspace, find how IO can be done there; clean up on any exit."""
    parent = check_target_dir(directory)
    mount = find_mount(parent)
    workspace = Workspace(parent)
    with _signals_interrupt():
        try:
            workspace.open()
            direct, refused = plan.direct, False
            try:
                mem, offset, source = probe_direct_io(workspace)
            except DirectIORefused as exc:
                if plan.direct and not allow_buffered:
                    raise UsageError(f"--dir {parent}: O_DIRECT refused by {mount.fs_type} ({exc}); "
                                     f"use --buffered, or --allow-buffered to fall back (labelled)") from None
                direct, refused, (mem, offset, source) = False, True, (4096, 512, "none")
            if direct:
                _check_alignment(plan, offset)
            yield workspace, Target(mount, direct, mem, offset, source, direct_refused=refused)
        finally:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
            try:
                workspace.close()
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)


def run_plan(plan: DiskioPlan, workspace: Workspace, target: Target, session,
             usage: Optional[Callable[[str], FsUsage]] = None, progress=None) -> Outcome:
    """Measure each test of the plan; every result goes to `session.add` as soon as it exists."""
    outcome = Outcome()
    probe = DiskioProbe(workspace, target, plan, usage=usage)
    probe.stop = StopFlag()
    try:
        for test in plan.tests:
            try:
                results = probe.measure(test)
            except DiskFull as exc:
                outcome.disk_full = str(exc)
                session.add(Result.failed(probe._params(test), f"{test}: {exc}"))
                break
            for result in results:
                session.add(result)
            if progress is not None:
                progress(test, results)
    except KeyboardInterrupt:
        probe.stop.set()
        outcome.interrupted = True
    outcome.warnings = list(probe.warnings)
    return outcome
