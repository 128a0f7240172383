"""diskio: plans, accounting, stamps and alignment, the safety rules, and the CLI on real O_DIRECT files.

Every test works in pytest's tmp_path (ext4 on the root disk here, where O_DIRECT works); the
"no file left behind" checks look for the run's `mlbench-diskio-*` directory after each run.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlbench.cli import group
from mlbench.diskio import engine, probe, safety
from mlbench.diskio.plan import DiskioOptions, IoTest, make_plan
from mlbench.exitcodes import UsageError
from mlbench.records import read_records, validate

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30


def leftovers(directory: Path) -> list:
    return sorted(p.name for p in Path(directory).glob(f"{safety.WORKSPACE_PREFIX}*"))


def invoke(args, **kwargs):
    return CliRunner().invoke(group, ["diskio", *args], **kwargs)


# --- plans -----------------------------------------------------------------------------------------


def test_plan_is_the_product_with_per_family_default_block_sizes():
    plan = make_plan(DiskioOptions(modes="seqread,randread", jobs="1,4", file_size="64M", duration_s=2.0))
    assert [(t.mode, t.block_size, t.jobs) for t in plan.tests] == [
        ("seqread", 1 << 20, 1),
        ("seqread", 1 << 20, 4),
        ("randread", 4096, 1),
        ("randread", 4096, 4),
    ]
    assert all(t.file_size == 64 << 20 and t.io_bytes == 64 << 20 and t.direct for t in plan.tests)
    explicit = make_plan(
        DiskioOptions(modes="randwrite", block_sizes="4K:16K", jobs="2", file_size="1M", duration_s=1.0, io_size="8M")
    )
    assert [t.block_size for t in explicit.tests] == [4096, 8192, 16384]
    assert explicit.tests[0].io_bytes == 8 << 20


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(modes="seqread,bogus"), "unknown --modes item 'bogus'"),
        (dict(block_sizes="1000"), "not a multiple of 512"),
        (dict(block_sizes="2M", file_size="1M"), "larger than --file-size"),
        (dict(modes="seqread", block_sizes="1M", jobs="4", file_size="2M"), "too small for 4 sequential jobs"),
        (dict(jobs="0"), "sizes must be positive"),
        (dict(duration_s=0), "--duration must be positive"),
        (dict(file_size="1X"), "bad --file-size"),
    ],
)
def test_plan_rejects_bad_input_with_one_line(kwargs, words):
    with pytest.raises(UsageError) as info:
        make_plan(DiskioOptions(**kwargs))
    assert words in str(info.value) and "\n" not in str(info.value)


# --- accounting and statistics (hand-computed) ----------------------------------------------------


def test_io_metrics_follow_fio_group_accounting():
    a = engine.JobResult(
        bytes=4 * 4096,
        ios=4,
        runtime_ns=2_000_000,
        lat_ns=array("q", [10_000, 20_000, 30_000, 40_000]),
        interval_bytes=[4096, 4096, 4096, 4096],
    )
    b = engine.JobResult(
        bytes=2 * 4096, ios=2, runtime_ns=1_000_000, lat_ns=array("q", [50_000, 60_000]), interval_bytes=[8192, 0, 0]
    )
    metrics, raw, _ = probe.io_metrics([a, b], interval_s=0.1)
    assert metrics["bytes"] == 6 * 4096 and metrics["ios"] == 6
    assert metrics["gbps"] == pytest.approx(6 * 4096 / 2e-3 / 1e9)  # all bytes / the longest job
    assert metrics["iops"] == pytest.approx(6 / 2e-3)
    # latencies 10..60 us: type-7 percentiles
    assert metrics["lat_us_p50"] == pytest.approx(35.0)
    assert metrics["lat_us_p99"] == pytest.approx(59.5)
    assert metrics["lat_us_p999"] == pytest.approx(59.95)
    assert metrics["lat_us_min"] == 10 and metrics["lat_us_max"] == 60
    # full intervals are those every job completed (3 - 1 = 2): (4096+8192), (4096+0) bytes per 0.1 s
    assert raw["gbps_per_100ms"] == pytest.approx([12288 / 0.1 / 1e9, 4096 / 0.1 / 1e9])
    assert raw["lat_us_sample"] == [10, 20, 30, 40, 50, 60]


def test_raw_latency_sample_is_bounded():
    n = probe.RAW_LAT_SAMPLES * 3 + 1
    job = engine.JobResult(bytes=n * 4096, ios=n, runtime_ns=10**9, lat_ns=array("q", range(1000, 1000 + n)))
    metrics, raw, _ = probe.io_metrics([job])
    assert len(raw["lat_us_sample"]) <= probe.RAW_LAT_SAMPLES
    assert metrics["lat_us_p50"] == pytest.approx((1000 + (n - 1) / 2) / 1e3)


# --- stamps and alignment ----------------------------------------------------------------------------


@pytest.mark.parametrize("align", [512, 4096, 8192])
def test_aligned_buffer_starts_on_the_boundary(align):
    import ctypes

    buf = engine.AlignedBuffer(64 << 10, align)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf.view))
    assert address % align == 0 and len(buf.view) == 64 << 10
    buf.fill_random(1)
    assert buf.words.any() and len(set(buf.words[:64].tolist())) == 64  # random, never zeros
    buf.close()


def test_stamps_mark_every_4k_and_catch_a_wrong_block():
    buf = engine.AlignedBuffer(16384)
    stamps = engine.Stamps(salt=0xABC, block_size=16384)
    stamps.write(buf.words, 8192, 16384)
    assert [int(buf.words[i]) for i in (0, 512, 1024, 1536)] == [0xABC ^ (8192 + k * 4096) for k in range(4)]
    assert stamps.check(buf.words, 8192, 16384) == 0
    assert stamps.check(buf.words, 12288, 16384) == 4  # the data of another offset
    small = engine.Stamps(salt=1, block_size=512)
    assert small.check(buf.words, 512, 512) == 0  # a 512-byte IO inside a 4 KiB block carries no stamp
    buf.close()


def test_dio_alignment_from_statx(iodir):
    path = iodir / "f"
    path.write_bytes(b"x")
    mem, offset = safety.dio_alignment(path)
    if mem is None:
        pytest.skip("kernel or libc without statx DIOALIGN")
    assert mem > 0 and offset > 0 and mem & (mem - 1) == 0 and offset & (offset - 1) == 0


# --- the engine on real O_DIRECT files ---------------------------------------------------------------


def _data_file(directory: Path, size: int, salt: int) -> str:
    path = directory / "data"
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    engine.lay_out(str(path), size, True, salt)
    return str(path)


def test_byte_bound_accounting_and_read_check(iodir):
    path = _data_file(iodir, 4 << 20, salt=7)
    specs = [
        engine.JobSpec(
            path, False, True, 64 << 10, job * (2 << 20), 2 << 20, True, 3 << 20, None, salt=7, seed=job, verify_every=4
        )
        for job in range(2)
    ]
    results = engine.run_jobs(specs)
    for res in results:
        assert res.bytes == 3 << 20 and res.ios == 48 and len(res.lat_ns) == 48  # wraps around its 2 MiB region
        assert res.verified_ios == 12 and res.bad_stamps == 0  # reads 1, 5, 9, ..., 45
        assert sum(res.interval_bytes) == res.bytes


def test_time_bound_and_a_wrong_salt_is_caught(iodir):
    path = _data_file(iodir, 1 << 20, salt=7)
    spec = engine.JobSpec(path, False, True, 4096, 0, 1 << 20, False, 1 << 40, 0.2, salt=8, seed=3, verify_every=1)
    t0 = time.monotonic()
    (res,) = engine.run_jobs([spec])
    assert 0.2 <= res.runtime_ns / 1e9 < 1.0 and time.monotonic() - t0 < 5
    assert res.ios > 0 and res.bad_stamps == res.ios  # every 4 KiB read checked, none matches
    # through the probe, a failed check is an error record
    job = engine.JobResult(bytes=4096, ios=1, runtime_ns=10**6, lat_ns=array("q", [1000]), bad_stamps=1, first_bad="x")
    ws = safety.Workspace(iodir).open()
    try:
        target = probe.Target(safety.find_mount(iodir), True, 4096, 4096, "statx")
        plan = make_plan(DiskioOptions(modes="randread", block_sizes="4K", jobs="1", file_size="1M", duration_s=1.0))
        out = probe.DiskioProbe(ws, target, plan)._result(
            {"mode": "randread"}, [job], IoTest("randread", 4096, 1, 1 << 20, True, 1.0, 1 << 20)
        )
    finally:
        ws.close()
    assert out.status == "error" and "check_failed" in out.flags and "read-back check failed" in out.error


def test_misaligned_direct_io_fails_loudly(iodir):
    path = _data_file(iodir, 1 << 20, salt=1)
    spec = engine.JobSpec(path, False, True, 4096, 100, 8192, True, 8192, None, salt=1)  # offset 100: misaligned
    with pytest.raises(OSError) as info:
        engine.run_jobs([spec])
    assert info.value.errno == errno.EINVAL


# --- IO buffers: huge pages (one scatter-gather segment per IO), recorded -------------------------------


def physical_runs(address: int, size: int):
    """Physically contiguous runs of [address, address + size) in base pages (None unless root shows PFNs)."""
    import mmap
    import struct

    pages = size // mmap.PAGESIZE
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(address // mmap.PAGESIZE * 8)
        pfns = [e & ((1 << 55) - 1) for e in struct.unpack(f"{pages}Q", f.read(pages * 8))]
    if not all(pfns):
        return None
    return 1 + sum(1 for a, b in zip(pfns, pfns[1:]) if b != a + 1)


def test_thp_size_is_read_from_sysfs(tmp_path):
    def thp(enabled, size):
        (tmp_path / "enabled").write_text(enabled + "\n")
        (tmp_path / "hpage_pmd_size").write_text(size + "\n")
        return engine.thp_bytes(str(tmp_path))

    assert thp("always [madvise] never", "2097152") == 2 << 20
    assert thp("[always] madvise never", "2097152") == 2 << 20
    assert thp("always madvise [never]", "2097152") == 0
    assert thp("[always] madvise never", str(512 << 20)) == 0  # arm64 with 64 KiB pages: 512 MiB per job, no
    assert engine.thp_bytes(str(tmp_path / "missing")) == 0


def test_anon_huge_bytes_reads_the_mapping_that_holds_the_address(tmp_path):
    smaps = tmp_path / "smaps"
    smaps.write_text(
        "7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \n"
        "Size:               4096 kB\nAnonHugePages:      2048 kB\nVmFlags: rd wr mr mw me ac hg\n"
        "7f0000400000-7f0000500000 rw-p 00000000 00:00 0 \n"
        "Size:               1024 kB\nAnonHugePages:         0 kB\nVmFlags: rd wr mr mw me ac nh\n"
    )
    assert engine.anon_huge_bytes(0x7F0000200000, str(smaps)) == 2 << 20
    assert engine.anon_huge_bytes(0x7F0000400000, str(smaps)) == 0
    assert engine.anon_huge_bytes(0x7F0000500000, str(smaps)) is None
    assert engine.anon_huge_bytes(0x7F0000200000, str(tmp_path / "missing")) is None


def test_io_buffer_is_huge_pages_when_the_kernel_allows():
    huge = engine.thp_bytes()
    buf = engine.AlignedBuffer(1 << 20, 512)
    small = engine.AlignedBuffer(1 << 20, 512, huge_pages=False)
    page = engine.AlignedBuffer(4096, 4096)  # one page is one segment anyway: never worth a huge page
    try:
        for b in (buf, small, page):
            b.fill_random(1)
        assert small.pages() == page.pages() == engine.BASE_PAGES
        if not huge:
            assert buf.pages() == engine.BASE_PAGES
            pytest.skip("transparent huge pages are off here: buffers are base pages")
        assert buf.address % huge == 0 and buf.pages() == engine.HUGE_PAGES
        assert engine.anon_huge_bytes(buf.address) >= huge
        runs = physical_runs(buf.address, 1 << 20)
        if runs is not None:  # root: the 1 MiB buffer is one physically contiguous piece, one segment per IO
            assert runs == 1
    finally:
        for b in (buf, small, page):
            b.close()


def test_records_say_what_backed_the_io_buffers(iodir):
    from mlbench.diskio.plan import DiskioPlan

    path = _data_file(iodir, 4 << 20, salt=5)
    kinds = {}
    for huge in (True, False):
        spec = engine.JobSpec(path, False, True, 1 << 20, 0, 4 << 20, True, 2 << 20, None, salt=5, huge_pages=huge)
        (res,) = engine.run_jobs([spec])
        assert res.bad_stamps == 0
        kinds[huge] = res.buffer_pages
    expected = engine.HUGE_PAGES if engine.thp_bytes() else engine.BASE_PAGES
    assert kinds == {True: expected, False: engine.BASE_PAGES}
    assert probe.buffer_pages([engine.JobResult(buffer_pages="thp")] * 2) == "thp"
    assert probe.buffer_pages([engine.JobResult(buffer_pages="thp"), engine.JobResult(buffer_pages="4k")]) == "mixed"
    job = engine.JobResult(bytes=4096, ios=1, runtime_ns=10**6, lat_ns=array("q", [1000]), buffer_pages="thp")
    ws = safety.Workspace(iodir).open()
    try:
        target = probe.Target(safety.find_mount(iodir), True, 4096, 4096, "statx")
        test = IoTest("seqread", 1 << 20, 1, 4 << 20, True, 1.0, 4 << 20)
        plan = DiskioPlan(tests=(test,), file_size=4 << 20, direct=True, duration_s=1.0)
        out = probe.DiskioProbe(ws, target, plan)._result({"mode": "seqread"}, [job], test)
    finally:
        ws.close()
    assert out.params["buffer_pages"] == "thp"


# --- safety rules --------------------------------------------------------------------------------------


def test_target_dir_refusals(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="no such directory"):
        safety.check_target_dir(tmp_path / "missing")
    (tmp_path / "file").write_text("user data")
    with pytest.raises(UsageError, match="not a directory"):
        safety.check_target_dir(tmp_path / "file")
    with pytest.raises(UsageError, match="is a character device"):
        safety.check_target_dir("/dev/null")
    blocks = [p for p in Path("/dev").iterdir() if p.is_block_device()] if Path("/dev").is_dir() else []
    if blocks:
        with pytest.raises(UsageError, match="is a block device"):
            safety.check_target_dir(blocks[0])
    monkeypatch.setattr(safety.os, "access", lambda path, mode: False)
    with pytest.raises(UsageError, match="not writable"):
        safety.check_target_dir(tmp_path)


def test_workspace_creates_fresh_files_only_and_removes_only_its_own(tmp_path):
    ws = safety.Workspace(tmp_path).open()
    assert ws.path.parent == tmp_path and ws.path.name.startswith(safety.WORKSPACE_PREFIX)
    assert stat.S_IMODE(os.stat(ws.path).st_mode) == 0o700
    ws.new_file("data")
    with pytest.raises(FileExistsError):
        ws.new_file("data")  # never reopens an existing file
    foreign = ws.path / "not-ours"
    foreign.write_text("keep me")
    ws.close()
    assert foreign.read_text() == "keep me"  # what diskio did not create is never removed
    assert not (foreign.parent / "data").exists()


@pytest.mark.parametrize(
    "used_gib, need_gib, refused, warned",
    [
        (70, 5, False, False),  # 75%
        (70, 15, False, True),  # 85%: warn
        (70, 25, True, False),  # 95%: refuse
        (10, 95, True, False),  # more than available
    ],
)
def test_capacity_rule(used_gib, need_gib, refused, warned):
    usage = safety.FsUsage(total_bytes=100 * GiB, used_bytes=used_gib * GiB, avail_bytes=(100 - used_gib) * GiB)
    refusal, warning = safety.capacity_verdict(usage, need_gib * GiB)
    assert (refusal is not None) == refused and (warning is not None) == warned


def test_find_mount_takes_the_longest_prefix(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "23 22 0:5 / /data rw - xfs /dev/nvme0n1 rw\n"
        "24 22 0:6 / /data2 rw - nfs srv:/x rw\n"
    )
    assert safety.find_mount("/data/sub", str(info)) == safety.Mount("xfs", "/dev/nvme0n1", "/data")
    assert safety.find_mount("/data2", str(info)).fs_type == "nfs"
    assert safety.find_mount("/home", str(info)).fs_type == "ext4"


# --- the CLI -------------------------------------------------------------------------------------------

QUICK = ["--quick", "--file-size", "4M", "--duration", "0.2"]


def test_quick_run_writes_valid_records_and_cleans_up(iodir, tmp_path):
    out = tmp_path / "r" / "diskio.jsonl"
    result = invoke([*QUICK, "--dir", str(iodir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = list(read_records(out))
    assert [(r["params"]["mode"], r["params"].get("phase")) for r in records] == [
        ("seqwrite", None),
        ("seqread", None),
        ("randread", None),
        ("randwrite", None),
        ("checkpoint", "write"),
        ("checkpoint", "read"),
    ]
    for r in records:
        assert validate(r) == [] and r["status"] == "ok"
        assert r["device"]["type"] == "storage" and r["device"]["index"] is None
        assert r["params"]["direct"] is True and "buffered" not in r.get("flags", [])
        m = r["metrics"]
        assert m["iops"] == pytest.approx(m["ios"] / m["runtime_s"])
        assert m["gbps"] == pytest.approx(m["bytes"] / m["runtime_s"] / 1e9)
        assert m["lat_us_p50"] <= m["lat_us_p99"] <= m["lat_us_p999"] <= m["lat_us_max"]
        assert r["raw"]["lat_us_sample"]
    reads = [r for r in records if "read" in (r["params"]["mode"], r["params"].get("phase"))]
    assert all(r["metrics"]["verified_ios"] > 0 and r["metrics"]["bad_stamps"] == 0 for r in reads)
    assert records[-2]["metrics"]["bytes"] == 4 << 20  # the checkpoint writes the whole file size
    assert (out.parent / "env.json").exists()
    assert leftovers(iodir) == [] and os.listdir(iodir) == []
    assert "6 test(s) measured" in result.output


def test_buffered_runs_are_labelled(iodir, tmp_path):
    out = tmp_path / "b.jsonl"
    result = invoke([*QUICK, "--modes", "seqread", "--buffered", "--dir", str(iodir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (record,) = read_records(out)
    assert record["params"]["direct"] is False and "buffered" in record["flags"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--modes", "seqread,nope"], "unknown --modes item"),
        (["--block-sizes", "1000"], "multiple of 512"),
        (["--file-size", "12Q"], "bad --file-size"),
        (["--device", "cuda"], "use auto or cpu"),
        (["--dir", "/dev/null"], "is a character device"),
        (["--dir", "MISSING"], "no such directory"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(iodir, tmp_path, args, words):
    out = tmp_path / "res" / "diskio.jsonl"
    args = [a.replace("MISSING", str(tmp_path / "missing")) for a in args]
    base = [*QUICK, "--out", str(out)] + ([] if "--dir" in args else ["--dir", str(iodir)])
    result = invoke([*base, *args])
    assert result.exit_code == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.parent.exists() and leftovers(iodir) == []


def test_direct_io_refused_is_one_line_or_a_labelled_fallback(iodir, tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "dio_alignment", lambda path: (0, 0))
    out = tmp_path / "d.jsonl"
    refused = invoke([*QUICK, "--modes", "seqread", "--dir", str(iodir), "--out", str(out)])
    assert refused.exit_code == 2 and "O_DIRECT refused" in refused.stderr
    assert not out.exists() and leftovers(iodir) == []
    fallback = invoke([*QUICK, "--modes", "seqread", "--allow-buffered", "--dir", str(iodir), "--out", str(out)])
    assert fallback.exit_code == 0, fallback.output
    (record,) = read_records(out)
    assert {"buffered", "direct_refused"} <= set(record["flags"]) and record["params"]["direct"] is False
    assert leftovers(iodir) == []


def _usage_at(fill: float):
    return lambda path: safety.FsUsage(
        total_bytes=100 * GiB, used_bytes=int(fill * 100 * GiB), avail_bytes=int((1 - fill) * 100 * GiB)
    )


def test_a_test_that_would_fill_past_90_percent_is_refused(iodir, tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "fs_usage", _usage_at(0.899))
    out = tmp_path / "c.jsonl"
    result = invoke(
        [
            *QUICK,
            "--file-size",
            "1G",
            "--block-sizes",
            "1M",
            "--modes",
            "seqwrite,checkpoint",
            "--dir",
            str(iodir),
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 1
    records = list(read_records(out))
    assert len(records) == 3 and all(r["status"] == "skipped" and "refused" in r["error"] for r in records)
    assert all(validate(r) == [] for r in records)
    assert leftovers(iodir) == []


def test_above_80_percent_warns_and_flags(iodir, tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "fs_usage", _usage_at(0.85))
    out = tmp_path / "w.jsonl"
    result = invoke([*QUICK, "--modes", "seqread", "--dir", str(iodir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: the file system will be 85.0% full" in result.stderr
    (record,) = read_records(out)
    assert "fs_over_80pct" in record["flags"] and record["metrics"]["fs_fill_pct"] == pytest.approx(85.0)


def _failing_loop(code):
    def loop(fd, spec, buf, stamps, stop, result):
        raise OSError(code, os.strerror(code))

    return loop


def test_disk_full_stops_cleans_up_and_exits_1(iodir, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "_io_loop", _failing_loop(errno.ENOSPC))  # inherited by the forked jobs
    out = tmp_path / "f.jsonl"
    result = invoke([*QUICK, "--modes", "seqwrite,seqread", "--dir", str(iodir), "--out", str(out)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no space left" in errors[0] and "test files removed" in errors[0]
    records = list(read_records(out))
    assert len(records) == 1 and records[0]["status"] == "error" and validate(records[0]) == []
    assert leftovers(iodir) == []


def test_an_io_error_fails_that_test_and_still_cleans_up(iodir, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "_io_loop", _failing_loop(errno.EIO))
    out = tmp_path / "e.jsonl"
    result = invoke([*QUICK, "--modes", "randread,randwrite", "--dir", str(iodir), "--out", str(out)])
    assert result.exit_code == 1
    records = list(read_records(out))
    assert [r["status"] for r in records] == ["error", "error"] and "Input/output error" in records[0]["error"]
    assert leftovers(iodir) == []


def test_help_imports_no_torch_numpy_pandas_or_matplotlib():
    code = (
        "import sys\nfrom mlbench.cli import main\n"
        "try:\n    main(['diskio', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'pandas', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "--block-sizes" in out.stdout and "HEAVY []" in out.stdout


@pytest.mark.slow
def test_module_entry_point_runs(iodir, tmp_path):
    out = tmp_path / "m.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlbench.diskio",
            *QUICK,
            "--modes",
            "randread",
            "--jobs",
            "2",
            "--dir",
            str(iodir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = read_records(out)
    assert validate(record) == [] and record["params"]["jobs"] == 2 and record["status"] == "ok"
    assert leftovers(iodir) == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_keeps_records_cleans_up_and_exits_3(iodir, tmp_path, signum):
    out = tmp_path / "s.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlbench.diskio",
            "--modes",
            "seqread,randread,seqwrite",
            "--block-sizes",
            "64K",
            "--jobs",
            "2",
            "--file-size",
            "8M",
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
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.05)
    assert leftovers(iodir), "the run should be inside its workspace"
    children = f"/proc/{proc.pid}/task/{proc.pid}/children"
    while time.monotonic() < deadline and not open(children).read().strip():  # a job process: inside a test
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    records = list(read_records(out))
    assert 1 <= len(records) < 3 and all(validate(r) == [] for r in records)
    assert leftovers(iodir) == [] and os.listdir(iodir) == []
