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
        """The record's params (the contract's keys first)."""
        return {"mode": self.mode, "block_size": self.block_size, "jobs": self.jobs, "direct": self.direct,
                "file_size": self.file_size, "duration_s": self.duration_s, "io_bytes_limit": self.io_bytes}

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

    def describe(self) -> str:
        kind = "direct" if self.direct else "buffered (page cache)"
        return (f"{len(self.tests)} test(s), {kind} IO, file {format_bytes(self.file_size)}, "
                f"{self.duration_s:g} s each at most")


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


def _sizes(text, flag: str) -> list:
    if isinstance(text, (list, tuple)):
        return list(text)
    try:
        return parse_sizes(text)
    except SizeError as exc:
        raise UsageError(f"bad {flag} {text!r}: {exc}") from None


def block_sizes_for(mode: str, block_sizes: Optional[Sequence[int]]) -> list:
    if block_sizes:
        return list(block_sizes)
    return [DEFAULT_BLOCK_BYTES["seq" if mode in SEQUENTIAL else "rand"]]


def make_plan(
    modes: Optional[str] = None,
    block_sizes=None,
    jobs=None,
    file_size=None,
    duration_s: Optional[float] = None,
    direct: bool = True,
    io_size=None,
    quick: bool = False,
) -> DiskioPlan:
    """Validate the options and build the plan; every problem is a one-line `UsageError`."""
    mode_list = parse_modes(modes)
    sizes = _sizes(block_sizes, "--block-sizes") if block_sizes is not None else None
    job_list = _sizes(jobs, "--jobs") if jobs is not None else ([1] if quick else [1, 4, 16])
    if file_size is None:
        file_bytes = (16 << 20) if quick else (1 << 30)
    else:
        try:
            file_bytes = file_size if isinstance(file_size, int) else parse_size(file_size)
        except SizeError as exc:
            raise UsageError(f"bad --file-size {file_size!r}: {exc}") from None
    if duration_s is None:
        duration_s = 0.3 if quick else 10.0
    if not duration_s > 0:
        raise UsageError(f"--duration must be positive seconds, got {duration_s:g}")
    if io_size is None:
        io_bytes = file_bytes  # one pass over the file, unless the time bound comes first
    else:
        try:
            io_bytes = io_size if isinstance(io_size, int) else parse_size(io_size)
        except SizeError as exc:
            raise UsageError(f"bad --io-size {io_size!r}: {exc}") from None
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
                    raise UsageError(f"--file-size {format_bytes(file_bytes)} is too small for {n} sequential jobs "
                                     f"of {format_bytes(bs)} blocks (each job needs its own region of at least one block)")
                tests.append(IoTest(mode, bs, n, file_bytes, direct, float(duration_s), io_bytes))
    return DiskioPlan(tests=tuple(tests), file_size=file_bytes, direct=direct, duration_s=float(duration_s))
