"""diskio plans: options -> a frozen list of IO tests. Pure Python, no IO, no torch.

A plan is the cartesian product modes x block sizes x job counts, in that order, each test
bounded by time (`duration_s`) and by bytes (`io_bytes`, all jobs together). Without
`--block-sizes`, sequential modes and the checkpoint use 1 MiB blocks and random modes 4 KiB
(the shapes ML storage sees: large streaming reads and writes, small random data-loader reads).

Accounting (fio's group-reporting convention, so the figures compare with fio's):
    gbps = bytes moved by completed IOs / the longest job's run time / 1e9
    iops = completed IOs / the longest job's run time
Latency is per IO: the time of the one synchronous read/write call (fio's clat with psync).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..exitcodes import UsageError
from ..options import ProbeOptions, option
from ..sizes import SizeError, format_bytes, parse_size, parse_sizes

MODES = ("seqwrite", "seqread", "randread", "randwrite", "checkpoint")
SEQUENTIAL = ("seqwrite", "seqread", "checkpoint")
WRITES = ("seqwrite", "randwrite", "checkpoint")
DEFAULT_MODES = ("seqwrite", "seqread", "randread", "randwrite", "checkpoint")
DEFAULT_BLOCK_BYTES = {"seq": 1 << 20, "rand": 4 << 10}
MIN_BLOCK_BYTES = 512  # the smallest O_DIRECT alignment any file system asks for
MAX_JOBS = 1024


@dataclass(frozen=True)
class IoTest:
    """One measurement: `jobs` processes doing `mode` IO of `block_size` bytes on a `file_size` file."""

    mode: str
    block_size: int
    jobs: int
    file_size: int
    direct: bool
    duration_s: float
    io_bytes: int  # upper bound on bytes moved, all jobs together

    @property
    def sequential(self) -> bool:
        return self.mode in SEQUENTIAL

    @property
    def writes(self) -> bool:
        return self.mode in WRITES

    def params(self) -> dict:
        """The record's params (the required keys first)."""
        return {
            "mode": self.mode,
            "block_size": self.block_size,
            "jobs": self.jobs,
            "direct": self.direct,
            "file_size": self.file_size,
            "duration_s": self.duration_s,
            "io_bytes_limit": self.io_bytes,
        }

    def __str__(self) -> str:
        return f"{self.mode} bs={format_bytes(self.block_size)} jobs={self.jobs}"


@dataclass(frozen=True)
class DiskioPlan:
    tests: tuple
    file_size: int
    direct: bool
    duration_s: float

    @property
    def needs_data_file(self) -> bool:
        return any(t.mode != "checkpoint" for t in self.tests)

    @property
    def checkpoint_bytes(self) -> int:
        """Extra space a checkpoint test needs while it runs (its files are removed after it)."""
        return self.file_size if any(t.mode == "checkpoint" for t in self.tests) else 0

    @property
    def result_count(self) -> int:
        """Results the plan yields: one per test, two per checkpoint (write, then read back)."""
        return sum(2 if t.mode == "checkpoint" else 1 for t in self.tests)

    def describe(self) -> str:
        kind = "direct" if self.direct else "buffered (page cache)"
        return (
            f"{len(self.tests)} test(s), {kind} IO, file {format_bytes(self.file_size)}, "
            f"{self.duration_s:g} s each at most"
        )

    def check_alignment(self, align_bytes: int) -> None:
        """A one-line UsageError when the file or a block size is not a multiple of the O_DIRECT alignment found."""
        if self.file_size % align_bytes:
            raise UsageError(
                f"--file-size {self.file_size} is not a multiple of this file system's O_DIRECT "
                f"alignment ({align_bytes} bytes)"
            )
        for test in self.tests:
            if test.block_size % align_bytes:
                raise UsageError(
                    f"block size {format_bytes(test.block_size)} is not a multiple of this file "
                    f"system's O_DIRECT alignment ({align_bytes} bytes)"
                )


@dataclass(frozen=True)
class DiskioOptions(ProbeOptions):
    directory: str = option(
        "--dir",
        default=".",
        show_default=True,
        metavar="PATH",
        help="A directory on the file system to test; a fresh mlbench-diskio-<random> directory is made "
        "inside it and removed at the end.",
    )
    modes: Optional[str] = option(
        "--modes", metavar="LIST", help="Comma list of seqwrite,seqread,randread,randwrite,checkpoint (default: all)."
    )
    block_sizes: Optional[str] = option(
        "--block-sizes",
        metavar="SIZES",
        help="IO sizes, e.g. 4K:16M:x4 (default: 1MiB for sequential modes and checkpoint, 4KiB for random).",
    )
    jobs: Optional[str] = option(
        "--jobs", metavar="LIST", help="Concurrent jobs (processes), a list: 1,4,16 (default; --quick: 1)."
    )
    file_size: Optional[str] = option(
        "--file-size", metavar="SIZE", help="Test file size (default 1GiB; --quick: 16MiB)."
    )
    duration_s: Optional[float] = option(
        "--duration", type=float, metavar="SECONDS", help="Time bound of each test (default 10; --quick: 0.3)."
    )
    io_size: Optional[str] = option(
        "--io-size",
        metavar="SIZE",
        help="Byte bound of each test, all jobs together (default: the file size, one pass).",
    )
    direct: bool = option(
        "--direct/--buffered",
        default=True,
        show_default=True,
        help="O_DIRECT (default) or through the page cache (labelled 'buffered': shows how much a cache flatters).",
    )
    allow_buffered: bool = option(
        "--allow-buffered",
        default=False,
        flag=True,
        help="Where the file system refuses O_DIRECT, measure buffered instead (labelled) rather than stop.",
    )


def parse_modes(text: Optional[str]) -> tuple:
    if text is None:
        return DEFAULT_MODES
    modes = []
    for item in text.split(","):
        mode = item.strip().lower()
        if mode not in MODES:
            raise UsageError(f"unknown --modes item {item.strip()!r}: choose from {','.join(MODES)}")
        if mode not in modes:
            modes.append(mode)
    return tuple(modes)


def _sizes(text: str, flag: str) -> list:
    try:
        return parse_sizes(text)
    except SizeError as exc:
        raise UsageError(f"bad {flag} {text!r}: {exc}") from None


def _size(text: str, flag: str) -> int:
    try:
        return parse_size(text)
    except SizeError as exc:
        raise UsageError(f"bad {flag} {text!r}: {exc}") from None


def block_sizes_for(mode: str, block_sizes: Optional[Sequence[int]]) -> list:
    if block_sizes:
        return list(block_sizes)
    return [DEFAULT_BLOCK_BYTES["seq" if mode in SEQUENTIAL else "rand"]]


def make_plan(options: DiskioOptions) -> DiskioPlan:
    """Validate the options and build the plan; every problem is a one-line `UsageError`."""
    o = options
    mode_list = parse_modes(o.modes)
    sizes = _sizes(o.block_sizes, "--block-sizes") if o.block_sizes is not None else None
    job_list = _sizes(o.jobs, "--jobs") if o.jobs is not None else ([1] if o.quick else [1, 4, 16])
    if o.file_size is None:
        file_bytes = (16 << 20) if o.quick else (1 << 30)
    else:
        file_bytes = _size(o.file_size, "--file-size")
    duration_s = o.duration_s if o.duration_s is not None else (0.3 if o.quick else 10.0)
    if not duration_s > 0:
        raise UsageError(f"--duration must be positive seconds, got {duration_s:g}")
    io_bytes = file_bytes if o.io_size is None else _size(o.io_size, "--io-size")  # default: one pass
    if io_bytes <= 0:
        raise UsageError("--io-size must be positive")
    for n in job_list:
        if not 1 <= n <= MAX_JOBS:
            raise UsageError(f"bad --jobs value {n}: expected 1..{MAX_JOBS}")
    if file_bytes % MIN_BLOCK_BYTES:
        raise UsageError(f"--file-size {file_bytes} is not a multiple of {MIN_BLOCK_BYTES} bytes (O_DIRECT alignment)")
    tests = []
    for mode in mode_list:
        for bs in block_sizes_for(mode, sizes):
            if bs % MIN_BLOCK_BYTES:
                raise UsageError(f"block size {bs} is not a multiple of {MIN_BLOCK_BYTES} bytes (O_DIRECT alignment)")
            if bs > file_bytes:
                raise UsageError(f"block size {format_bytes(bs)} is larger than --file-size {format_bytes(file_bytes)}")
            for n in job_list:
                if mode in SEQUENTIAL and file_bytes // n < bs:
                    raise UsageError(
                        f"--file-size {format_bytes(file_bytes)} is too small for {n} sequential jobs "
                        f"of {format_bytes(bs)} blocks (each job needs its own region of at least "
                        f"one block)"
                    )
                tests.append(IoTest(mode, bs, n, file_bytes, o.direct, float(duration_s), io_bytes))
    return DiskioPlan(tests=tuple(tests), file_size=file_bytes, direct=o.direct, duration_s=float(duration_s))
