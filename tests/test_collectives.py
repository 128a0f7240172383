"""The collectives probe: nccl-tests byte accounting, exact checks, and real gloo runs under torchrun."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, read_jsonl

from mlbench.collectives.plan import (
    DTYPES,
    OPS,
    CollectivesOptions,
    Fill,
    algbw_gbps,
    busbw_gbps,
    fill_for,
    make_plan,
    max_repeats_in_place,
    parse_dtype,
)
from mlbench.exitcodes import UsageError
from mlbench.records import validate
from mlbench.stats import median

FP32, BF16, FP16 = DTYPES["fp32"], DTYPES["bf16"], DTYPES["fp16"]


# --- byte accounting and bandwidth, against hand-computed values --------------------------------


@pytest.mark.parametrize(
    "op, size, dtype, n, count, send, recv, s_bytes",
    [
        # all_reduce: count = SIZE / e, S = count * e
        ("all_reduce", 1 << 20, FP32, 8, 262144, 262144, 262144, 1 << 20),
        ("all_reduce", 1001, FP32, 3, 250, 250, 250, 1000),
        # all_gather: per-rank count = 1000/4/3 = 83 -> rounded down to 16 B (4 fp32) = 80; S = 80*3*4
        ("all_gather", 1000, FP32, 3, 80, 80, 240, 960),
        # reduce_scatter bf16: 8192/2 = 4096, /3 = 1365 -> multiple of 8 = 1360; S = 1360*3*2 = 8160
        ("reduce_scatter", 8192, BF16, 3, 1360, 4080, 1360, 8160),
        ("all_to_all", 8192, BF16, 3, 1360, 4080, 4080, 8160),
        ("all_to_all", 1 << 20, FP32, 8, 32768, 262144, 262144, 1 << 20),
        ("broadcast", 100, FP16, 4, 50, 50, 50, 100),
        ("sendrecv", 64, FP32, 2, 16, 16, 16, 64),
        # too small to split: 16 B over 2 ranks of fp32 gives 2 elements, rounded down to 4 -> 0
        ("all_gather", 16, FP32, 2, 0, 0, 0, 0),
    ],
)
def test_counts_match_nccl_tests(op, size, dtype, n, count, send, recv, s_bytes):
    c = OPS[op].counts(size, dtype.element_bytes, n)
    assert (c.count, c.send_count, c.recv_count, c.s_bytes) == (count, send, recv, s_bytes)


@pytest.mark.parametrize(
    "op, n, factor",
    [
        ("all_reduce", 8, 1.75),
        ("all_reduce", 2, 1.0),
        ("all_reduce", 3, 4 / 3),
        ("all_gather", 4, 0.75),
        ("reduce_scatter", 3, 2 / 3),
        ("all_to_all", 8, 0.875),
        ("broadcast", 8, 1.0),
        ("sendrecv", 2, 1.0),
        ("all_reduce", 1, 0.0),
        ("broadcast", 1, 0.0),
        ("sendrecv", 1, 0.0),  # one rank crosses no bus
    ],
)
def test_busbw_factors(op, n, factor):
    assert OPS[op].busbw_factor(n) == pytest.approx(factor)


def test_algbw_and_busbw_from_time():
    # 1e9 B in 10 ms = 100 GB/s; an 8-rank all_reduce moves 2*7/8 of that over each link: 175 GB/s
    assert algbw_gbps(10**9, 0.01) == pytest.approx(100.0)
    assert busbw_gbps(OPS["all_reduce"], 10**9, 0.01, 8) == pytest.approx(175.0)
    assert busbw_gbps(OPS["all_gather"], 4 * 10**6, 0.001, 4) == pytest.approx(3.0)


def test_fill_and_in_place_repeats_stay_exact_and_finite():
    all_reduce, all_gather = OPS["all_reduce"], OPS["all_gather"]
    assert fill_for(all_reduce, FP32, 8) == Fill(levels=4, active=8, world_size=8)
    assert fill_for(all_reduce, BF16, 128) == Fill(2, 128, 128)  # 128 ranks x 2 = 256: the largest exact bf16 integer
    # 512 ranks: 256 of them (per element) carry a 1, the others 0: the sum is 256, exact in bf16
    assert fill_for(all_reduce, BF16, 512) == Fill(1, 256, 512)
    assert fill_for(OPS["reduce_scatter"], FP16, 65536) == Fill(1, 2048, 65536)
    assert fill_for(all_gather, BF16, 512) == Fill(4, 512, 512)  # moved, not summed: every rank, values 1..4
    # fp16 (max 65504), 2 ranks, values <= 4: 12 in-place sums reach 4 * 2^12 = 16384 < 65504/2
    assert max_repeats_in_place(OPS["all_reduce"], FP16, 2, 4) == 12
    assert max_repeats_in_place(OPS["all_gather"], FP16, 2, 4) is None
    assert max_repeats_in_place(OPS["all_reduce"], FP32, 1, 4) is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ops": "all_reduce,bogus"}, "unknown op 'bogus'"),
        ({"ops": ""}, "bad --ops"),
        ({"sizes": "8:4"}, "MAX is smaller than MIN"),
        ({"sizes": "1Q"}, "bad size"),
        ({"dtype": "int8"}, "unknown --dtype"),
        ({"timeout_s": 0}, "--timeout"),
        ({"modes": "fast"}, "bad --modes"),
        ({"backend": "mpi"}, "bad --backend"),
    ],
)
def test_plan_rejects_bad_input(kwargs, message):
    options = CollectivesOptions(timeout_s=60, quick=True).replace(**kwargs)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        make_plan("cpu", options)


def test_plan_points_use_the_placements_torch_has():
    plan = make_plan(
        "cpu", CollectivesOptions(ops="all_reduce,all_gather,all_to_all", sizes="1K", timeout_s=60, quick=True)
    )
    points = [(p.op.name, p.in_place, p.mode) for p in plan.points(2)]
    assert points == [
        ("all_reduce", True, "throughput"),
        ("all_reduce", True, "latency"),
        ("all_gather", False, "throughput"),
        ("all_gather", True, "throughput"),
        ("all_gather", False, "latency"),
        ("all_to_all", False, "throughput"),
        ("all_to_all", False, "latency"),
    ]
    assert parse_dtype("bfloat16") is BF16


# --- the exact check: a reference collective in plain torch, and an injected corruption -------


def _simulate(op: str, n: int, count: int, fill: Fill):
    """What every rank holds after `op` (plain torch, no process group), from probe.values inputs."""
    import torch

    from mlbench.collectives.probe import values

    def inputs(r, length):
        return values(r, torch.arange(length, dtype=torch.int64), fill).to(torch.float32)

    if op == "all_reduce":
        total = sum(inputs(r, count) for r in range(n))
        return [total.clone() for _ in range(n)]
    if op == "reduce_scatter":
        total = sum(inputs(r, count * n) for r in range(n))
        return [total[r * count : (r + 1) * count].clone() for r in range(n)]
    if op == "all_gather":
        return [torch.cat([inputs(r, count) for r in range(n)]) for _ in range(n)]
    if op == "all_to_all":
        return [torch.cat([inputs(j, count * n)[me * count : (me + 1) * count] for j in range(n)]) for me in range(n)]
    if op == "broadcast":
        return [inputs(0, count) for _ in range(n)]
    if op == "sendrecv":
        return [inputs((me - 1) % n, count) for me in range(n)]
    raise AssertionError(op)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("n", [2, 3, 5])
def test_expected_values_match_a_reference_and_catch_one_corrupt_element(op, n):
    from mlbench.collectives.probe import count_wrong, expected_values

    count, fill = 37, fill_for(OPS[op], FP32, n)
    results = _simulate(op, n, count, fill)
    for rank, result in enumerate(results):
        expect = lambda index, rank=rank: expected_values(op, rank, count, fill, index)  # noqa: E731
        assert count_wrong(result, expect) == 0
    corrupt = results[n - 1].clone()
    corrupt[len(corrupt) // 2] += 1
    assert count_wrong(corrupt, lambda index: expected_values(op, n - 1, count, fill, index)) == 1


def test_inputs_are_small_nonzero_integers_that_differ_between_ranks():
    import torch

    from mlbench.collectives.probe import fill_inputs

    a, b = torch.empty(1000), torch.empty(1000)
    fill_inputs(a, 0, Fill(4, 2, 2))
    fill_inputs(b, 1, Fill(4, 2, 2))
    assert a.min() >= 1 and a.max() <= 4 and torch.equal(a, a.round())
    assert not torch.equal(a, b)


# --- the CLI in-process (one rank) and bad input ---------------------------------------------


def test_single_rank_run_says_so_and_reports_busbw_zero(cli, tmp_path):
    out = tmp_path / "c.jsonl"
    result = cli(
        "collectives",
        "--quick",
        "--device",
        "cpu",
        "--ops",
        "all_reduce,broadcast,sendrecv",
        "--sizes",
        "64,4K",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert all(validate(r) == [] for r in records)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 8  # all_reduce and broadcast: 2 sizes x (throughput + latency)
    assert all(r["metrics"]["busbw_gbps"] == 0 and "single_rank" in r["flags"] for r in ok)
    assert all(r["metrics"]["errors"] == 0 and r["params"]["world_size"] == 1 for r in ok)
    skipped = [r for r in records if r["status"] == "skipped"]
    assert {r["params"]["op"] for r in skipped} == {"sendrecv"} and "2 ranks" in skipped[0]["error"]
    assert "1 rank: busbw is 0" in result.output
    assert (tmp_path / "env.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ops", "all_reduce,scatter"], "unknown op 'scatter'"),
        (["--sizes", "1M:1K"], "MAX is smaller than MIN"),
        (["--dtype", "fp64"], "unknown --dtype"),
        (["--device", "tpu"], "bad --device"),
        (["--timeout", "0"], "--timeout"),
        (["--backend", "mpi"], "bad --backend"),
        (["--nproc-per-node", "0"], "--nproc-per-node"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli("collectives", "--quick", *args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_input_through_the_module_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mlbench.collectives", "--sizes", "8:4K:x1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m mlbench.collectives: error: bad --sizes '8:4K:x1': bad range step 'x1' in '8:4K:x1': "
        "the factor must be greater than 1"
    ]
    assert list(tmp_path.iterdir()) == []


# --- real multi-process runs with gloo -------------------------------------------------------


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("MLBENCH_RUN_ID", None)
    env.update(extra)
    return env


def _torchrun(nproc: int, *args) -> list:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--standalone",
        "-m",
        "mlbench.collectives",
        *args,
    ]


def _check_metrics(record: dict) -> None:
    p, m = record["params"], record["metrics"]
    assert validate(record) == []
    assert m["errors"] == 0
    assert m["algbw_gbps"] == pytest.approx(p["bytes"] / (m["time_us"] * 1e-6) / 1e9)
    assert m["busbw_gbps"] == pytest.approx(m["algbw_gbps"] * OPS[p["op"]].busbw_factor(p["world_size"]))
    assert m["time_us"] == pytest.approx(median(record["raw"]["time_us"]))
    # the slowest rank's time: never below any rank's own median
    assert m["time_us_max"] >= m["time_us"] >= m["time_us_min"]
    assert max(record["raw"]["rank_time_us"]) <= m["time_us_max"] + 1e-6


@pytest.mark.slow
def test_two_ranks_through_nproc_per_node_relaunch(tmp_path):
    """`python -m mlbench.collectives --nproc-per-node 2` re-launches itself under a real torchrun."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlbench.collectives",
            "--nproc-per-node",
            "2",
            "--quick",
            "--ops",
            "all_reduce,all_gather,reduce_scatter,broadcast,all_to_all,sendrecv",
            "--sizes",
            "64,4K",
            "--run-id",
            "two",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "results" / "two" / "collectives.jsonl"
    records = read_jsonl(out)
    assert (tmp_path / "results" / "two" / "env.json").exists()
    assert {r["run_id"] for r in records} == {"two"} and {r["rank"] for r in records} == {0}
    ok = [r for r in records if r["status"] == "ok"]
    assert {r["params"]["op"] for r in ok} == set(OPS)
    for record in ok:
        _check_metrics(record)
        assert record["params"]["world_size"] == 2 and record["params"]["layout"] == "1x2"
        assert record["params"]["backend"] == "gloo" and "gloo" in record["params"]["backend_version"]
    # 64 B over 2 ranks for the split ops: 8 fp32 -> 4 per rank, S = 64
    assert {r["params"]["bytes"] for r in ok} == {64, 4096}
    assert "# all_reduce" in proc.stdout and "peak busbw" in proc.stdout and "all results exact" in proc.stdout


@pytest.mark.slow
def test_three_ranks_odd_sizes_bf16(tmp_path):
    out = tmp_path / "c.jsonl"
    proc = subprocess.run(
        _torchrun(
            3,
            "--quick",
            "--dtype",
            "bf16",
            "--modes",
            "throughput",
            "--sizes",
            "1000,12345",
            "--ops",
            "all_reduce,all_gather,reduce_scatter,all_to_all,sendrecv",
            "--out",
            str(out),
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_jsonl(out)
    assert len(records) == 2 * (1 + 2 + 2 + 1 + 1) and all(r["status"] == "ok" for r in records)
    for record in records:
        _check_metrics(record)
        p = record["params"]
        assert p["world_size"] == 3 and p["dtype"] == "bf16"
        expected = OPS[p["op"]].counts(p["requested_bytes"], 2, 3)
        assert (p["bytes"], p["count"]) == (expected.s_bytes, expected.count)
    by = {(r["params"]["op"], r["params"]["requested_bytes"], r["params"]["in_place"]): r for r in records}
    # 12345 B bf16 over 3 ranks: 6172 elements, 2057 per rank -> 2056; S = 2056 * 3 * 2 = 12336
    assert by[("reduce_scatter", 12345, True)]["params"]["bytes"] == 12336
    assert by[("all_reduce", 12345, True)]["params"]["busbw_factor"] == pytest.approx(4 / 3)


INJECT = """
import sys
import torch.distributed as dist
import mlbench.collectives.probe as probe

make = probe.make_buffers

def corrupting(point, dtype, ctx):
    buffers = make(point, dtype, ctx)
    call = buffers.call

    def wrong():
        call()
        if dist.get_rank() == 1:
            buffers.result.view(-1)[3] += 1   # one wrong element on one rank
    buffers.call = wrong
    return buffers

probe.make_buffers = corrupting
from mlbench.collectives.cli import command
command.main(args=sys.argv[1:], prog_name="inject")
"""


@pytest.mark.slow
def test_corrupted_result_is_caught_and_fails_the_run(tmp_path):
    script = tmp_path / "inject.py"
    script.write_text(INJECT)
    out = tmp_path / "c.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        str(script),
        "--quick",
        "--ops",
        "all_reduce,all_gather",
        "--sizes",
        "1K",
        "--modes",
        "throughput",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode != 0
    records = read_jsonl(out)
    assert len(records) == 3
    for record in records:
        assert validate(record) == []
        assert record["status"] == "error" and record["metrics"]["errors"] == 1 and "check_failed" in record["flags"]
    assert "FAILED: 3 wrong element(s)" in proc.stdout


@pytest.mark.slow
def test_bad_input_under_torchrun_exits_2_on_every_rank(tmp_path):
    proc = subprocess.run(
        _torchrun(2, "--ops", "all_reduce,bogus"), cwd=tmp_path, capture_output=True, text=True, timeout=60, env=_env()
    )
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if "error: unknown op 'bogus'" in line]
    assert len(ours) == 2  # one line from each rank
    assert "exitcode  : 2" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_bad_out_under_torchrun_is_checked_by_rank_0_and_exits_2_on_every_rank(tmp_path):
    (tmp_path / "adir").mkdir()
    proc = subprocess.run(
        _torchrun(2, "--quick", "--sizes", "1K", "--out", str(tmp_path / "adir")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("python -m mlbench.collectives: error: --out")]
    assert len(ours) == 2 and all("is a directory" in line for line in ours)  # rank 0's answer, said by each rank
    assert "exitcode  : 2" in proc.stderr
    assert list((tmp_path / "adir").iterdir()) == [] and not (tmp_path / "results").exists()


def _parents() -> dict:
    """{pid: parent pid} of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
                found[int(entry.name)] = int(ppid)
            except (OSError, StopIteration, ValueError):
                continue
    return found


def _workers(root: int) -> dict:
    """{RANK: pid} of the torchrun workers below process `root` (any depth)."""
    parents = _parents()
    below, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - below
        below |= frontier
    found = {}
    for pid in below:
        try:
            items = Path(f"/proc/{pid}/environ").read_text().split("\0")
            env = dict(item.split("=", 1) for item in items if "=" in item)
        except OSError:
            continue
        if "RANK" in env and "LOCAL_RANK" in env and "mlbench" in Path(f"/proc/{pid}/cmdline").read_text():
            found[int(env["RANK"])] = pid
    return found


def _wait_for_records(path: Path, at_least: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} records in {path} after {deadline_s}s")


@pytest.mark.slow
def test_killed_rank_ends_the_run_within_the_timeout(tmp_path):
    out = tmp_path / "c.jsonl"
    timeout_s = 5
    proc = subprocess.Popen(
        _torchrun(2, "--sizes", "8:64M", "--timeout", str(timeout_s), "--out", str(out)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        _wait_for_records(out, 3, 40)
        workers = _workers(proc.pid)
        os.kill(workers[1], signal.SIGKILL)
        killed_at = time.monotonic()
        _stdout, stderr = proc.communicate(timeout=timeout_s + 15)
        assert time.monotonic() - killed_at < timeout_s + 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    kept = read_jsonl(out)
    assert len(kept) >= 3 and all(validate(r) == [] for r in kept)
    line = next(line for line in stderr.splitlines() if line.startswith("mlbench collectives: error: rank 0"))
    assert "during all_" in line and " B (" in line and "records written so far are kept" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_stopped_rank_on_another_node_times_out(tmp_path):
    """Two "nodes" (scripts/two_nodes_local.sh): node 1's rank is frozen (SIGSTOP); node 0's rank must
    give up within --timeout plus a few seconds, naming the op and size, and keep its records."""
    out = tmp_path / "c.jsonl"
    timeout_s = 3
    env = _env(PORT=str(_free_port()), PYTHON=sys.executable)
    proc = subprocess.Popen(
        [
            "bash",
            str(REPO / "scripts" / "two_nodes_local.sh"),
            "1",
            "--sizes",
            "8:64M",
            "--timeout",
            str(timeout_s),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stopped = None
    try:
        _wait_for_records(out, 3, 40)
        ranks = _workers(proc.pid)
        stopped = ranks[1]
        os.kill(stopped, signal.SIGSTOP)
        frozen_at = time.monotonic()
        while _alive(ranks[0]) and time.monotonic() - frozen_at < timeout_s + 15:
            time.sleep(0.1)
        gone_after = time.monotonic() - frozen_at
        assert gone_after < timeout_s + 8, f"rank 0 still running {gone_after:.1f}s after its peer froze"
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGKILL)
        try:
            _out, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _out, stderr = proc.communicate()
    assert proc.returncode != 0
    assert len(read_jsonl(out)) >= 3
    line = next(line for line in stderr.splitlines() if line.startswith("mlbench collectives: error: rank 0"))
    assert "during all_" in line


def _alive(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split()[1]
