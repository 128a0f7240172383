"""The IO engine: synchronous O_DIRECT reads and writes, one process and one file descriptor per job.

Like fio's `psync` engine (and fio's default of a process per job): each job does one
`os.preadv` / `os.pwrite` at a time into its own buffer; the Python work per IO (a few bytecodes:
offset, two clock reads, an append) stays far below the IO's own time, and no job ever waits for
another's interpreter lock. All jobs start together at a barrier.

IO buffers larger than a page sit in transparent huge pages where the kernel allows it (private
anonymous memory, aligned to the huge page, `madvise(MADV_HUGEPAGE)`): physically contiguous, so an
O_DIRECT IO of up to 2 MiB reaches the device as one scatter-gather segment, every run. Buffers in
4 KiB pages (fio's default `malloc`) are as contiguous as the page allocator happens to make them:
a 1 MiB IO is anywhere between 1 and 256 segments, and devices that pay per segment (virtio disks
in VMs) then swing up to 2x from run to run. The page cache's large folios keep buffered reads, a
data loader's usual path, at few segments too. What a job got is in `JobResult.buffer_pages`.

Data is never zeros: each job's buffer is random bytes, and every 4 KiB of the file carries an
8-byte stamp `salt ^ file_offset` written in front of it, so no two 4 KiB blocks are alike
(storage that compresses or deduplicates gains nothing) and a read can check it got the right
block: the first read and every `verify_every`-th after it compare their stamps. Jobs look at the stop
flag every 100 ms, with their throughput sample.

Random offsets are uniform over the job's range, block-aligned (fio's `norandommap` behaviour).
A job's quota is rounded up to whole blocks.
Sequential jobs walk their own region and wrap to its start when a time bound outlasts it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import mmap
import multiprocessing
import os
import signal
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

STAMP_BYTES = 4096  # one stamp per 4 KiB of file
INTERVAL_NS = 100_000_000  # throughput samples every 100 ms
LAYOUT_CHUNK_BYTES = 1 << 20
_FORK = multiprocessing.get_context("fork")
OFFSET_BATCH = 4096  # random offsets drawn per numpy call
HUGE_PAGE_MAX_BYTES = 32 << 20  # larger PMD pages (arm64 with 64 KiB pages: 512 MiB) cost too much per job
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage"


class ShortIO(OSError):
    """A read or write moved fewer bytes than asked (end of file, or the file system cut it short)."""


@dataclass(frozen=True)
class JobSpec:
    """What one job does: which file, which range, how much, for how long."""

    path: str
    write: bool
    direct: bool
    block_size: int
    range_start: int  # first byte of the job's range
    range_bytes: int  # a multiple of block_size
    sequential: bool
    quota_bytes: int  # stop after this many bytes ...
    duration_s: Optional[float]  # ... or after this long (None: no time bound)
    salt: int
    seed: int = 0
    align_bytes: int = 4096  # buffer memory alignment
    verify_every: int = 64
    fsync_at_end: bool = False
    huge_pages: bool = True  # IO buffer in transparent huge pages where the kernel allows (AlignedBuffer)


@dataclass
class JobResult:
    bytes: int = 0
    ios: int = 0
    runtime_ns: int = 0  # from the common start to the last IO's end (fsync included when asked)
    fsync_ns: int = 0
    lat_ns: array = field(default_factory=lambda: array("q"))
    interval_bytes: list = field(default_factory=list)  # bytes completed in each INTERVAL_NS
    verified_ios: int = 0
    bad_stamps: int = 0
    first_bad: Optional[str] = None
    error: Optional[BaseException] = None
    buffer_pages: str = ""  # what backs the IO buffer: "thp" or the base page ("4k"); see AlignedBuffer.pages


BASE_PAGES = f"{mmap.PAGESIZE // 1024}k"  # buffer_pages of a buffer in base pages ("4k" on x86-64)
HUGE_PAGES = "thp"


def _read_sysfs(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def thp_bytes(sysfs: str = THP_SYSFS) -> int:
    """The transparent huge page size an `madvise(MADV_HUGEPAGE)` mapping can get here; 0 when none.

    0 when THP is `never` (the selected word in `enabled` is in brackets), when the kernel has no
    THP, or when its PMD page is larger than HUGE_PAGE_MAX_BYTES.
    """
    enabled = _read_sysfs(f"{sysfs}/enabled")
    if "[always]" not in enabled and "[madvise]" not in enabled:
        return 0
    size = _read_sysfs(f"{sysfs}/hpage_pmd_size")
    size_bytes = int(size) if size.isdigit() else 0
    return size_bytes if 0 < size_bytes <= HUGE_PAGE_MAX_BYTES else 0


def anon_huge_bytes(address: int, smaps: str = "/proc/self/smaps") -> Optional[int]:
    """AnonHugePages of the mapping that holds `address` (bytes), None when /proc cannot say."""
    try:
        with open(smaps, encoding="ascii", errors="replace") as f:
            inside = False
            for line in f:
                head = line.split(None, 1)[0] if line.strip() else ""
                if "-" in head and not head.endswith(":"):
                    low, _, high = head.partition("-")
                    inside = int(low, 16) <= address < int(high, 16)
                elif inside and head == "AnonHugePages:":
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class AlignedBuffer:
    """`size` bytes of private anonymous memory starting at an `align`-byte boundary.

    With `huge_pages` (and a buffer larger than a page, where THP is on), the memory is aligned to
    the huge page and advised MADV_HUGEPAGE, so it is physically contiguous in huge-page pieces (2 MiB
    on x86-64); else it is advised MADV_NOHUGEPAGE (base pages, however the allocator scatters them).
    `pages` says what the kernel gave, once the buffer has been written.
    """

    def __init__(self, size: int, align: int = 4096, huge_pages: bool = True):
        huge = thp_bytes() if huge_pages and size > mmap.PAGESIZE else 0
        align = max(align, huge)
        span = -(-size // huge) * huge if huge else size  # whole huge pages: a partial one is never huge
        self._map = mmap.mmap(-1, span + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        advice = getattr(mmap, "MADV_HUGEPAGE" if huge else "MADV_NOHUGEPAGE", None)
        if advice is not None:
            try:
                self._map.madvise(advice)
            except OSError:  # a kernel without THP refuses the advice: base pages, as asked or not
                pass
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        start = (-address) % align
        self.address = address + start
        self.view = memoryview(self._map)[start : start + size]
        self.words = np.frombuffer(self.view, dtype=np.uint64)

    def fill_random(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.words[:] = rng.integers(0, 2**64, size=self.words.size, dtype=np.uint64, endpoint=False)

    def pages(self) -> str:
        """HUGE_PAGES when huge pages back the whole (written) buffer, else BASE_PAGES."""
        size_bytes = len(self.view)
        huge = anon_huge_bytes(self.address) or 0
        return HUGE_PAGES if size_bytes > mmap.PAGESIZE and huge >= size_bytes else BASE_PAGES

    def close(self) -> None:
        self.words = None
        try:
            self.view.release()
            self._map.close()
        except BufferError:  # a traceback still holds a view of it: the garbage collector frees it
            pass


class Stamps:
    """The 8-byte stamps at every 4 KiB of the file that an IO at `offset` of `length` bytes covers."""

    def __init__(self, salt: int, block_size: int):
        self.salt = np.uint64(salt)
        self.steps = np.arange(block_size // STAMP_BYTES + 1, dtype=np.uint64) * np.uint64(STAMP_BYTES)

    def _slots(self, offset: int, length: int):
        first = (-offset) % STAMP_BYTES
        if first >= length:
            return None, None
        count = (length - first - 1) // STAMP_BYTES + 1
        start = first // 8
        index = slice(start, start + (count - 1) * (STAMP_BYTES // 8) + 1, STAMP_BYTES // 8)
        values = (self.steps[:count] + np.uint64(offset + first)) ^ self.salt
        return index, values

    def write(self, words: np.ndarray, offset: int, length: int) -> None:
        index, values = self._slots(offset, length)
        if index is not None:
            words[index] = values

    def check(self, words: np.ndarray, offset: int, length: int) -> int:
        """How many stamps in the buffer differ from what was written at `offset` (0 = all good)."""
        index, values = self._slots(offset, length)
        if index is None:
            return 0
        return int(np.count_nonzero(words[index] != values))


def open_flags(write: bool, direct: bool) -> int:
    flags = (os.O_WRONLY if write else os.O_RDONLY) | os.O_NOFOLLOW
    if direct:
        flags |= os.O_DIRECT
    return flags


def run_job(spec: JobSpec, start_gate, stop: "StopFlag", result: JobResult) -> None:
    """The body of one job. Errors land in `result.error` and stop the other jobs."""
    fd = -1
    buf = None
    try:
        fd = os.open(spec.path, open_flags(spec.write, spec.direct))
        buf = AlignedBuffer(spec.block_size, spec.align_bytes, spec.huge_pages)
        buf.fill_random(spec.seed)
        result.buffer_pages = buf.pages()
        stamps = Stamps(spec.salt, spec.block_size)
        start_gate.wait()
        _io_loop(fd, spec, buf, stamps, stop, result)
    except threading.BrokenBarrierError:
        pass
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
        result.error = exc
        stop.set()
        try:
            start_gate.abort()
        except Exception:
            pass
    finally:
        if fd >= 0:
            os.close(fd)
        if buf is not None:
            buf.close()


def job_offsets(spec: JobSpec) -> Iterator[int]:
    """The job's IO offsets, endless: its region in order, wrapping; or uniform random blocks.

    Random offsets come from numpy in batches, so the per-IO cost is one step of a C iterator.
    """
    bs = spec.block_size
    if spec.sequential:
        return itertools.cycle(range(spec.range_start, spec.range_start + spec.range_bytes, bs))
    rng = np.random.default_rng(spec.seed)
    blocks = spec.range_bytes // bs

    def batches() -> Iterator[list]:
        while True:
            yield (rng.integers(0, blocks, size=OFFSET_BATCH, dtype=np.int64) * bs + spec.range_start).tolist()

    return itertools.chain.from_iterable(batches())


def _io_loop(fd: int, spec: JobSpec, buf: AlignedBuffer, stamps: Stamps, stop: "StopFlag", result: JobResult) -> None:
    """The timed loop: as little Python per IO as possible (one branch for writes, counters, two clocks)."""
    bs = spec.block_size
    view, words, bufs = buf.view, buf.words, [buf.view]
    write = spec.write
    lat_append = result.lat_ns.append
    intervals = result.interval_bytes
    clock = time.perf_counter_ns
    preadv, pwrite = os.preadv, os.pwrite
    is_stopped = stop.is_set
    quota_ios = -(-spec.quota_bytes // bs)
    verify_every = spec.verify_every
    verify_at = 1 if not write else 1 << 62
    ios = last_ios = 0
    t_start = clock()
    deadline = t_start + int(spec.duration_s * 1e9) if spec.duration_s else 1 << 62
    next_tick = t_start + INTERVAL_NS
    t1 = t_start
    for offset in job_offsets(spec):
        if write:
            stamps.write(words, offset, bs)
            t0 = clock()
            n = pwrite(fd, view, offset)
        else:
            t0 = clock()
            n = preadv(fd, bufs, offset)
        t1 = clock()
        if n != bs:
            raise ShortIO(errno.EIO, f"{'write' if write else 'read'} of {bs} bytes at offset {offset} moved {n}")
        lat_append(t1 - t0)
        ios += 1
        if ios == verify_at:
            verify_at += verify_every
            result.verified_ios += 1
            bad = stamps.check(words, offset, bs)
            if bad:
                result.bad_stamps += bad
                if result.first_bad is None:
                    result.first_bad = f"{bad} stamp(s) wrong in the {bs}-byte read at offset {offset}"
        if t1 >= next_tick:  # every 100 ms: a throughput sample, and a look at the stop flag
            while t1 >= next_tick:
                intervals.append((ios - last_ios) * bs)
                last_ios = ios
                next_tick += INTERVAL_NS
            if is_stopped():
                break
        if ios >= quota_ios or t1 >= deadline:
            break
    if spec.fsync_at_end:
        f0 = clock()
        os.fsync(fd)
        t1 = clock()
        result.fsync_ns = t1 - f0
    if ios > last_ios:
        intervals.append((ios - last_ios) * bs)
    result.bytes, result.ios, result.runtime_ns = ios * bs, ios, t1 - t_start


class StopFlag:
    """A stop signal the jobs check after every IO: one byte of shared memory, seen across fork."""

    def __init__(self):
        self._byte = mmap.mmap(-1, 1)  # anonymous maps are MAP_SHARED: the children see writes

    def set(self) -> None:
        self._byte[0] = 1

    def is_set(self) -> bool:
        return self._byte[0] == 1


def _job_process(spec: JobSpec, gate, stop: StopFlag, conn) -> None:
    # the parent turns Ctrl-C / SIGTERM into `stop`; a job finishes its IO and reports
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result = JobResult()
    run_job(spec, gate, stop, result)
    conn.send(result)
    conn.close()


def _reap(proc, recv, timeout_s: float = 5.0) -> None:
    """Wait for a job process to end, discarding what it still sends (raw bytes: an interrupted `recv` may
    have left half a message): a result nobody reads would hold the job in a full pipe. Killed after
    `timeout_s`; a job never started is left alone."""
    if proc.pid is None:
        return
    deadline = time.monotonic() + timeout_s
    while proc.is_alive() and time.monotonic() < deadline:
        if recv.poll(0.01):
            os.read(recv.fileno(), 1 << 20)
    if proc.is_alive():
        proc.kill()
    proc.join()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) until the block ends: none lands inside a fork, where an
    at-fork handler would swallow its KeyboardInterrupt or a forked job would be left unknown to the parent."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_jobs(specs: list, stop: Optional[StopFlag] = None) -> list:
    """Run jobs concurrently, one forked process each (fio's default), started together; return their results.

    Processes, not threads: each job then has its own interpreter lock, so at tens of thousands of
    IOPS per job no job waits for another's Python (threads lose a third of fio's 4 KiB IOPS here).
    An error in any job stops the others and is re-raised here; so is KeyboardInterrupt (Ctrl-C or
    SIGTERM turned into it), after every job has stopped and closed its file.
    """
    stop = stop or StopFlag()
    gate = _FORK.Barrier(len(specs))
    pipes = [_FORK.Pipe(duplex=False) for _ in specs]
    procs = [
        _FORK.Process(target=_job_process, args=(spec, gate, stop, send), name=f"diskio-job{i}", daemon=True)
        for i, (spec, (_, send)) in enumerate(zip(specs, pipes))
    ]
    results: list = [None] * len(specs)
    try:
        with _signals_deferred():
            for proc in procs:
                proc.start()
        for i, (recv, _) in enumerate(pipes):
            while results[i] is None:
                if recv.poll(0.05):
                    results[i] = recv.recv()
                elif not procs[i].is_alive() and not recv.poll(0):
                    results[i] = JobResult(error=ChildProcessError(f"IO job {i} died (exit code {procs[i].exitcode})"))
                    stop.set()
    except BaseException:
        stop.set()
        gate.abort()
        raise
    finally:
        for proc, (recv, _) in zip(procs, pipes):
            _reap(proc, recv)
        for recv, send in pipes:
            recv.close()
            send.close()
    for res in results:
        if res.error is not None:
            raise res.error
    return results


def lay_out(
    path: str,
    size_bytes: int,
    direct: bool,
    salt: int,
    align_bytes: int = 4096,
    seed: int = 12345,
    stop: Optional["StopFlag"] = None,
) -> None:
    """Fill `path` (a file of ours) with `size_bytes` of stamped random data, then fsync it."""
    chunk = min(LAYOUT_CHUNK_BYTES, size_bytes)
    buf = AlignedBuffer(chunk, align_bytes)
    buf.fill_random(seed)
    stamps = Stamps(salt, chunk)
    fd = os.open(path, open_flags(True, direct))
    try:
        offset = 0
        while offset < size_bytes:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            n = min(chunk, size_bytes - offset)
            stamps.write(buf.words, offset, n)
            written = os.pwrite(fd, buf.view[:n], offset)
            if written != n:
                raise ShortIO(errno.EIO, f"layout write at offset {offset} moved {written} of {n} bytes")
            offset += n
        os.fsync(fd)
    finally:
        os.close(fd)
        buf.close()
