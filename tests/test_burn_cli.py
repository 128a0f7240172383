"""`mlbench burn` through its real entry points on the CPU: clean runs, the corrupt fault, siblings, Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, read_jsonl, run_module

from mlbench.burn.launch import child_command, child_outs, exit_code
from mlbench.burn.plan import BurnOptions
from mlbench.records import validate


def burn_args(out, *extra):
    return ["--device", "cpu", "--shape", "128x128x128", "--pattern-bytes", "1M", "--out", str(out), *extra]


@pytest.mark.slow
def test_clean_run_is_bitwise_stable_and_exits_0(cli, tmp_path):
    out = tmp_path / "burn.jsonl"
    result = cli("burn", *burn_args(out, "--duration", "1.5s", "--interval", "0.5s", "--run-id", "r1"))
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [r["params"]["interval"] for r in records] == [1, 2, 3]
    for record in records:
        assert validate(record) == [], validate(record)
        assert record["status"] == "ok" and record["metrics"]["mismatches"] == 0
        assert record["metrics"]["iterations"] >= 1 and record["metrics"]["pattern_errors"] == 0
        assert record["params"]["dtype"] == "bf16" and record["params"]["deterministic"] is True
    assert len({r["metrics"]["result_sha256"] for r in records}) == 1
    assert "clean" in result.output and "3 interval(s) measured, 0 skipped, 0 failed" in result.output
    assert (tmp_path / "env.json").exists()


@pytest.mark.slow
def test_corrupt_fault_fails_naming_the_device_and_the_iteration(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBENCH_FAULTS", "corrupt=0:after=2")  # the CPU is device 0
    out = tmp_path / "burn.jsonl"
    result = cli("burn", *burn_args(out, "--duration", "1s", "--interval", "0.5s"))
    assert result.exit_code == 1, result.output
    records = read_jsonl(out)
    first = records[0]
    assert first["status"] == "error" and validate(first) == []
    assert "bitwise_mismatch" in first["flags"] and first["metrics"]["mismatches"] >= 1
    assert " cpu (" in first["error"] and "iteration 2:" in first["error"] and "first bad element" in first["error"]
    assert "iteration 2:" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "soon"], "bad --duration"),
        (["--dtype", "int8"], "bit for bit"),
        (["--device", "gpu"], "bad --device"),
        (["--shape", "8x8"], "bad --shapes item"),
    ],
)
def test_bad_input_is_exit_2_with_nothing_written(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli("burn", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_malformed_fault_is_one_line_and_exit_2(tmp_path):
    proc = run_module("mlbench.burn", "--device", "cpu", cwd=tmp_path, env={"MLBENCH_FAULTS": "corrupt=x:after=1"})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "corrupt needs a device index" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_imports_nothing_heavy():
    check = (
        "import sys\nfrom click.testing import CliRunner\nfrom mlbench.cli import group\n"
        "assert CliRunner().invoke(group, ['burn', '--help']).exit_code == 0\n"
        "print(','.join(m for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_fan_out_command_lines():
    options = BurnOptions(duration="30m", dtype="fp16")
    outs = child_outs(REPO / "r" / "burn.jsonl", ["cuda:0", "cuda:1"])
    assert [p.name for p in outs] == ["burn-gpu0.jsonl", "burn-gpu1.jsonl"]
    command = child_command(options, "cuda:1", outs[1], "run7")
    assert command[1:3] == ["-m", "mlbench.burn"]
    assert command[3:] == [
        "--device",
        "cuda:1",
        "--out",
        str(outs[1]),
        "--run-id",
        "run7",
        "--duration",
        "30m",
        "--dtype",
        "fp16",
    ]
    assert exit_code([0, 0], False, False) == 0
    assert exit_code([0, 1], False, False) == 1
    assert exit_code([0, 0], False, True) == 1  # the GPUs' first results disagree
    assert exit_code([0, 3], False, False) == 3 and exit_code([0, 0], True, False) == 3


# -- real processes side by side ---------------------------------------------------------------------


def _start(out, run_id, *extra, env=None):
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "mlbench.burn", *burn_args(out, "--run-id", run_id, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def _wait_for(predicate, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_processes_compute_the_same_bits(tmp_path):
    procs = [_start(tmp_path / f"burn-{i}.jsonl", "same", "--duration", "2s") for i in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    digests = {r["metrics"]["result_sha256"] for i in range(2) for r in read_jsonl(tmp_path / f"burn-{i}.jsonl")}
    assert len(digests) == 1
    assert all(r["status"] == "ok" for i in range(2) for r in read_jsonl(tmp_path / f"burn-{i}.jsonl"))


@pytest.mark.slow
def test_a_process_whose_first_result_differs_from_its_siblings_is_named(tmp_path):
    exchange = tmp_path / "burn-digests" / "trio"
    good = [_start(tmp_path / f"burn-{i}.jsonl", "trio", "--duration", "3s") for i in range(2)]
    # the bad one starts once both good ones have shared their first result
    assert _wait_for(
        lambda: (
            len([p for p in exchange.glob("*.json") if '"running"' in p.read_text() or '"done"' in p.read_text()]) == 2
        )
    )
    bad = _start(tmp_path / "burn-2.jsonl", "trio", "--duration", "1s", env={"MLBENCH_FAULTS": "corrupt=0:after=0"})
    stdout, stderr = bad.communicate(timeout=180)
    assert bad.returncode == 1, stderr
    flagged = [r for r in read_jsonl(tmp_path / "burn-2.jsonl") if "differs_from_siblings" in r["flags"]]
    assert flagged and "iteration 0" in flagged[0]["error"] and "majority" in flagged[0]["error"]
    assert [p.communicate(timeout=180) and p.returncode for p in good] == [0, 0]


@pytest.mark.slow
def test_ctrl_c_keeps_the_intervals_and_exits_3(tmp_path):
    out = tmp_path / "burn.jsonl"
    proc = _start(out, "int", "--duration", "60s", "--interval", "0.5s")
    assert _wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    records = read_jsonl(out)
    assert 2 <= len(records) < 120 and all(validate(r) == [] for r in records)
    assert "interrupted" in stdout


@pytest.mark.slow
def test_fan_out_runs_one_process_per_device_and_merges(tmp_path, capsys):
    from mlbench.burn.launch import run_all
    from mlbench.burn.plan import make_plan

    options = BurnOptions(shape="128x128x128", pattern_bytes="1M", duration="2s", out=str(tmp_path / "burn.jsonl"))
    code = run_all(options, ["cpu:0", "cpu:1"], make_plan("cpu", options))  # two processes standing in for GPUs
    assert code == 0
    for i in range(2):
        records = read_jsonl(tmp_path / f"burn-gpu{i}.jsonl")
        assert records and all(r["status"] == "ok" and validate(r) == [] for r in records)
        assert (tmp_path / f"burn-gpu{i}.log").read_text().strip()
    runs = {r["run_id"] for i in range(2) for r in read_jsonl(tmp_path / f"burn-gpu{i}.jsonl")}
    assert len(runs) == 1  # one run: the processes are siblings
    out = capsys.readouterr().out
    assert "burn-in of 2 s" in out and "interval(s) measured, 0 skipped, 0 failed" in out
