"""`mlbench burn --device all` on a node with several GPUs: one burn-in process per GPU, all at once.

Each child is `python -m mlbench.burn --device cuda:I --out <dir>/<name>-gpuI.jsonl` with the same
options and run id (so the children are siblings: they compare their results with each other); its
output goes to `<dir>/<name>-gpuI.log`. This parent shows one progress line from the children's
records, and at the end a summary of every GPU's records: clean or not, mismatches, pattern errors,
error-counter growth, GPUs whose results differ from the others', GPUs much slower than the others.

Ctrl-C: the children run in their own sessions and get SIGINT from this parent (then SIGTERM, then
SIGKILL after bounded waits); each keeps what it measured. They get SIGTERM if this parent dies.
Exit code: 3 interrupted, 1 a child failed (or the GPUs' results disagree), else 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from ..exitcodes import FAILED, INCOMPLETE, OK, USAGE
from ..records import default_out, new_run_id, read_records

INTERRUPT_WAIT_S = 10.0  # after SIGINT: a child finishes its interval record and closes
TERMINATE_WAIT_S = 3.0  # after SIGTERM, before SIGKILL
POLL_S = 0.5


def child_outs(out: Path, devices: list) -> list:
    """`<dir>/<stem>-gpuI<suffix>` for each device `kind:I`."""
    return [out.with_name(f"{out.stem}-gpu{device.split(':')[-1]}{out.suffix or '.jsonl'}") for device in devices]


def child_command(options, device: str, out: Path, run_id: str) -> list:
    argv = options.replace(device=device, out=str(out), run_id=run_id).to_argv()
    return [sys.executable, "-m", "mlbench.burn", *argv]


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _stop_children(children: list) -> None:
    """SIGINT to every child, then SIGTERM, then SIGKILL, each after a bounded wait for all of them."""
    for sig, wait_s in ((signal.SIGINT, INTERRUPT_WAIT_S), (signal.SIGTERM, TERMINATE_WAIT_S), (signal.SIGKILL, 5.0)):
        running = [c for c in children if c.poll() is None]
        if not running:
            return
        for child in running:
            try:
                child.send_signal(sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        for child in running:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


def exit_code(returncodes: list, interrupted: bool, disagree: bool) -> int:
    if interrupted or INCOMPLETE in returncodes:
        return INCOMPLETE
    if USAGE in returncodes:
        return USAGE
    if disagree or any(code != OK for code in returncodes):
        return FAILED
    return OK


def run_all(options, devices: list, plan) -> int:
    """Burn every device in `devices` at once (one child process each); the summary; the exit code."""
    from ..collectives.launch import die_with_parent_hook
    from ..harness import interruptible
    from ..progress import Progress
    from .summary import by_device, cross_device_lines, summary_text

    run_id = options.run_id or new_run_id()
    out = Path(options.out) if options.out else default_out("burn", run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    outs = child_outs(out, devices)
    env = dict(os.environ, MLBENCH_RUN_ID=run_id, MLBENCH_PROGRESS="0")
    say = lambda text: click.echo(f"mlbench burn: {text}", err=True)  # noqa: E731
    say(
        f"{len(devices)} GPUs at once, one process each: {plan.describe()}; "
        f"records -> {out.parent}/{out.stem}-gpu*.jsonl (logs beside them)"
    )
    children, logs = [], []
    interrupted = False
    progress = Progress(plan.intervals * len(devices), "mlbench burn")
    started = time.monotonic()
    try:
        with interruptible(threading.Event()):
            try:
                for device, path in zip(devices, outs):
                    log = open(path.with_suffix(".log"), "a", encoding="utf-8")
                    logs.append(log)
                    children.append(
                        subprocess.Popen(
                            child_command(options, device, path, run_id),
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=env,
                            start_new_session=True,
                            preexec_fn=die_with_parent_hook(),
                        )
                    )
                done = 0
                while any(c.poll() is None for c in children):
                    time.sleep(POLL_S)
                    now = sum(_count_lines(p) for p in outs)
                    left = max(0.0, plan.duration_s - (time.monotonic() - started))
                    progress.update(now - done, f"{len(devices)} GPUs, about {left:.0f} s left")
                    done = now
            except KeyboardInterrupt:
                interrupted = True
                _stop_children(children)
    finally:
        progress.close()
        if interrupted or any(c.poll() is None for c in children):
            _stop_children(children)
        for log in logs:
            log.close()
    records = [r for path in outs if path.exists() for r in read_records(path)]
    groups = by_device(records)
    disagree = any("differ bit for bit" in line for line in cross_device_lines(groups))
    from ..harness import count_line

    lines = [f"interrupted: what was measured is kept in {out.parent}"] if interrupted else []
    lines.append(summary_text(records, plan.duration_s))
    lines += count_line(records, "interval(s)")
    click.echo("\n".join(lines))
    return exit_code([c.returncode for c in children], interrupted, disagree)
