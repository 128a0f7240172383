"""`mlbench collectives --nproc-per-node N`: every option reaches the ranks, and Ctrl-C leaves no rank behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from conftest import REPO, read_jsonl

from mlbench.collectives.launch import torchrun_command
from mlbench.collectives.plan import CollectivesOptions
from mlbench.options import option
from mlbench.records import validate


def _parse(argv: list) -> CollectivesOptions:
    from mlbench.collectives.cli import command

    return CollectivesOptions(**command.make_context("collectives", list(argv)).params)


def test_every_forwarded_option_survives_the_command_line():
    given = CollectivesOptions(
        device="cpu",
        out="c.jsonl",
        quick=True,
        run_id="r7",
        ops="all_reduce,sendrecv",
        sizes="1K,4K",
        dtype="bf16",
        modes="latency",
        timeout_s=60.0,
        backend="gloo",
        nproc_per_node=2,
    )
    launcher_only = {f.name for f in fields(CollectivesOptions) if not f.metadata.get("forward", True)}
    assert launcher_only == {"nproc_per_node"}
    # every field is set to something other than its default, so a new option is covered here as it is added
    assert [f.name for f in fields(given) if getattr(given, f.name) == f.default] == []
    argv = given.to_argv()
    assert "--nproc-per-node" not in argv
    assert _parse(argv) == given.replace(nproc_per_node=None)
    assert CollectivesOptions().to_argv() == []


def test_the_torchrun_command_forwards_options_added_later():
    @dataclass(frozen=True)
    class Later(CollectivesOptions):
        later: str = option("--later", default="a", help="An option the launcher never heard of.")

    cmd = torchrun_command(Later(dtype="fp16", later="b", nproc_per_node=4), 4, "agreed")
    assert cmd[cmd.index("--nproc-per-node") + 1] == "4" and cmd.count("--nproc-per-node") == 1
    probe_args = cmd[cmd.index("mlbench.collectives") + 1 :]
    assert probe_args == Later(dtype="fp16", later="b", run_id="agreed").to_argv()
    assert {"--later", "b", "--dtype", "fp16", "--run-id", "agreed"} <= set(probe_args)


# --- real gloo ranks ------------------------------------------------------------------------------


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("MLBENCH_RUN_ID", None)
    env.update(extra)
    return env


@pytest.mark.slow
def test_non_default_options_reach_the_ranks(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlbench.collectives",
            "--nproc-per-node",
            "2",
            "--quick",
            "--dtype",
            "bf16",
            "--modes",
            "latency",
            "--sizes",
            "1K,4K",
            "--ops",
            "all_reduce",
            "--timeout",
            "60",
            "--backend",
            "gloo",
            "--run-id",
            "fwd",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = tmp_path / "results" / "fwd"
    records = read_jsonl(run_dir / "collectives.jsonl")
    assert len(records) == 2 and all(validate(r) == [] and r["status"] == "ok" for r in records)
    assert {
        (
            r["params"]["op"],
            r["params"]["dtype"],
            r["params"]["mode"],
            r["params"]["backend"],
            r["params"]["world_size"],
        )
        for r in records
    } == {("all_reduce", "bf16", "latency", "gloo", 2)}
    assert sorted(r["params"]["requested_bytes"] for r in records) == [1024, 4096]
    assert {r["run_id"] for r in records} == {"fwd"}
    command = json.loads((run_dir / "env.json").read_text())["commands"]["collectives"]
    assert "--timeout 60" in command and "--backend gloo" in command  # what rank 0 ran with
    assert "timeout 60s" in proc.stderr


def _ours(marker: str) -> list:
    """pids of live processes whose environment carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
                if "Z" not in state.split()[1]:
                    found.append(int(entry.name))
        except (OSError, StopIteration):
            continue
    return found


def _wait_for(condition, deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not after {deadline_s}s")


def _children(pid: int) -> list:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _start_long_run(tmp_path, marker: str):
    out = tmp_path / "c.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlbench.collectives",
            "--nproc-per-node",
            "2",
            "--sizes",
            "8:64M",
            "--ops",
            "all_reduce,all_gather,reduce_scatter",
            "--timeout",
            "300",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(MLBENCH_TEST_MARKER=marker),
        start_new_session=True,
    )
    _wait_for(
        lambda: out.exists() and out.read_text().count("\n") >= 1 or proc.poll() is not None, 90, "the first record"
    )
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    return proc, out


def _clean_up(marker: str) -> None:
    for pid in _ours(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_every_rank_and_exits_3(tmp_path):
    marker = f"mlbench-test-{uuid.uuid4().hex}"
    proc, out = _start_long_run(tmp_path, marker)
    try:
        assert len(_ours(marker)) >= 4  # this parent, torchrun, two ranks
        os.kill(proc.pid, signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=30)
        exited_at = time.monotonic()
        assert proc.returncode == 3, stderr[-2000:]
        _wait_for(lambda: not _ours(marker), 10, f"processes {_ours(marker)} still running after the parent exited")
        assert time.monotonic() - exited_at < 10
    finally:
        _clean_up(marker)
    kept = read_jsonl(out)
    assert len(kept) >= 1 and all(validate(r) == [] for r in kept)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("victim", ["parent", "torchrun"])
def test_ranks_end_when_their_launcher_is_killed(tmp_path, victim):
    """SIGKILL (no chance to clean up) of the re-launching parent or of torchrun: the ranks go within seconds."""
    marker = f"mlbench-test-{uuid.uuid4().hex}"
    proc, _out = _start_long_run(tmp_path, marker)
    try:
        target = proc.pid if victim == "parent" else _children(proc.pid)[0]
        os.kill(target, signal.SIGKILL)
        killed_at = time.monotonic()
        _wait_for(lambda: not _ours(marker), 10, f"processes {_ours(marker)} still running after the {victim} died")
        assert time.monotonic() - killed_at < 10
    finally:
        _clean_up(marker)
        proc.kill()
        proc.communicate()


BLOCKED_RANK = """
import signal, sys, threading
from mlbench.collectives.dist import Watchdog

signal.signal(signal.SIGINT, lambda signum, frame: None)  # a main thread that cannot honour it (in a collective)
Watchdog(60, "rank 1 on test", interrupt_grace_s=1.0).start().doing("all_reduce of 64 B")
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.mark.slow
def test_a_rank_that_does_not_stop_after_sigint_ends_after_the_grace(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_RANK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGINT)
        sent_at = time.monotonic()
        _stdout, stderr = proc.communicate(timeout=20)
        assert time.monotonic() - sent_at < 5
    finally:
        proc.kill()
    assert proc.returncode == 3
    assert stderr.strip().splitlines() == [
        "mlbench collectives: error: rank 1 on test: interrupted, and still not stopped 1s later, during all_reduce "
        "of 64 B; records written so far are kept"
    ]
