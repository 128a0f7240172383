"""Collectives plans: the options, the op table (nccl-tests' byte accounting and busbw factors, as
data), dtypes, default sweeps, the check's inputs (`Fill`), which points fit in memory, and the
link rule (`above_link_spec`). No torch here.

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

busbw counts the ring's traffic, so a switch that sums in the network (NVLink SHARP / NVLS,
InfiniBand SHARP) lets all_reduce show more busbw than the link carries; `above_link_spec` is the
one rule for how much more (the probe's flag and the report's verdict both use it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from ..exitcodes import UsageError
from ..options import ProbeOptions, option
from ..sizes import SizeError, format_bytes, parse_sizes

ALIGN_BYTES = 16  # nccl-tests rounds per-rank counts of split ops down to 16 bytes


class Factor(str, Enum):
    """A busbw factor (n = number of ranks), named by its formula as nccl-tests' PERFORMANCE notes write it."""

    RING_REDUCE = "2(n-1)/n"  # all_reduce
    RING_SPLIT = "(n-1)/n"  # all_gather, reduce_scatter, all_to_all
    IN_SWITCH = "2(n-1)/(n+1)"  # all_reduce's ring traffic over the traffic when a switch sums (NVLS, SHARP)
    ONE = "1"

    def __call__(self, n: int) -> float:
        if self is Factor.RING_REDUCE:
            return 2.0 * (n - 1) / n
        if self is Factor.RING_SPLIT:
            return (n - 1) / n
        if self is Factor.IN_SWITCH:
            return 2.0 * (n - 1) / (n + 1)
        return 1.0


class PerCount(str, Enum):
    """How many times `count` elements a buffer (or S) holds: once, or once per rank."""

    ONE = "1"
    RANKS = "n"

    def times(self, world_size: int) -> int:
        return world_size if self is PerCount.RANKS else 1


class Placement(str, Enum):
    OUT_OF_PLACE = "out_of_place"
    IN_PLACE = "in_place"


@dataclass(frozen=True)
class OpSpec:
    """One collective: how nccl-tests counts its bytes, and which torch placements exist.

    `send_per_count`, `recv_per_count`, `s_per_count` (`PerCount`): how many times `count`
    elements each buffer / S holds. `placements` lists what torch.distributed can express:
    torch's all_reduce and broadcast work on one tensor (in place only); all_to_all and
    send/recv have no in-place form.
    """

    name: str
    split: bool
    send_per_count: PerCount
    recv_per_count: PerCount
    s_per_count: PerCount
    factor: Factor
    placements: tuple  # of Placement
    reduces: bool  # a sum: repeated in place, values grow n-fold per call
    in_switch_gain: Factor = Factor.ONE  # ring traffic / traffic when a switch sums (NVLS, SHARP): busbw's headroom

    def counts(self, size_bytes: int, element_bytes: int, world_size: int) -> "Counts":
        count = size_bytes // element_bytes
        if self.split:
            align = max(1, ALIGN_BYTES // element_bytes)
            count = (count // world_size) // align * align
        return Counts(
            count=count,
            send_count=count * self.send_per_count.times(world_size),
            recv_count=count * self.recv_per_count.times(world_size),
            s_bytes=count * self.s_per_count.times(world_size) * element_bytes,
        )

    def busbw_factor(self, world_size: int) -> float:
        return 0.0 if world_size <= 1 else self.factor(world_size)


@dataclass(frozen=True)
class Counts:
    count: int  # nccl-tests' count column
    send_count: int  # elements in one rank's send buffer
    recv_count: int  # elements in one rank's receive buffer
    s_bytes: int  # S: nccl-tests' size column, the bytes algbw divides by time


OOP, IP = Placement.OUT_OF_PLACE, Placement.IN_PLACE
ONE, N = PerCount.ONE, PerCount.RANKS
OPS = {
    op.name: op
    for op in (
        # NVLS all_reduce: each rank sends S + S/n and receives S/n + S, the ring 2(n-1)/n S each way
        OpSpec(
            "all_reduce", False, ONE, ONE, ONE, Factor.RING_REDUCE, (IP,), reduces=True, in_switch_gain=Factor.IN_SWITCH
        ),
        OpSpec("all_gather", True, ONE, N, N, Factor.RING_SPLIT, (OOP, IP), reduces=False),
        OpSpec("reduce_scatter", True, N, ONE, N, Factor.RING_SPLIT, (OOP, IP), reduces=True),
        OpSpec("all_to_all", True, N, N, N, Factor.RING_SPLIT, (OOP,), reduces=False),
        OpSpec("broadcast", False, ONE, ONE, ONE, Factor.ONE, (IP,), reduces=False),
        OpSpec("sendrecv", False, ONE, ONE, ONE, Factor.ONE, (OOP,), reduces=False),
    )
}
DEFAULT_OPS = ("all_reduce", "all_gather")
MODES = ("throughput", "latency")


def algbw_gbps(s_bytes: int, time_s: float) -> float:
    """S / t in GB/s (1e9 B/s)."""
    return s_bytes / time_s / 1e9 if time_s > 0 else math.nan


def busbw_gbps(op: OpSpec, s_bytes: int, time_s: float, world_size: int) -> float:
    return algbw_gbps(s_bytes, time_s) * op.busbw_factor(world_size)


def busbw_ceiling_gbps(op_name: str, world_size: int, link_gbps: float) -> float:
    """The most busbw one node's links can show for an op: the link rate, times what a switch that
    sums in the network saves (all_reduce: 2(n-1)/(n+1), 1.56 on 8 ranks; other ops: nothing)."""
    op = OPS.get(op_name)
    gain = op.in_switch_gain(world_size) if op is not None and world_size > 1 else 1.0
    return link_gbps * max(1.0, gain)


def above_link_spec(op_name: str, busbw: float, world_size: int, link_gbps: Optional[float], nodes: int = 1) -> bool:
    """Whether a busbw (GB/s) within one node is more than its links allow, in-switch sums included:
    suspect timing, clocks or link figure. False without a link figure or across nodes (the NIC
    is not in the registry)."""
    if not link_gbps or nodes != 1 or not math.isfinite(busbw):
        return False
    return busbw > busbw_ceiling_gbps(op_name, world_size, link_gbps)


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
        DType("fp32", "float32", 4, 2**24, 3.4028234663852886e38, ("float32", "float")),
        DType("bf16", "bfloat16", 2, 2**8, 3.3895313892515355e38, ("bfloat16",)),
        DType("fp16", "float16", 2, 2**11, 65504.0, ("float16", "half")),
    )
}


def parse_dtype(text: str) -> DType:
    key = (text or "").strip().lower()
    for dtype in DTYPES.values():
        if key == dtype.name or key in dtype.aliases:
            return dtype
    raise UsageError(f"unknown --dtype {text!r}: choose from {', '.join(DTYPES)} (or float32, bfloat16, float16)")


MAX_FILL_LEVELS = 4


@dataclass(frozen=True)
class Fill:
    """The inputs of the exact check for one op on `world_size` ranks.

    Element i of rank r holds f(r, i) = (h(i) + j) mod `levels` + 1 where j = (r - i) mod n, when
    j < `active`, else 0: for each element, the `active` ranks after it (cyclically) carry small
    integers and the others zeros, so every rank's data is checked somewhere. A reducing op has
    active * levels <= the dtype's largest exact integer: every partial sum, in any order and at
    every hop's rounding, is an exact integer. Other ops move values unchanged: every rank is active.
    """

    levels: int  # V: values are 1..V
    active: int  # k: ranks with a non-zero value, per element
    world_size: int


def fill_for(op: OpSpec, dtype: DType, world_size: int) -> Fill:
    """The check's inputs for `op`: exact sums for reducing ops at any world size."""
    n = max(1, world_size)
    if not op.reduces:
        return Fill(MAX_FILL_LEVELS, n, n)
    levels = max(1, min(MAX_FILL_LEVELS, dtype.max_exact_int // n))
    return Fill(levels, min(n, dtype.max_exact_int // levels), n)


def max_repeats_in_place(op: OpSpec, dtype: DType, world_size: int, levels: int) -> Optional[int]:
    """How many in-place calls of a reducing op fit before the values (at most x n per call) overflow dtype.

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


BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class CollectivesOptions(ProbeOptions):
    ops: Optional[str] = option(
        "--ops",
        metavar="OPS",
        help="Comma list of all_reduce,all_gather,reduce_scatter,broadcast,all_to_all,sendrecv "
        "[default: all_reduce,all_gather].",
    )
    sizes: Optional[str] = option(
        "--sizes",
        metavar="SIZES",
        help="Payload sizes S in bytes (nccl-tests' size column): a list or range, e.g. 8:8G or 1M,64M "
        "[default: 8:8G on GPUs (capped by free memory), 8:64M on the CPU, 8:1M:x16 with --quick].",
    )
    dtype: str = option("--dtype", default="fp32", show_default=True, help="fp32, bf16 or fp16.")
    modes: Optional[str] = option(
        "--modes",
        metavar="MODES",
        help="throughput (calls queued back to back, nccl-tests' main column), latency (one call per "
        "sample: median and p99) [default: both].",
    )
    timeout_s: float = option(
        "--timeout",
        default=300.0,
        type=float,
        show_default=True,
        help="Seconds without progress after which every surviving rank gives up (exit 3).",
    )
    backend: str = option(
        "--backend", default="auto", show_default=True, help="auto (NCCL/RCCL on GPUs, gloo on the CPU), nccl, gloo."
    )
    nproc_per_node: Optional[int] = option(
        "--nproc-per-node",
        type=("min", 1),
        forward=False,
        help="Outside torchrun: re-launch through torchrun with N ranks on this node.",
    )


def parse_backend(text: str) -> str:
    if text not in BACKENDS:
        raise UsageError(f"bad --backend {text!r}: choose auto, nccl or gloo")
    return text


def make_plan(device_type: str, options: CollectivesOptions) -> CollectivesPlan:
    """Validate the options and build the plan; every bad input is a UsageError (exit 2)."""
    o = options
    op_names = parse_ops(o.ops)
    dt = parse_dtype(o.dtype)
    mode_names = parse_modes(o.modes)
    parse_backend(o.backend)
    timeout_s = o.timeout_s
    if not timeout_s or timeout_s < 1 or not math.isfinite(timeout_s):
        raise UsageError(f"--timeout must be at least 1 second, got {timeout_s}")
    if o.sizes is None:
        size_list = default_sizes(device_type, o.quick)
    else:
        try:
            size_list = parse_sizes(o.sizes)
        except SizeError as exc:
            raise UsageError(f"bad --sizes {o.sizes!r}: {exc}") from None
    return CollectivesPlan(tuple(op_names), tuple(size_list), dt, tuple(mode_names), float(timeout_s), o.quick)


# --- memory: which points fit on every rank ----------------------------------------------------

CHUNK_ELEMENTS = 1 << 23  # the check fills and compares in chunks: bounded int64 temporaries at any size
CHECK_BYTES = 4 * 8 * CHUNK_ELEMENTS  # besides its buffers a point needs room for a few per chunk
USABLE_FRACTION = 0.85


def memory_limit_bytes(free_bytes: Optional[int]) -> Optional[int]:
    """What one point may allocate on a rank, given the smallest free memory over all ranks."""
    if not free_bytes:
        return None
    return max(0, int(free_bytes * USABLE_FRACTION) - CHECK_BYTES)


def split_by_memory(points: list, element_bytes: int, limit_bytes: Optional[int]) -> tuple:
    """(points that fit, points that do not) under `limit_bytes` per rank (None: no limit)."""
    if limit_bytes is None:
        return list(points), []
    fits = [p for p in points if p.buffer_bytes(element_bytes) <= limit_bytes]
    too_big = [p for p in points if p.buffer_bytes(element_bytes) > limit_bytes]
    return fits, too_big


def too_big_reason(point: Point, element_bytes: int, limit_bytes: int) -> str:
    need = point.buffer_bytes(element_bytes)
    return (
        f"out of memory: needs {format_bytes(need)} per rank, {format_bytes(limit_bytes)} usable "
        f"({USABLE_FRACTION:.0%} of the smallest free memory)"
    )


def too_small_reason(point: Point, dtype: DType, world_size: int) -> Optional[str]:
    """Why a point has nothing to move (a size below one element, or below 16 B per rank)."""
    if point.counts.count > 0:
        return None
    if point.op.split:
        least = world_size * max(ALIGN_BYTES, dtype.element_bytes)
        return (
            f"{format_bytes(point.size_bytes)} gives no {dtype.name} elements per rank for {point.op.name} over "
            f"{world_size} ranks (per-rank counts round down to 16 B, as nccl-tests): use >= {format_bytes(least)}"
        )
    return f"{format_bytes(point.size_bytes)} is smaller than one {dtype.name} element"
