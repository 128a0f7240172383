"""The one loop every probe runs in: validate, start, record, show progress, stop, summarize, exit code.

A probe is four things (see docs/harness.md):
- its options: a frozen `ProbeOptions` subclass (mlbench.options), declared once in its `plan.py`;
- its plan: pure Python in `plan.py`, built from the options, torch-free;
- its measurement: `Probe.start(options, stop)`, a context manager that resolves the device, builds
  the plan and yields a `Run` whose `results` iterator measures one point per item and never prints;
- its summary: `Run.summary(records, interrupted)`, the text shown at the end.

Everything else lives here, once, for all probes: the check that `--out` can be written before
anything is measured, the records file and env.json (`ProbeSession`), the telemetry of each record's
window (`mlbench.telemetry`: from asking the results for an item to its arrival), the live progress line,
Ctrl-C and SIGTERM, the "N measured, N skipped, N failed" line and the exit code. Signals set a
flag as well as raising KeyboardInterrupt, and the loop reads the flag after every result: an
interruption counts even when its exception lands somewhere that swallows it (a fork handler, a
library's cleanup).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator, Optional, Sequence

import click

from . import telemetry
from .exitcodes import FAILED, INCOMPLETE, OK
from .options import ProbeOptions, click_params
from .records import Status, check_writable


@dataclass
class Run:
    """What a started probe hands to the loop."""

    device: dict  # the records' `device` object
    header: str  # one line: what runs where, and the plan
    results: Iterable  # of records.Result, measured lazily, one per item
    summary: Callable[[list, bool], str]  # (records, interrupted) -> text shown at the end
    total: Optional[int] = None  # items expected (the progress line's denominator)
    progress_text: Callable[[dict], str] = lambda record: record["status"]
    notes: Sequence[str] = ()  # lines said before measuring
    warnings: Callable[[], Sequence[str]] = lambda: ()  # lines said after measuring
    noun: str = "point(s)"  # what one result is, in the count line
    require_ok: bool = False  # no ok result at all is a failure (not just "nothing to do")
    rank: int = 0
    world_size: int = 1
    writes: bool = True  # this process writes records and prints (rank 0)
    run_id: Optional[str] = None  # a run id agreed across ranks (overrides the options')
    finish: Callable[[int], None] = lambda code: None  # told the exit code before returning it
    # devices sampled beside the work (mlbench.telemetry.DeviceRef, DeviceInfo or record `device` objects):
    # None samples the device of the records; () samples nothing
    telemetry_devices: Optional[Sequence] = None


class Probe:
    """A probe definition: name, options class, help text, and `start`. Subclasses are tiny."""

    name: str = ""
    options: type = ProbeOptions
    help: str = ""

    def validate(self, options) -> None:
        """Torch-free checks of the options (raise exitcodes.UsageError); nothing is written before."""

    def check_out(self, options) -> None:
        """Refuse an --out that cannot be written, before anything starts (exit 2). A probe whose ranks
        agree on it once started (rank 0 checks, every rank learns the answer) overrides this."""
        if options.out:
            check_writable(options.out)

    def delegate(self, options) -> Optional[int]:
        """Run somewhere else instead (e.g. re-launch under torchrun) and return its exit code; None: run here."""
        return None

    def start(self, options, stop: "Stop") -> ContextManager[Run]:
        raise NotImplementedError


class Stop(threading.Event):
    """The run's stop flag (a threading.Event) that can also tell others when it is set.

    `when_set(callback)` registers a quick, non-raising callable run by `set()` (at once if already
    set); `set()` may run inside a signal handler, so a probe can stop work the flag alone would not
    reach in time (e.g. child processes that watch their own shared-memory flag).
    """

    def __init__(self):
        super().__init__()
        self._callbacks: list = []

    def when_set(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        if self.is_set():
            callback()

    def set(self) -> None:
        super().set()
        for callback in list(self._callbacks):
            callback()


@contextlib.contextmanager
def interruptible(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` and raise KeyboardInterrupt (once); restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        first = not stop.is_set()
        stop.set()
        if first:
            raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def count_line(records: list, noun: str) -> list:
    """The closing lines every probe prints: counts by status, then why things were skipped or failed."""
    by_status = {status: [r for r in records if r["status"] == status] for status in Status}
    lines = [
        f"{len(by_status[Status.OK])} {noun} measured, {len(by_status[Status.SKIPPED])} skipped, "
        f"{len(by_status[Status.ERROR])} failed"
    ]
    for why in list(dict.fromkeys(r["error"] for r in by_status[Status.SKIPPED]))[:4]:
        lines.append(f"  skipped: {why}")
    for record in by_status[Status.ERROR][:3]:
        lines.append(f"  error: {record['error']}")
    return lines


def exit_code(records: list, interrupted: bool, require_ok: bool = False) -> int:
    """The exit code of a probe run: 3 interrupted, 1 any failed result (or none ok when required), else 0."""
    if interrupted:
        return INCOMPLETE
    if any(r["status"] == Status.ERROR for r in records):
        return FAILED
    if require_ok and not any(r["status"] == Status.OK for r in records):
        return FAILED
    return OK


def run_probe(probe: Probe, options: ProbeOptions, argv: Optional[Sequence[str]] = None) -> int:
    """Validate, measure, record and summarize one probe run; return the exit code."""
    from .session import ProbeSession

    probe.validate(options)
    probe.check_out(options)
    telemetry.preflight()
    delegated = probe.delegate(options)
    if delegated is not None:
        return delegated
    stop = Stop()
    prefix = f"mlbench {probe.name}"
    with interruptible(stop), probe.start(options, stop) as run:
        session = ProbeSession(
            probe.name,
            run.device,
            out=options.out,
            run_id=run.run_id or options.run_id,
            rank=run.rank,
            world_size=run.world_size,
            write=run.writes,
        )
        say = (lambda text: click.echo(f"{prefix}: {text}", err=True)) if run.writes else (lambda text: None)
        session.start(argv)
        say(f"{run.header}; records -> {session.out}")
        for note in run.notes:
            say(note)
        records, interrupted = _record(session, run, stop, probe.name)
        for warning in run.warnings():
            say(f"warning: {warning}")
        if run.writes:
            lines = (
                [f"interrupted after {len(records)} measurement(s): what was measured is kept"] if interrupted else []
            )
            body = run.summary(records, interrupted)
            click.echo("\n".join(lines + ([body] if body else []) + count_line(records, run.noun)))
        code = exit_code(records, interrupted, run.require_ok)
        run.finish(code)
        return code


def _record(session, run: Run, stop: threading.Event, label: str) -> tuple:
    """Add every result as it comes (one flushed line each) with the telemetry of its window, from asking
    the results for it to its arrival (`mlbench.telemetry.Watch`); stop at the first interruption."""
    from .progress import Progress

    progress = Progress(run.total, label, enabled=None if run.writes else False)
    interrupted = False
    try:
        with telemetry.Watch(telemetry.run_devices(run) if run.writes else ()) as watch:
            results = iter(run.results)
            while True:
                mark = watch.mark()
                result = next(results, None)
                if result is None:
                    break
                record = session.add(result, **watch.fields(mark, run.device, result.flags))
                progress.update(1, run.progress_text(record))
                if stop.is_set():
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        session.close()
    return session.records, interrupted or stop.is_set()


def command(probe_class: type) -> click.Command:
    """The click command of a probe: its options, its help, the shared loop and one-line errors."""
    from .cli import Command

    probe = probe_class()

    def callback(**values) -> int:
        return run_probe(probe, probe.options(**values))

    return Command(
        name=probe.name,
        callback=callback,
        params=click_params(probe.options),
        help=probe.help,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
