"""`mlbench train` end to end on the CPU: bad input is one line and exit 2 with nothing written; one process;
the tiny preset on 2 gloo ranks under torchrun (DDP and FSDP) with weak scaling, valid records and a loss
that goes down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import read_jsonl, run_module

from mlbench.records import validate

CPU = ("--device", "cpu")
TORCHRUN_ENV = {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}


def _one_line_usage_error(code, stderr, message, out_dir):
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in stderr, stderr
    assert not out_dir.exists()  # nothing written: no records, no env.json


@pytest.mark.parametrize(
    "args, message",
    [
        (("--nproc-per-node", "2", "--global-batch", "12"), "is not a multiple of 2 device(s) x micro-batch 8"),
        (("--layers", "2K", "--hidden", "16K"), "the model does not fit this host's memory"),
        (("--preset", "huge"), "unknown --preset"),
        (("--duration", "5", "--warmup", "0"), "needs at least one --warmup step"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    result = cli("train", *CPU, *args, "--out", str(tmp_path / "r" / "train.jsonl"))
    _one_line_usage_error(result.exit_code, result.stderr, message, tmp_path / "r")


def test_a_world_size_that_does_not_divide_the_batch_under_torchrun(cli, tmp_path, monkeypatch):
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    result = cli("train", *CPU, "--global-batch", "8", "--out", str(tmp_path / "r" / "t.jsonl"))
    _one_line_usage_error(
        result.exit_code, result.stderr, "--global-batch 8 does not divide over 3 device(s)", tmp_path / "r"
    )


@pytest.mark.slow
def test_one_process_trains_and_writes_a_valid_record(tmp_path):
    out = tmp_path / "r" / "train.jsonl"
    proc = run_module(
        "mlbench", "train", *CPU, "--quick", "--steps", "4", "--warmup", "1", "--out", str(out), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = read_jsonl(out)
    assert validate(record) == []
    p, m = record["params"], record["metrics"]
    assert (p["model"], p["parallel"], p["world_size"], p["seq_len"]) == ("tiny", "none", 1, 64)
    assert p["global_batch_tokens"] == 8 * 64 and p["params_count"] == 117_056
    assert m["mfu"] is None  # no advertised peak for a CPU
    assert m["steps"] == 4 and len(record["raw"]["step_ms"]) == 4
    assert m["tokens_per_s"] == pytest.approx(8 * 64 / (m["step_ms"] / 1e3))
    assert m["tflops_per_gpu"] == pytest.approx(798_720 * 8 * 64 / (m["step_ms"] / 1e3) / 1e12)
    assert m["loss_last"] < m["loss_first"]
    assert "not under torchrun" in proc.stderr and "tokens/s" in proc.stdout


def _records_by_point(out):
    records = read_jsonl(out)
    assert all(validate(r) == [] for r in records), [validate(r) for r in records]
    return records, {(r["params"]["world_size"], r["params"].get("gpu_rank")): r for r in records}


@pytest.mark.slow
def test_two_gloo_ranks_weak_scaling_with_ddp(tmp_path):
    """--nproc-per-node re-launches under torchrun: each rank alone, then both in one DDP job."""
    out = tmp_path / "r" / "train.jsonl"
    proc = run_module("mlbench", "train", *CPU, "--quick", "--nproc-per-node", "2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records, by_point = _records_by_point(out)
    assert sorted(by_point) == [(1, 0), (1, 1), (2, None)]
    alone = [by_point[(1, 0)], by_point[(1, 1)]]
    job = by_point[(2, None)]
    assert [r["params"]["gpu"] for r in alone] == [0, 1]  # on the CPU: the local rank
    assert job["params"]["parallel"] == "ddp" and job["params"]["global_batch_tokens"] == 2 * 8 * 64
    assert len({r["run_id"] for r in records}) == 1 and all(r["world_size"] == 2 for r in records)
    for r in records:
        assert r["status"] == "ok" and r["metrics"]["loss_last"] < r["metrics"]["loss_first"]
    rates = sum(r["metrics"]["tokens_per_s"] for r in alone)
    assert job["metrics"]["scaling_efficiency"] == pytest.approx(job["metrics"]["tokens_per_s"] / rates)
    assert "scaling" in proc.stdout and "3 result(s) measured" in proc.stdout


@pytest.mark.slow
def test_fsdp_under_torchrun_with_gradient_accumulation(tmp_path):
    out = tmp_path / "r" / "train.jsonl"
    proc = run_module(
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "mlbench.train",
        *CPU,
        "--quick",
        "--parallel",
        "fsdp",
        "--no-scaling",
        "--global-batch",
        "32",
        "--steps",
        "4",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = read_jsonl(out)
    assert validate(record) == []
    p, m = record["params"], record["metrics"]
    assert (p["parallel"], p["world_size"], p["grad_accum"], p["global_batch_tokens"]) == ("fsdp", 2, 2, 32 * 64)
    assert m["scaling_efficiency"] is None  # no single-device point without scaling
    assert m["loss_last"] < m["loss_first"]


@pytest.mark.slow
def test_ctrl_c_ends_every_rank_and_exits_3(tmp_path):
    """SIGINT to `mlbench train --nproc-per-node 2` mid-point: torchrun and both ranks stop, exit 3."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r" / "train.jsonl"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlbench",
            "train",
            *CPU,
            "--nproc-per-node",
            "2",
            "--steps",
            "100000",
            "--warmup",
            "1",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in proc.stderr:  # rank 0 says where the records go once every rank is training
            if "records ->" in line:
                break
        os.kill(proc.pid, signal.SIGINT)
        sent_at = time.monotonic()
        proc.communicate(timeout=30)
        assert time.monotonic() - sent_at < 15
    finally:
        proc.kill()
    assert proc.returncode == 3
    assert read_jsonl(out) == []  # interrupted inside the first point: nothing measured, nothing invented


@pytest.mark.slow
def test_compile_is_optional_and_recorded(tmp_path):
    out = tmp_path / "r" / "train.jsonl"
    proc = run_module(
        "mlbench",
        "train",
        *CPU,
        "--quick",
        "--compile",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = read_jsonl(out)
    assert record["params"]["compile"] is True and record["status"] == "ok"
