"""diskio as a probe of the shared loop: its options, and Ctrl-C wherever the interruption lands.

The interruption tests run the real command in a subprocess on real O_DIRECT files (pytest's
tmp_path) and wait for records rather than sleeping a fixed time.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import parse_options

from mlbench.diskio import engine, safety
from mlbench.diskio.cli import Diskio, command
from mlbench.diskio.plan import DiskioOptions, make_plan
from mlbench.exitcodes import UsageError
from mlbench.records import read_records, validate

ROOT = Path(__file__).resolve().parents[1]


def leftovers(directory: Path) -> list:
    return sorted(p.name for p in Path(directory).glob(f"{safety.WORKSPACE_PREFIX}*"))


# --- options ---------------------------------------------------------------------------------------


def test_options_round_trip_through_the_command_line():
    """Every option given comes back from to_argv, and click parses it into the same object."""
    given = DiskioOptions(
        device="cpu",
        quick=True,
        out="x.jsonl",
        run_id="r7",
        directory="/data",
        modes="seqread",
        block_sizes="4K:16K",
        jobs="1,4",
        file_size="64M",
        duration_s=2.5,
        io_size="1G",
        direct=False,
        allow_buffered=True,
    )
    argv = given.to_argv()
    assert argv[argv.index("--dir") + 1] == "/data" and "--buffered" in argv and "--allow-buffered" in argv
    assert parse_options(command, DiskioOptions, argv) == given
    assert DiskioOptions().to_argv() == []


def test_plan_defaults_follow_quick():
    full, quick = make_plan(DiskioOptions()), make_plan(DiskioOptions(quick=True))
    assert (full.file_size, full.duration_s, sorted({t.jobs for t in full.tests})) == (1 << 30, 10.0, [1, 4, 16])
    assert (quick.file_size, quick.duration_s, sorted({t.jobs for t in quick.tests})) == (16 << 20, 0.3, [1])
    assert len(quick.tests) == 5 and quick.result_count == 6  # the checkpoint gives two results


def test_alignment_found_on_the_file_system_is_checked():
    plan = make_plan(DiskioOptions(modes="randread", block_sizes="512,4K", file_size="1M"))
    plan.check_alignment(512)
    with pytest.raises(UsageError, match="block size 512B is not a multiple of this file system's O_DIRECT alignment"):
        plan.check_alignment(4096)


@pytest.mark.parametrize(
    "device, ok", [("auto", True), ("cpu", True), ("cuda", False), ("cuda:0", False), ("mps", False)]
)
def test_only_the_host_is_a_device(device, ok):
    options = DiskioOptions(device=device, quick=True)
    if ok:
        Diskio().validate(options)
    else:
        with pytest.raises(UsageError, match=f"--device {device}: diskio measures storage from the host; use auto"):
            Diskio().validate(options)


# --- Ctrl-C wherever it lands: the stop flag reaches the IO jobs ------------------------------------

# Ctrl-C at the worst places, injected in the real command once its first record is on disk:
# - "fork": SIGINT raised from an at-fork handler while the next test's `nth` job is forked (a
#   KeyboardInterrupt raised there is printed as "Exception ignored" and lost);
# - "swallowed": one second into the next test's IO, SIGINT raised inside another signal handler
#   that swallows its KeyboardInterrupt: only the run's stop flag is left to end the test.
INTERRUPTING = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path

    out, where, nth, args = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    marker = Path(str(out) + ".signalled")
    forks = []

    def sigint_swallowed(signum, frame):
        marker.write_text(repr(time.monotonic()))
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            print("KeyboardInterrupt swallowed", file=sys.stderr)

    def after_fork_in_parent():
        if not out.exists() or out.read_text().count("\\n") < 1:
            return
        forks.append(1)  # a job of the test after the first record
        if where == "fork" and len(forks) == nth:
            marker.write_text(repr(time.monotonic()))
            signal.raise_signal(signal.SIGINT)
        elif where == "swallowed" and len(forks) == 1:
            signal.signal(signal.SIGALRM, sigint_swallowed)
            signal.setitimer(signal.ITIMER_REAL, 1.0)

    os.register_at_fork(after_in_parent=after_fork_in_parent)
    from mlbench.diskio.cli import command
    command.main(args=args, prog_name="python -m mlbench.diskio")
""")
LONG_S = 30.0  # the test in progress when the signal lands: far longer than "promptly"
PROMPT_S = 5.0


@pytest.mark.slow
@pytest.mark.parametrize("where, nth", [("fork", 1), ("fork", 2), ("swallowed", 1)])
def test_ctrl_c_at_the_worst_place_still_stops_promptly_and_exits_3(iodir, tmp_path, where, nth):
    out = tmp_path / "s.jsonl"
    # the checkpoint (no time bound, 4 MiB) gives two records; then randread, time-bound, is interrupted
    args = [
        "--modes",
        "checkpoint,randread",
        "--block-sizes",
        "64K",
        "--jobs",
        "2",
        "--file-size",
        "4M",
        "--duration",
        str(LONG_S),
        "--io-size",
        "1T",
        "--dir",
        str(iodir),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTING, str(out), where, str(nth), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:  # returns once every process holding the output has ended: no job is left behind
        stdout, stderr = proc.communicate(timeout=LONG_S / 2 + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run went on after the interruption")
    ended = time.monotonic()
    signalled = float(Path(str(out) + ".signalled").read_text())
    if where == "swallowed":
        assert "KeyboardInterrupt swallowed" in stderr
    assert proc.returncode == 3, stderr
    assert ended - signalled < PROMPT_S, f"{ended - signalled:.1f} s from the signal to the exit"
    records = list(read_records(out))
    assert [(r["params"]["mode"], r["params"].get("phase"), r["status"]) for r in records] == [
        ("checkpoint", "write", "ok"),
        ("checkpoint", "read", "ok"),
    ]  # the cut-short randread is not recorded
    assert all(validate(r) == [] for r in records)
    assert "interrupted after 2 measurement(s)" in stdout and "2 test(s) measured, 0 skipped, 0 failed" in stdout
    assert leftovers(iodir) == [] and os.listdir(iodir) == []


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
def test_sigint_right_after_the_first_record_exits_3_and_cleans_up(iodir, tmp_path, attempt):
    """The reported case, real signals: Ctrl-C as the next test forks its jobs, right after a record."""
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlbench.diskio",
            "--modes",
            "seqwrite,seqread,randread",
            "--block-sizes",
            "4K,64K",
            "--jobs",
            "1,4",
            "--file-size",
            "16M",
            "--duration",
            "1",
            "--io-size",
            "1T",
            "--dir",
            str(iodir),
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and out.read_text().count("\n")):
        time.sleep(0.002)
    assert proc.poll() is None and out.exists(), "no record before the deadline"
    proc.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert time.monotonic() - signalled < PROMPT_S
    records = list(read_records(out))
    assert 1 <= len(records) < 12 and all(validate(r) == [] and r["status"] == "ok" for r in records)
    assert leftovers(iodir) == [] and os.listdir(iodir) == []


# --- the engine gives the interruption back promptly ------------------------------------------------


def _job_file(directory: Path) -> str:
    path = directory / "data"
    path.write_bytes(b"\0" * (1 << 20))
    return str(path)


def _spec(path: str) -> engine.JobSpec:
    return engine.JobSpec(path, False, True, 4096, 0, 1 << 20, False, 1 << 40, None, salt=1)


@pytest.fixture
def interrupt_after():
    """interrupt_after(seconds): KeyboardInterrupt in the main thread then, as Ctrl-C raises it."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGALRM, raise_interrupt)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, saved)


def test_interrupted_jobs_with_results_larger_than_a_pipe_end_at_once(iodir, monkeypatch, interrupt_after):
    def long_job_with_a_big_result(fd, spec, buf, stamps, stop, result):
        result.lat_ns.extend(range(200_000))  # 1.6 MB pickled: more than a pipe holds
        while not stop.is_set():
            time.sleep(0.01)

    monkeypatch.setattr(engine, "_io_loop", long_job_with_a_big_result)  # inherited by the forked jobs
    path = _job_file(iodir)
    interrupt_after(0.5)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.run_jobs([_spec(path), _spec(path)])
    assert time.monotonic() - t0 < 3.0  # not a 5 s wait per job blocked on its unread result
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("diskio-job")]


def test_interrupted_while_starting_the_jobs_raises_the_interruption(iodir, monkeypatch):
    started = []
    real_start = engine._FORK.Process.start

    def start_then_interrupt(proc):
        if started:
            raise KeyboardInterrupt  # Ctrl-C before the second job is forked
        started.append(proc)
        real_start(proc)

    monkeypatch.setattr(engine._FORK.Process, "start", start_then_interrupt)
    path = _job_file(iodir)
    with pytest.raises(KeyboardInterrupt):
        engine.run_jobs([_spec(path), _spec(path)])
    assert not started[0].is_alive()
