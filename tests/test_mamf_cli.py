"""The MAMF probe through its real entry points, on the CPU."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, read_jsonl, run_module

from mlbench.records import validate


def test_quick_run_writes_valid_records(cli, tmp_path):
    out = tmp_path / "mamf.jsonl"
    result = cli("mamf", "--quick", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert len(records) == 4  # the quick CPU grid: 2 x 2 x 1
    for record in records:
        assert validate(record) == []
        assert record["status"] == "ok"
        assert record["metrics"]["check_rel_err"] < 0.05
        assert len(record["raw"]["time_ms"]) == record["metrics"]["reps"]
        # tflops is 2mnk / median time
        p, m = record["params"], record["metrics"]
        assert m["tflops"] == pytest.approx(2 * p["m"] * p["n"] * p["k"] / (m["time_ms"] * 1e-3) / 1e12)
        assert m["tflops_max"] >= m["tflops"] >= m["tflops_min"]
    assert "MAMF bf16 on" in result.output and "TFLOPS (median)" in result.output
    assert (tmp_path / "env.json").exists()


@pytest.mark.slow
def test_module_entry_point_and_default_out(tmp_path):
    proc = run_module(
        "mlbench.mamf",
        "--quick",
        "--device",
        "cpu",
        "--run-id",
        "r1",
        "--shapes",
        "128x128x128,256x128x64",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(tmp_path / "results" / "r1" / "mamf.jsonl")
    assert [(r["params"]["m"], r["params"]["n"], r["params"]["k"]) for r in records] == [
        (128, 128, 128),
        (256, 128, 64),
    ]
    assert all(r["run_id"] == "r1" for r in records)
    env = (tmp_path / "results" / "r1" / "env.json").read_text()
    assert '"torch"' in env and "mlbench.mamf" in env


@pytest.mark.parametrize("dtype", ["fp32", "int8", "fp8", "fp16"])
def test_other_dtypes_on_cpu(cli, tmp_path, dtype):
    out = tmp_path / "m.jsonl"
    result = cli(
        "mamf", "--device", "cpu", "--dtype", dtype, "--shapes", "64x96x128", "--warmup-s", "0", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    (record,) = read_jsonl(out)
    assert record["status"] == "ok" and record["params"]["dtype"] == dtype
    if dtype == "int8":
        assert record["metrics"]["check_rel_err"] == 0  # integer matmul is exact


def test_tf32_on_cpu_is_a_skipped_record(cli, tmp_path):
    out = tmp_path / "m.jsonl"
    result = cli("mamf", "--device", "cpu", "--dtype", "tf32", "--out", str(out))
    assert result.exit_code == 0
    (record,) = read_jsonl(out)
    assert record["status"] == "skipped" and "tf32" in record["error"]
    assert validate(record) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dtype", "bf17"], "unknown --dtype 'bf17'"),
        (["--shapes", "4096x4096"], "bad --shapes item"),
        (["--m", "-5", "--n", "8", "--k", "8"], "bad --m"),
        (["--m", "8"], "go together"),
        (["--device", "gpu"], "bad --device"),
        (["--device", "cuda"], "no cuda device"),
        (["--warmup-s", "-1"], "--warmup-s"),
        (["--bogus"], "No such option"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, args, message):
    proc = run_module("mlbench.mamf", "--quick", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow
def test_unwritable_out_is_exit_2(tmp_path):
    (tmp_path / "a_file").write_text("keep me")
    proc = run_module("mlbench.mamf", "--quick", "--device", "cpu", "--out", str(tmp_path / "a_file" / "m.jsonl"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--out" in proc.stderr
    assert (tmp_path / "a_file").read_text() == "keep me"


@pytest.mark.slow
def test_ctrl_c_keeps_records_and_exits_3(tmp_path):
    out = tmp_path / "m.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlbench.mamf",
            "--device",
            "cpu",
            "--warmup-s",
            "0",
            "--m",
            "64:4096:+64",
            "--n",
            "256",
            "--k",
            "256",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    records = read_jsonl(out)
    assert 2 <= len(records) < 64
    assert all(validate(r) == [] for r in records)
    assert "best so far" in stdout and "TFLOPS (median)" in stdout


def test_search_mode_on_a_small_grid(cli, tmp_path):
    out = tmp_path / "m.jsonl"
    result = cli(
        "mamf",
        "--device",
        "cpu",
        "--search",
        "--m",
        "64:512:+64",
        "--n",
        "128,256",
        "--k",
        "128,256",
        "--warmup-s",
        "0",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    phases = [r["params"]["phase"] for r in records]
    assert phases[-3:] == ["confirm"] * 3 and "coarse" in phases
    assert len({(r["params"]["m"], r["params"]["n"], r["params"]["k"]) for r in records}) < 32  # not the whole grid
