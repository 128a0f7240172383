"""Collectives plans: the op table (nccl-tests' byte accounting and busbw factors, as data),
dtypes, default sweeps and option validation. No torch here.

Byte accounting, exactly as NVIDIA/nccl-tests (`src/<op>.cu`, `*GetCollByteCount` and `*GetBw`):

- a requested size of SIZE bytes becomes `count = SIZE // element_size` elements;
- ops that split a buffer between ranks (all_gather, reduce_scatter, all_to_all) use a per-rank
  count of `count // n` rounded down to a multiple of 16 bytes (`& -(16/eltSize)`);
- the record's `count` is nccl-tests' `count` column (its `paramcount`), and `bytes` is S, the
  size column: the larger of one rank's send and receive buffers;
- algbw = S / t (GB/s, 1e9 B/s) and busbw = algbw x factor(n).

| op             | count (per call)        | send      | recv      | S           | busbw factor |
|----------------|-------------------------|-----------|-----------|-------------|--------------|
| all_reduce     | SIZE / e                | count     | count     | count * e   | 2(n-1)/n     |
| all_gather     | (SIZE/e/n) aligned      | count     | count * n | count*n*e   | (n-1)/n      |
| reduce_scatter | (SIZE/e/n) aligned      | count * n | count     | count*n*e   | (n-1)/n      |
| all_to_all     | (SIZE/e/n) aligned      | count * n | count * n | count*n*e   | (n-1)/n      |
| broadcast      | SIZE / e                | count     | count     | count * e   | 1            |
| sendrecv       | SIZE / e                | count     | count     | count * e   | 1            |

One rank crosses no bus: with n = 1 every busbw is reported as 0 (nccl-tests would print the
broadcast and sendrecv algbw there; a copy inside one device is not a bus figure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from ..exitcodes import UsageError
from ..sizes import SizeError, format_bytes, parse_sizes

ALIGN_BYTES = 16  # nccl-tests rounds per-rank counts of split ops down to 16 bytes

# busbw factor formulas, by the name the op table uses (n = number of ranks)
FACTORS = {
    "2(n-1)/n": lambda n: 2.0 * (n - 1) / n,
    "(n-1)/n": lambda n: (n - 1) / n,
    "1": lambda n: 1.0,
}


@dataclass(frozen=True)
class OpSpec:
    """One collective: how nccl-tests counts its bytes, and which torch placements exist.

    `send_per_count`, `recv_per_count`, `s_per_count` are "1" or "n": how many times `count`
    elements each buffer / S holds. `placements` lists what torch.distributed can express:
    torch's all_reduce and broadcast work on one tensor (in place only); all_to_all and
    send/recv have no in-place form.
    """

    name: str
    split: bool
    send_per_count: str
    recv_per_count: str
    s_per_count: str
    factor: str
    placements: tuple
    reduces: bool  # a sum: repeated in place, values grow n-fold per call

    def counts(self, size_bytes: int, element_bytes: int, world_size: int) -> "Counts":
        count = size_bytes // element_bytes
        if self.split:
            align = max(1, ALIGN_BYTES // element_bytes)
            count = (count // world_size) // align * align
        times = {"1": 1, "n": world_size}
        return Counts(
            count=count,
            send_count=count * times[self.send_per_count],
            recv_count=count * times[self.recv_per_count],
            s_bytes=count * times[self.s_per_count] * element_bytes,
        )

    def busbw_factor(self, world_size: int) -> float:
        return 0.0 if world_size <= 1 else FACTORS[self.factor](world_size)


@dataclass(frozen=True)
class Counts:
    count: int  # nccl-tests' count column
    send_count: int  # elements in one rank's send buffer
    recv_count: int  # elements in one rank's receive buffer
    s_bytes: int  # S: nccl-tests' size column, the bytes algbw divides by time


OOP, IP = "out_of_place", "in_place"
OPS = {
    op.name: op
    for op in (
        OpSpec("all_reduce", False, "1", "1", "1", "2(n-1)/n", (IP,), reduces=True),
        OpSpec("all_gather", True, "1", "n", "n", "(n-1)/n", (OOP, IP), reduces=False),
        OpSpec("reduce_scatter", True, "n", "1", "n", "(n-1)/n", (OOP, IP), reduces=True),
        OpSpec("all_to_all", True, "n", "n", "n", "(n-1)/n", (OOP,), reduces=False),
        OpSpec("broadcast", False, "1", "1", "1", "1", (IP,), reduces=False),
        OpSpec("sendrecv", False, "1", "1", "1", "1", (OOP,), reduces=False),
    )
}
DEFAULT_OPS = ("all_reduce", "all_gather")
MODES = ("throughput", "latency")


def algbw_gbps(s_bytes: int, time_s: float) -> float:
    """S / t in GB/s (1e9 B/s)."""
    return s_bytes / time_s / 1e9 if time_s > 0 else math.nan


def busbw_gbps(op: OpSpec, s_bytes: int, time_s: float, world_size: int) -> float:
    return algbw_gbps(s_bytes, time_s) * op.busbw_factor(world_size)


@dataclass(frozen=True)
class DType:
    """A collectives dtype and the integer range it sums exactly (for the correctness check)."""

    name: str
    torch_name: str
    element_bytes: int
    max_exact_int: int  # 2^(mantissa bits + 1): every integer up to it is exact
    max_finite: float
    aliases: tuple = ()


DTYPES = {
    d.name: d
    for d in (
        DType("fp32", "float32", 4, 2 ** 24, 3.4028234663852886e38, ("float32", "float")),
        DType("bf16", "bfloat16", 2, 2 ** 8, 3.3895313892515355e38, ("bfloat16",)),
        DType("fp16", "float16", 2, 2 ** 11, 65504.0, ("float16", "half")),
    )
}


def parse_dtype(text: str) -> DType:
    key = (text or "").strip().lower()
    for dtype in DTYPES.values():
        if key == dtype.name or key in dtype.aliases:
            return dtype
    raise UsageError(f"unknown --dtype {text!r}: choose from {', '.join(DTYPES)} (or float32, bfloat16, float16)")


def fill_levels(dtype: DType, world_size: int) -> int:
    """V: inputs are integers 1..V, so that a sum over all ranks (<= n*V) stays exact in dtype."""
    return max(1, min(4, dtype.max_exact_int // max(1, world_size)))


def max_repeats_in_place(op: OpSpec, dtype: DType, world_size: int, levels: int) -> Optional[int]:
    """How many in-place calls of a reducing op fit before the values (x n per call) overflow dtype.

    None when there is no limit (the op does not reduce, or one rank).
    """
    if not op.reduces or world_size <= 1:
        return None
    headroom = dtype.max_finite / 2 / levels
    return max(1, int(math.log(headroom) / math.log(world_size)))


def parse_ops(text: Optional[str]) -> tuple:
    if text is None:
        return DEFAULT_OPS
    names = [t.strip().lower().replace("-", "_") for t in text.split(",")]
    if not any(names) or "" in names:
        raise UsageError(f"bad --ops {text!r}: expected a comma list of {','.join(OPS)}")
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise UsageError(f"unknown op {unknown[0]!r} in --ops: choose from {','.join(OPS)}")
    return tuple(dict.fromkeys(names))


def parse_modes(text: Optional[str]) -> tuple:
    if text is None:
        return MODES
    names = [t.strip().lower() for t in text.split(",")]
    unknown = [n for n in names if n not in MODES]
    if unknown or not names:
        raise UsageError(f"bad --modes {text!r}: choose from {','.join(MODES)}")
    return tuple(dict.fromkeys(names))


def default_sizes(device_type: str, quick: bool) -> list:
    """8 B to 8 GiB doubling on accelerators (capped by free memory at run time); less on the CPU."""
    if quick:
        return parse_sizes("8:1M:x16")
    if device_type == "cpu":
        return parse_sizes("8:64M")
    return parse_sizes("8:8G")


@dataclass(frozen=True)
class Point:
    """One measurement: an op at one size, placement and timing mode."""

    op: OpSpec
    size_bytes: int  # what was asked for
    counts: Counts
    in_place: bool
    mode: str

    def buffer_bytes(self, element_bytes: int) -> int:
        """Device memory this point allocates on one rank: its buffers, plus a pristine copy of the
        input for reducing ops (restored before every sample so repeated sums cannot overflow)."""
        c = self.counts
        elements = max(c.send_count, c.recv_count) if self.in_place else c.send_count + c.recv_count
        if self.op.reduces:
            elements += c.send_count
        return elements * element_bytes


@dataclass(frozen=True)
class CollectivesPlan:
    ops: tuple
    sizes: tuple
    dtype: DType
    modes: tuple
    timeout_s: float
    quick: bool

    def points(self, world_size: int) -> list:
        """Per op, per size: throughput for each placement torch has, then latency (one placement)."""
        out = []
        for name in self.ops:
            op = OPS[name]
            for size in self.sizes:
                counts = op.counts(size, self.dtype.element_bytes, world_size)
                if "throughput" in self.modes:
                    out += [Point(op, size, counts, placement == IP, "throughput") for placement in op.placements]
                if "latency" in self.modes:
                    out.append(Point(op, size, counts, op.placements[0] == IP, "latency"))
        return out

    def describe(self) -> str:
        sizes = f"{format_bytes(self.sizes[0])}..{format_bytes(self.sizes[-1])} ({len(self.sizes)} sizes)"
        return f"{','.join(self.ops)} {self.dtype.name} {sizes}, {'+'.join(self.modes)}, timeout {self.timeout_s:g}s"


def make_plan(ops: Optional[str], sizes: Optional[Sequence[int] | str], dtype: str, modes: Optional[str],
              timeout_s: float, quick: bool, device_type: str) -> CollectivesPlan:
    """Validate the options and build the plan; every bad input is a UsageError (exit 2)."""
    op_names = parse_ops(ops)
    dt = parse_dtype(dtype)
    mode_names = parse_modes(modes)
    if not timeout_s or timeout_s < 1 or not math.isfinite(timeout_s):
        raise UsageError(f"--timeout must be at least 1 second, got {timeout_s}")
    if sizes is None:
        size_list = default_sizes(device_type, quick)
    elif isinstance(sizes, str):
        try:
            size_list = parse_sizes(sizes)
        except SizeError as exc:
            raise UsageError(f"bad --sizes {sizes!r}: {exc}") from None
    else:
        size_list = list(sizes)
    return CollectivesPlan(tuple(op_names), tuple(size_list), dt, tuple(mode_names), float(timeout_s), quick)


def too_small_reason(point: Point, dtype: DType, world_size: int) -> Optional[str]:
    """Why a point has nothing to move (a size below one element, or below 16 B per rank)."""
    if point.counts.count > 0:
        return None
    if point.op.split:
        least = world_size * max(ALIGN_BYTES, dtype.element_bytes)
        return (f"{format_bytes(point.size_bytes)} gives no {dtype.name} elements per rank for {point.op.name} over "
                f"{world_size} ranks (per-rank counts round down to 16 B, as nccl-tests): use >= {format_bytes(least)}")
    return f"{format_bytes(point.size_bytes)} is smaller than one {dtype.name} element"
