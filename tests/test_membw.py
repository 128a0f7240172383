"""membw: byte accounting, the size plan, the probe on the CPU, records and the CLI (no GPU needed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import parse_options

from mlbench.cli import group
from mlbench.exitcodes import UsageError
from mlbench.membw import plan as P
from mlbench.membw.plan import MembwOptions, is_large, peaks
from mlbench.records import read_records, validate

MiB = 1 << 20
GiB = 1 << 30
ROOT = Path(__file__).resolve().parents[1]
CPU = P.Facts("cpu", llc_bytes=32 * MiB, free_bytes=24 * GiB, host_free_bytes=24 * GiB)
H100 = P.Facts("cuda", llc_bytes=50 * MiB, free_bytes=80 * 10**9, host_free_bytes=100 * GiB, gpu_count=1)


# -- byte accounting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, read, written, copied",
    [
        ("copy", 1000, 1000, 1000),
        ("read", 1000, 0, 0),
        ("write", 0, 1000, 0),
        ("triad", 2000, 1000, 0),
        ("h2d", 1000, 1000, 1000),
        ("d2h", 1000, 1000, 1000),
        ("p2p", 1000, 1000, 1000),
    ],
)
def test_traffic_per_op(op, read, written, copied):
    assert P.traffic(P.OPS[op], 1000) == P.Traffic(read, written, copied)


def test_rates_by_hand():
    copy, triad, read = P.OPS["copy"], P.OPS["triad"], P.OPS["read"]
    # 1 GB copied in 1 s: 1 GB read + 1 GB written = 2 GB/s; bytes once = 1 GB/s
    assert P.gbps(copy, 10**9, 1.0) == pytest.approx(2.0)
    assert P.gbps_copied(copy, 10**9, 1.0) == pytest.approx(1.0)
    # triad over 1 GiB buffers in 0.5 s: 3 * 2**30 bytes / 0.5 s
    assert P.gbps(triad, GiB, 0.5) == pytest.approx(6.442450944)
    assert P.gbps_copied(triad, GiB, 0.5) is None
    assert P.gbps(read, 4 * MiB, 1e-3) == pytest.approx(4.194304)


def test_buffers_per_set_match_the_arrays_each_op_touches():
    assert [P.OPS[o].device_buffers for o in ("copy", "read", "write", "triad")] == [2, 1, 1, 3]
    assert P.OPS["h2d"].host_buffers == P.OPS["d2h"].host_buffers == 1


# -- ops, sizes, rotation ----------------------------------------------------------------------


def test_parse_ops():
    assert P.parse_ops(None) is None
    assert P.parse_ops(" Copy,read, copy ") == ["copy", "read"]
    with pytest.raises(UsageError, match="unknown op 'bogus'"):
        P.parse_ops("copy,bogus")
    with pytest.raises(UsageError, match="empty item"):
        P.parse_ops("copy,,read")


def test_rotation_sets_reach_four_times_the_llc():
    copy, write = P.OPS["copy"], P.OPS["write"]
    llc = 32 * MiB
    assert P.rotation_sets(copy, 4 * MiB, llc) == 16  # 16 sets x 2 x 4 MiB = 128 MiB = 4 x LLC
    assert P.rotation_sets(copy, 3 * MiB, llc) == 22  # ceil(128 / 6)
    assert P.rotation_sets(copy, 64 * MiB, llc) == 1  # one set (128 MiB) already streams 4 x LLC
    assert P.rotation_sets(write, 1024, llc) == P.MAX_SETS
    assert P.rotation_sets(copy, 4 * MiB, llc, rotate=False) == 1
    assert P.rotation_sets(P.OPS["h2d"], 4 * MiB, llc) == 1


def test_point_footprint_is_aligned_and_cache_residency():
    point = P.Point("copy", 1000, sets=3)
    assert point.device_bytes == 3 * 2 * 1024  # 1000 B rounded up to the 256 B alignment
    assert point.cache_resident(1 << 20)
    assert not P.Point("copy", 32 * MiB, sets=1).cache_resident(32 * MiB)
    assert P.buffer_bytes(1001) == 1000


def test_default_sweep_cpu_spans_the_knee():
    sizes = P.default_sizes(CPU, P.DEVICE_OPS, quick=False)
    assert sizes == [(2 * MiB) << i for i in range(9)]  # 2 MiB .. 512 MiB, doubling
    assert sizes[0] <= CPU.llc_bytes / 16 and sizes[-1] >= 4 * CPU.llc_bytes
    assert P.default_sizes(CPU, P.DEVICE_OPS, quick=True) == [4 * MiB, 128 * MiB]


def test_default_sweep_gpu_and_capping_to_free_memory():
    sizes = P.default_sizes(H100, P.DEVICE_OPS, quick=False)
    assert sizes[0] == 2 * MiB and sizes[-1] == 8 * GiB  # pow2 below 50 MiB / 16; the 8 GiB default top
    small = P.Facts("cuda", llc_bytes=50 * MiB, free_bytes=3 * GiB)
    # triad needs 3 buffers: 0.8 * 3 GiB / 3 = 819 MiB -> 512 MiB; copy alone (2 buffers) -> 1 GiB
    assert P.default_sizes(small, P.DEVICE_OPS, quick=False)[-1] == 512 * MiB
    assert P.default_sizes(small, ["copy"], quick=False)[-1] == GiB
    tiny = P.Facts("cpu", llc_bytes=32 * MiB, free_bytes=10 * MiB)
    assert P.default_sizes(tiny, P.DEVICE_OPS, quick=False) == [2 * MiB]


def test_default_plan_on_cpu_skips_transfers_once():
    plan = P.make_plan(CPU, MembwOptions())
    skipped = [p for p in plan.points if p.skip]
    assert [(p.op, p.bytes) for p in skipped] == [("h2d", 0), ("d2h", 0)]
    assert "accelerator" in skipped[0].skip
    run = [p for p in plan.points if not p.skip]
    assert len(run) == 4 * 9
    assert [p.op for p in run[:4]] == ["copy", "read", "write", "triad"]  # sizes outer, ops inner
    assert all(p.bytes * 1 >= 2 * MiB for p in run)


def test_gpu_plan_transfers_and_p2p():
    two = P.Facts("cuda", llc_bytes=50 * MiB, free_bytes=80 * 10**9, host_free_bytes=100 * GiB, gpu_count=2)
    plan = P.make_plan(two, MembwOptions())
    transfers = [p for p in plan.points if p.op in ("h2d", "d2h")]
    assert {p.host_memory for p in transfers} == {"pinned", "pageable"}
    assert max(p.bytes for p in transfers) == P.TRANSFER_DEFAULT_MAX_BYTES
    peers = [p for p in plan.points if p.op == "p2p"]
    assert sorted((p.direction, p.src, p.dst, p.bytes) for p in peers) == [
        ("read", 0, 1, 512 * MiB),
        ("read", 1, 0, 512 * MiB),
        ("write", 0, 1, 512 * MiB),
        ("write", 1, 0, 512 * MiB),
    ]
    assert not any(p.skip for p in plan.points)
    single = P.make_plan(H100, MembwOptions(ops="p2p,copy", sizes="1M"))
    assert single.points[0].op == "p2p" and "two or more" in single.points[0].skip
    xpu_facts = P.Facts("xpu", llc_bytes=MiB, free_bytes=GiB, host_free_bytes=GiB)
    xpu = P.make_plan(xpu_facts, MembwOptions(ops="h2d", sizes="1M"))
    assert [(p.host_memory, bool(p.skip)) for p in xpu.points] == [("pinned", True), ("pageable", False)]


def test_explicit_sizes_over_memory():
    with pytest.raises(UsageError, match="out of memory"):
        P.make_plan(CPU, MembwOptions(ops="copy", sizes="1T"))
    # copy (2 x 8 GiB) fits in 0.8 x 24 GiB, triad (3 x 8 GiB) does not: triad is a skipped point
    plan = P.make_plan(CPU, MembwOptions(ops="copy,triad", sizes="8G"))
    assert [(p.op, p.skip is None) for p in plan.points] == [("copy", True), ("triad", False)]
    assert plan.points[1].skip.startswith("out of memory")
    with pytest.raises(UsageError, match="at least one float32"):
        P.make_plan(CPU, MembwOptions(ops="copy", sizes="3"))


TWO_GPUS = P.Facts("cuda", llc_bytes=50 * MiB, free_bytes=80 * 10**9, host_free_bytes=100 * GiB, gpu_count=2)


def _p2p_sizes(plan) -> set:
    return {p.bytes for p in plan.points if p.op == "p2p"}


@pytest.mark.parametrize(
    "options",
    [
        MembwOptions(quick=True),
        MembwOptions(quick=True, ops="p2p"),  # what `mlbench run --profile quick` asks for
        MembwOptions(ops="copy,p2p"),
        MembwOptions(),
    ],
)
def test_p2p_keeps_its_large_size_in_every_profile(options):
    """A 4 MiB peer copy times the launch, not a 450 GB/s link: p2p runs at 512 MiB, --quick too."""
    plan = P.make_plan(TWO_GPUS, options)
    assert _p2p_sizes(plan) == {512 * MiB}
    peers = [p for p in plan.points if p.op == "p2p"]
    assert len(peers) == 2 * 2 and not any(p.skip for p in peers)  # 0->1 and 1->0, write and read
    assert P.OPS["p2p"].device_buffers * 512 * MiB <= P.MEMORY_FRACTION * TWO_GPUS.free_bytes


def test_p2p_size_without_sweep_sizes_and_capped_by_memory():
    quick = P.make_plan(TWO_GPUS, MembwOptions(quick=True))
    assert max(p.bytes for p in quick.points if p.op != "p2p") == GiB  # the quick sweep: 4 MiB and 1 GiB
    assert 512 * MiB in quick.sizes and 512 * MiB not in P.default_sizes(TWO_GPUS, P.DEVICE_OPS, quick=True)
    only_p2p = P.make_plan(TWO_GPUS, MembwOptions(quick=True, ops="p2p"))
    assert only_p2p.sizes == (512 * MiB,) and only_p2p.describe().startswith("p2p over 512MiB..512MiB")
    # 1 GiB free: the sweep stops at 256 MiB (triad's 3 buffers in 0.8 GiB), p2p's one buffer still fits 512 MiB
    short = P.Facts("cuda", llc_bytes=50 * MiB, free_bytes=GiB, host_free_bytes=100 * GiB, gpu_count=2)
    plan = P.make_plan(short, MembwOptions())
    assert max(p.bytes for p in plan.points if p.op == "triad") == 256 * MiB
    assert _p2p_sizes(plan) == {512 * MiB}
    # 512 MiB free: 0.8 x 512 MiB = 409.6 MiB, so p2p drops to the power of two below, 256 MiB
    tight = P.Facts("cuda", llc_bytes=50 * MiB, free_bytes=512 * MiB, host_free_bytes=100 * GiB, gpu_count=2)
    assert _p2p_sizes(P.make_plan(tight, MembwOptions(ops="p2p"))) == {256 * MiB}
    # explicit sizes still mean every size, for p2p too
    assert _p2p_sizes(P.make_plan(TWO_GPUS, MembwOptions(ops="p2p", sizes="4M,64M"))) == {4 * MiB, 64 * MiB}


def test_sizes_off_the_grammar_name_the_option():
    with pytest.raises(UsageError, match=r"bad --sizes '12Q': bad size '12Q'"):
        P.make_plan(CPU, MembwOptions(sizes="12Q"))
    with pytest.raises(UsageError, match="unknown op 'bogus'"):
        P.make_plan(CPU, MembwOptions(ops="copy,bogus"))


def test_options_round_trip_through_the_command_line():
    """Every option given comes back from to_argv, and click parses it into the same object."""
    from mlbench.membw.cli import command

    given = MembwOptions(
        device="cpu", quick=True, ops="copy,read", sizes="1M:64M:x4", rotate=False, out="x.jsonl", run_id="r7"
    )
    argv = given.to_argv()
    assert "--no-rotate" in argv and argv[argv.index("--sizes") + 1] == "1M:64M:x4"
    assert parse_options(command, MembwOptions, argv) == given
    assert MembwOptions().to_argv() == []


# -- peaks -------------------------------------------------------------------------------------


def _record(op, nbytes, gbps, status="ok", cache_resident=False):
    return {
        "probe": "membw",
        "status": status,
        "params": {"op": op, "bytes": nbytes, "cache_resident": cache_resident},
        "metrics": {"gbps": gbps},
    }


def test_peak_comes_from_large_sizes_only():
    llc = 32 * MiB
    records = [
        _record("copy", 4 * MiB, 90.0),
        _record("copy", 64 * MiB, 20.0),
        _record("copy", 128 * MiB, 25.0),
        _record("read", 128 * MiB, 30.0),
        _record("read", 256 * MiB, 99.0, status="error"),
        _record("h2d", GiB, 50.0),
    ]
    assert is_large(records[1], llc) and not is_large(records[0], llc)
    best, from_large = peaks(records, llc)
    assert from_large and {op: r["metrics"]["gbps"] for op, r in best.items()} == {"copy": 25.0, "read": 30.0}
    small_only = [_record("copy", MiB, 9.0, cache_resident=True), _record("copy", 2 * MiB, 7.0)]
    best, from_large = peaks(small_only, llc)
    assert not from_large and best["copy"]["metrics"]["gbps"] == 7.0


# -- the probe on the CPU ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_probe():
    from mlbench.device import resolve
    from mlbench.membw.probe import BandwidthProbe

    with BandwidthProbe(resolve("cpu"), quick=True) as probe:
        yield probe


def test_fill_random_is_never_zero():
    import torch

    from mlbench.membw.probe import fill_random

    t = torch.zeros(3 * (1 << 16) + 17)
    fill_random(t, seed=1)
    assert float(t.min()) >= 1.0 and float(t.max()) < 253.0
    assert len(torch.unique(t[: 1 << 16])) > 60000  # random, not a constant
    assert not torch.equal(t[: 1 << 16], t[1 << 16 : 2 << 16])  # blocks differ


@pytest.mark.parametrize("op", ["copy", "read", "write", "triad"])
def test_probe_measures_and_rates_follow_the_table(cpu_probe, op):
    nbytes = MiB + 12  # not a multiple of the alignment
    point = P.Point(op, nbytes, sets=P.rotation_sets(P.OPS[op], nbytes, 8 * MiB))
    result = cpu_probe.measure(point)
    assert result.status == "ok", result.error
    m, spec = result.metrics, P.OPS[op]
    time_s = m["time_ms"] / 1e3
    assert m["gbps"] == pytest.approx((spec.read + spec.written) * nbytes / time_s / 1e9)
    assert m["gbps_max"] >= m["gbps"] >= m["gbps_min"] > 0
    assert ("gbps_copied" in m) == (op == "copy")
    if op == "copy":
        assert m["gbps_copied"] == pytest.approx(m["gbps"] / 2)
    assert len(result.raw["time_ms"]) == m["reps"]
    assert result.params["sets"] == point.sets and result.params["bytes"] == nbytes


@pytest.mark.parametrize("op", ["copy", "read", "write", "triad"])
def test_verification_catches_wrong_results(cpu_probe, op):
    point = P.Point(op, 64 * 1024, sets=2)
    buffers = cpu_probe._device_buffers(point)
    buffers.call()
    buffers.call()
    assert cpu_probe._check(point, buffers) is None
    if op == "read":
        buffers.acc.fill_(0.5)
    else:
        buffers.sets[0][0 if op != "copy" else 1].fill_(7.0)  # the destination of set 0
    problem = cpu_probe._check(point, buffers)
    assert problem and op in problem


@pytest.mark.parametrize("op", ["h2d", "d2h"])
def test_transfer_machinery_on_host_tensors(cpu_probe, op):
    """The h2d/d2h buffers, call, check and rates, exercised with the 'device' side on the CPU."""
    point = P.Point(op, 256 * 1024, host_memory="pageable")
    buffers = cpu_probe._transfer_buffers(point)
    buffers.call()
    assert cpu_probe._check(point, buffers) is None
    src, dst = buffers.sets[0]
    dst[-1] = 0.0  # the last element is always sampled
    assert "sampled elements wrong" in cpu_probe._check(point, buffers)


def test_transfer_on_cpu_is_skipped(cpu_probe):
    result = cpu_probe.measure(P.Point("h2d", MiB, host_memory="pinned"))
    assert result.status == "skipped" and "accelerator" in result.error


def _largest_allocation_bytes(fn) -> int:
    """The largest block of memory any torch op allocated while `fn` ran (the CPU profiler's accounting)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max([e.cpu_memory_usage for e in prof.events()] + [0])


def test_read_check_extra_memory_is_bounded_whatever_the_buffer_size(cpu_probe, monkeypatch):
    """A float64 sum of the whole buffer allocates twice its size: the check sums a chunk at a time."""
    from mlbench.membw import probe as membw_probe

    chunk_bytes = 64 * 1024
    monkeypatch.setattr(membw_probe, "READ_CHECK_CHUNK_BYTES", chunk_bytes, raising=False)
    for nbytes in (MiB, 8 * MiB):
        point = P.Point("read", nbytes, sets=1)
        buffers = cpu_probe._device_buffers(point)
        buffers.call()
        problems = []

        def check(point=point, buffers=buffers, problems=problems):
            problems.append(cpu_probe._check(point, buffers))

        largest = _largest_allocation_bytes(check)
        assert problems == [None]
        assert 0 < largest <= chunk_bytes < 2 * nbytes  # one chunk of float64, not a float64 copy of the buffer


def test_read_check_sums_every_chunk_exactly_and_catches_one_bad_element(cpu_probe, monkeypatch):
    from mlbench.membw import probe as membw_probe

    monkeypatch.setattr(membw_probe, "READ_CHECK_CHUNK_BYTES", 8 * 1000, raising=False)  # 1000 float64s a chunk
    point = P.Point("read", 4 * 2503, sets=1)  # 2503 elements: two full chunks and a tail of 503
    buffers = cpu_probe._device_buffers(point)
    (src,) = buffers.sets[0]
    assert membw_probe.float64_sum(src) == pytest.approx(math.fsum(src.tolist()), rel=1e-12)
    buffers.call()
    assert cpu_probe._check(point, buffers) is None
    src[-1] = 1e5  # values are in [1, 253): one element in the tail chunk now outweighs 1e-3 of the sum
    problem = cpu_probe._check(point, buffers)
    assert problem and problem.startswith("read: sum")


# -- the CLI -----------------------------------------------------------------------------------


def _invoke(args, cwd):
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(group, ["membw", *args])
    finally:
        os.chdir(old)


def test_cli_quick_run_writes_valid_records(tmp_path):
    out = tmp_path / "r" / "membw.jsonl"
    result = _invoke(["--quick", "--device", "cpu", "--out", str(out)], tmp_path)
    assert result.exit_code == 0, result.output
    records = list(read_records(out))
    assert all(validate(r) == [] for r in records)
    ok = [r for r in records if r["status"] == "ok"]
    assert sorted({r["params"]["op"] for r in ok}) == ["copy", "read", "triad", "write"]
    from mlbench.device import resolve

    llc = resolve("cpu").info.llc_bytes or P.DEFAULT_LLC_BYTES
    small, large = sorted({r["params"]["bytes"] for r in ok})  # the quick plan: one size each side of the LLC
    assert small <= llc / 4 and large >= 4 * llc
    assert [r["params"]["op"] for r in records if r["status"] == "skipped"] == ["h2d", "d2h"]
    assert all(len(r["raw"]["time_ms"]) == r["metrics"]["reps"] for r in ok)
    assert (out.parent / "env.json").exists()
    assert "peak memory bandwidth" in result.stdout and "GB/s" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ops", "copy,bogus"], "unknown op 'bogus'"),
        (["--sizes", "12Q"], "bad --sizes '12Q': bad size"),
        (["--sizes", "1T"], "out of memory"),
        (["--sizes", "2"], "at least one float32"),
        (["--device", "cuda:7"], "cuda"),
        (["--device", "tpu"], "bad --device"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
    result = _invoke(["--quick", *args], tmp_path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_h2d_on_cpu_is_explained(tmp_path):
    out = tmp_path / "m.jsonl"
    result = _invoke(["--device", "cpu", "--ops", "h2d", "--out", str(out)], tmp_path)
    assert result.exit_code == 0
    (record,) = read_records(out)
    assert validate(record) == [] and record["status"] == "skipped" and "accelerator" in record["error"]
    assert "skipped: h2d needs an accelerator" in result.stdout


def test_cli_interrupt_keeps_records_and_exits_3(tmp_path, monkeypatch):
    from mlbench.membw.probe import BandwidthProbe

    real = BandwidthProbe.measure
    calls = {"n": 0}

    def measure(self, point):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, point)

    monkeypatch.setattr(BandwidthProbe, "measure", measure)
    out = tmp_path / "m.jsonl"
    result = _invoke(["--device", "cpu", "--ops", "copy", "--sizes", "1M,2M,4M", "--out", str(out)], tmp_path)
    assert result.exit_code == 3
    records = list(read_records(out))
    assert len(records) == 1 and records[0]["status"] == "ok" and records[0]["params"]["bytes"] == MiB


def test_cli_failed_check_exits_1(tmp_path, monkeypatch):
    from mlbench.membw.probe import BandwidthProbe

    monkeypatch.setattr(BandwidthProbe, "_check", lambda self, point, buffers: "1 of 4098 sampled elements wrong")
    out = tmp_path / "m.jsonl"
    result = _invoke(["--device", "cpu", "--ops", "copy", "--sizes", "1M", "--out", str(out)], tmp_path)
    assert result.exit_code == 1
    (record,) = read_records(out)
    assert validate(record) == [] and record["status"] == "error" and "check_failed" in record["flags"]


@pytest.mark.slow
def test_subprocess_module_entry_point(tmp_path):
    out = tmp_path / "m.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlbench.membw",
            "--quick",
            "--device",
            "cpu",
            "--ops",
            "copy,read",
            "--sizes",
            "64K:1M:x4",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * 3 and all(validate(r) == [] for r in records)
    assert all(math.isfinite(r["metrics"]["gbps"]) and r["metrics"]["gbps"] > 0 for r in records)
    before = sorted(tmp_path.iterdir())
    bad = subprocess.run(
        [sys.executable, "-m", "mlbench.membw", "--ops", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and sorted(tmp_path.iterdir()) == before


def test_help_does_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from mlbench.cli import group; "
        "r = CliRunner().invoke(group, ['membw', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--ops' in r.output and '--sizes' in r.output; "
        "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.gpu
def test_gpu_quick_run(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA/ROCm device")
    out = tmp_path / "m.jsonl"
    result = _invoke(["--quick", "--device", "cuda", "--out", str(out)], tmp_path)
    assert result.exit_code == 0, result.output
    records = list(read_records(out))
    assert records and all(validate(r) == [] for r in records)
    ok = {(r["params"]["op"], r["params"].get("host_memory")) for r in records if r["status"] == "ok"}
    assert {
        ("copy", None),
        ("read", None),
        ("write", None),
        ("triad", None),
        ("h2d", "pinned"),
        ("d2h", "pageable"),
    } <= ok
    assert all(r["params"]["timer"] == "device-events" for r in records if r["status"] == "ok")
