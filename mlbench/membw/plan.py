"""Memory-bandwidth plans: the ops' byte accounting, the size sweep, buffer rotation. No torch here.

Byte accounting (one row per op; `n` = the bytes of one buffer, the record's `bytes`):

| op    | what runs                    | read | written | copied | buffers/set |
|-------|------------------------------|------|---------|--------|-------------|
| copy  | dst.copy_(src)               | n    | n       | n      | 2           |
| read  | sum(src) into a scalar       | n    | 0       | -      | 1           |
| write | dst.fill_(v)                 | 0    | n       | -      | 1           |
| triad | a = b + s * c (STREAM triad) | 2n   | n       | -      | 3           |
| h2d   | device.copy_(host)           | n    | n       | n      | 1 host + 1  |
| d2h   | host.copy_(device)           | n    | n       | n      | 1 host + 1  |
| p2p   | GPU i -> j, write and read   | n    | n       | n      | 2           |

`gbps` = (read + written) / time / 1e9: the HBM-spec convention (STREAM, p2pBandwidthLatencyTest's
same-device copy). `gbps_copied` = copied / time / 1e9, for the copy-like ops only: the convention of
nvbandwidth's local copy and of link figures (PCIe, NVLink), so a transfer is compared with its link
through `gbps_copied`. Bytes a cache's write-allocate adds (a CPU `write` or `copy` reads the
destination line first) are not counted, as in STREAM: the figures are what the program asked for.

Rotation: a buffer set below the last-level cache (LLC) would stay in it between repeated calls, and
the sweep would time the cache. So each point allocates `sets` buffer sets whose total footprint is at
least `ROTATION_LLC_FACTOR` x LLC and cycles through them: by the time a set comes round again, more
than the cache's worth of other data has been touched and the set was evicted. For a set that alone
is already that large, one set is enough (rotation is moot: one call streams more than the cache
holds). `--no-rotate` keeps one set: small sizes then run from the cache, which shows the
cache-to-memory knee; such points say `cache_resident: true`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Optional, Sequence

from ..exitcodes import UsageError
from ..options import ProbeOptions, option
from ..sizes import SizeError, format_bytes, parse_sizes

ELEMENT_BYTES = 4  # float32 buffers
ALIGN_BYTES = 256  # each buffer starts on a 256-byte boundary inside the arena
ROTATION_LLC_FACTOR = 4
MAX_SETS = 1024
MEMORY_FRACTION = 0.8  # at most this much of the free memory goes to one point's buffers
DEFAULT_LLC_BYTES = 32 << 20
DEFAULT_MAX_BYTES = {"cpu": 512 << 20, "accelerator": 8 << 30}  # largest buffer of the default sweep
QUICK_MAX_BYTES = {"cpu": 128 << 20, "accelerator": 1 << 30}
TRANSFER_DEFAULT_MAX_BYTES = 1 << 30  # h2d/d2h default sizes stop here (nvbandwidth uses 512 MiB)
P2P_DEFAULT_BYTES = 512 << 20


class Family(StrEnum):
    """Which advertised figure an op's bandwidth is judged against (the report's check name)."""

    HBM = "hbm"  # device memory: read + written against the HBM spec
    H2D = "h2d"  # host -> device over the host link, bytes once
    D2H = "d2h"  # device -> host over the host link, bytes once
    P2P = "p2p"  # GPU -> GPU over the intra-node link, bytes once, per direction


@dataclass(frozen=True)
class Op:
    """One op's byte accounting, in multiples of one buffer's bytes (see the module's table)."""

    name: str
    read: int
    written: int
    copied: int  # 0: not a copy-like op (no gbps_copied)
    device_buffers: int  # buffers per set in device memory
    host_buffers: int = 0  # buffers in host memory (transfers)
    kind: str = "device"  # "device" (local memory), "transfer" (host<->device), "peer" (GPU->GPU)
    family: Family = Family.HBM
    doc: str = ""


# fmt: off
OPS = {
    op.name: op
    for op in (
        Op("copy", read=1, written=1, copied=1, device_buffers=2, doc="dst.copy_(src)"),
        Op("read", read=1, written=0, copied=0, device_buffers=1, doc="sum(src) into a preallocated scalar"),
        Op("write", read=0, written=1, copied=0, device_buffers=1, doc="dst.fill_(v)"),
        Op("triad", read=2, written=1, copied=0, device_buffers=3,
           doc="a = b + s*c (torch.add(b, c, alpha=s, out=a))"),
        Op("h2d", read=1, written=1, copied=1, device_buffers=1, host_buffers=1, kind="transfer",
           family=Family.H2D, doc="device.copy_(host)"),
        Op("d2h", read=1, written=1, copied=1, device_buffers=1, host_buffers=1, kind="transfer",
           family=Family.D2H, doc="host.copy_(device)"),
        Op("p2p", read=1, written=1, copied=1, device_buffers=1, kind="peer", family=Family.P2P,
           doc="peer.copy_(local) between two GPUs"),
    )
}
# fmt: on
DEVICE_OPS = tuple(name for name, op in OPS.items() if op.kind == "device")
HOST_MEMORY_KINDS = ("pinned", "pageable")
PEER_DIRECTIONS = ("write", "read")  # nvbandwidth's names: who issues the copy (see mlbench.membw.peer)


@dataclass(frozen=True)
class Traffic:
    """Bytes one call moves."""

    read: int
    written: int
    copied: int

    @property
    def total(self) -> int:
        return self.read + self.written


def traffic(op: Op, nbytes: int) -> Traffic:
    return Traffic(op.read * nbytes, op.written * nbytes, op.copied * nbytes)


def gbps(op: Op, nbytes: int, time_s: float) -> float:
    """(bytes read + bytes written) / time, in GB/s (1e9 B/s)."""
    return traffic(op, nbytes).total / time_s / 1e9


def gbps_copied(op: Op, nbytes: int, time_s: float) -> Optional[float]:
    """Bytes copied (once) / time in GB/s for copy-like ops; None for the others."""
    return traffic(op, nbytes).copied / time_s / 1e9 if op.copied else None


def parse_ops(text: Optional[str]) -> Optional[list]:
    """A comma list of op names (duplicates dropped); None when not given (the default set)."""
    if text is None:
        return None
    names = []
    for item in str(text).split(","):
        name = item.strip().lower()
        if not name:
            raise UsageError(f"bad --ops {text!r}: empty item")
        if name not in OPS:
            raise UsageError(f"unknown op {name!r} in --ops: choose from {','.join(OPS)}")
        if name not in names:
            names.append(name)
    return names


def aligned_bytes(nbytes: int) -> int:
    return -(-nbytes // ALIGN_BYTES) * ALIGN_BYTES


def buffer_bytes(requested: int) -> int:
    """A requested size rounded down to whole float32 elements (what the buffer really holds)."""
    return requested // ELEMENT_BYTES * ELEMENT_BYTES


def rotation_sets(op: Op, nbytes: int, llc_bytes: int, rotate: bool = True) -> int:
    """Buffer sets cycled so each call finds its buffers evicted (1 when one set outsizes the cache)."""
    if not rotate or op.kind != "device":
        return 1
    set_bytes = op.device_buffers * aligned_bytes(nbytes)
    return max(1, min(MAX_SETS, math.ceil(ROTATION_LLC_FACTOR * llc_bytes / set_bytes)))


@dataclass(frozen=True)
class Point:
    """One measurement: an op at one buffer size (and a host memory kind or a peer pair)."""

    op: str
    bytes: int
    sets: int = 1
    host_memory: Optional[str] = None  # transfers: "pinned" or "pageable"
    src: Optional[int] = None  # p2p: source GPU index
    dst: Optional[int] = None  # p2p: destination GPU index
    direction: Optional[str] = None  # p2p: "write" (the source pushes) or "read" (the destination pulls)
    skip: Optional[str] = None  # why it cannot run here (a skipped record)

    @property
    def spec(self) -> Op:
        return OPS[self.op]

    @property
    def device_bytes(self) -> int:
        """Device memory this point allocates (all its sets)."""
        return self.sets * self.spec.device_buffers * aligned_bytes(self.bytes)

    @property
    def host_bytes(self) -> int:
        return self.spec.host_buffers * aligned_bytes(self.bytes)

    def cache_resident(self, llc_bytes: int) -> bool:
        """Whether the sets together fit in the last-level cache (repeated calls may hit it)."""
        return self.spec.kind == "device" and self.device_bytes <= llc_bytes

    def params(self) -> dict:
        params = {"op": self.op, "bytes": self.bytes}
        if self.host_memory:
            params["host_memory"] = self.host_memory
        if self.src is not None:
            params.update(src=self.src, dst=self.dst, direction=self.direction)
        return params

    def label(self) -> str:
        extra = (
            f" {self.host_memory}"
            if self.host_memory
            else (f" {self.direction} {self.src}->{self.dst}" if self.src is not None else "")
        )
        return f"{self.op}{extra} {format_bytes(self.bytes)}"


@dataclass(frozen=True)
class Facts:
    """What the plan needs to know about the device (from `mlbench.device`, or made up in tests)."""

    device_type: str  # cpu, cuda, xpu, mps
    llc_bytes: Optional[int] = None
    free_bytes: Optional[int] = None  # device memory free now
    host_free_bytes: Optional[int] = None
    gpu_count: int = 0  # GPUs visible (p2p needs two)

    @property
    def accelerator(self) -> bool:
        return self.device_type != "cpu"

    @property
    def llc(self) -> int:
        return self.llc_bytes or DEFAULT_LLC_BYTES


@dataclass(frozen=True)
class MembwPlan:
    points: tuple
    sizes: tuple  # the buffer sizes the points use (bytes), ascending
    quick: bool = False
    rotate: bool = True

    def describe(self) -> str:
        ops = ",".join(dict.fromkeys(p.op for p in self.points))
        run = sum(p.skip is None for p in self.points)
        sizes = (
            f"{format_bytes(self.sizes[0])}..{format_bytes(self.sizes[-1])} ({len(self.sizes)} sizes)"
            if self.sizes
            else "no sizes"
        )
        return f"{ops} over {sizes}: {run} point(s) to measure, {len(self.points) - run} skipped"


def default_ops(facts: Facts) -> list:
    ops = list(DEVICE_OPS) + ["h2d", "d2h"]
    if facts.device_type == "cuda" and facts.gpu_count > 1:
        ops.append("p2p")
    return ops


def _pow2_floor(n: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(1, n)))))


def default_sizes(facts: Facts, ops: Sequence[str], quick: bool) -> list:
    """Doubling sizes from well below the LLC (LLC/16, or LLC/8 with --quick) to the default top,
    capped so the most demanding op's buffers fit in MEMORY_FRACTION of free memory."""
    family = "accelerator" if facts.accelerator else "cpu"
    top = (QUICK_MAX_BYTES if quick else DEFAULT_MAX_BYTES)[family]
    device_buffers = max([OPS[o].device_buffers for o in ops if OPS[o].kind != "transfer"] or [1])
    if facts.free_bytes:
        top = min(top, int(MEMORY_FRACTION * facts.free_bytes / device_buffers))
    top = _pow2_floor(top)
    low = _pow2_floor(facts.llc / (8 if quick else 16))
    if quick:
        return sorted({min(low, top), top})
    sizes = []
    size = min(low, top)
    while size <= top:
        sizes.append(size)
        size *= 2
    return sizes


def memory_problem(point: Point, facts: Facts) -> Optional[str]:
    """Why a point's buffers would not fit in free memory (None when they should)."""
    for need, free, where in (
        (point.device_bytes, facts.free_bytes, "device" if facts.accelerator else "host"),
        (point.host_bytes, facts.host_free_bytes, "host"),
    ):
        if need and free is not None and need > MEMORY_FRACTION * free:
            return (
                f"out of memory: {point.label()} needs {format_bytes(need)} of {where} memory, "
                f"{format_bytes(free)} free (at most {MEMORY_FRACTION:.0%} of it is used)"
            )
    return None


def _points_for(op_name: str, nbytes: int, facts: Facts, rotate: bool) -> list:
    op = OPS[op_name]
    if op.kind == "transfer":
        if not facts.accelerator:
            return []  # one skipped record per op instead (see make_plan)
        points = []
        for kind in HOST_MEMORY_KINDS:
            skip = None
            if kind == "pinned" and facts.device_type != "cuda":
                skip = f"pinned host memory is measured on CUDA/ROCm only, not on {facts.device_type}"
            points.append(Point(op_name, nbytes, 1, host_memory=kind, skip=skip))
        return points
    if op.kind == "peer":
        return [
            Point(op_name, nbytes, 1, src=i, dst=j, direction=direction)
            for direction in PEER_DIRECTIONS
            for i in range(facts.gpu_count)
            for j in range(facts.gpu_count)
            if i != j
        ]
    return [Point(op_name, nbytes, rotation_sets(op, nbytes, facts.llc, rotate))]


def _op_skip_reason(op_name: str, facts: Facts) -> Optional[str]:
    op = OPS[op_name]
    if op.kind == "transfer" and not facts.accelerator:
        return f"{op_name} needs an accelerator: on --device cpu there is no host<->device link to measure"
    if op.kind == "peer" and (facts.device_type != "cuda" or facts.gpu_count < 2):
        return f"p2p needs two or more CUDA/ROCm GPUs; {facts.gpu_count} visible on {facts.device_type}"
    return None


@dataclass(frozen=True)
class MembwOptions(ProbeOptions):
    ops: Optional[str] = option(
        "--ops",
        metavar="OPS",
        help="Comma list of copy,read,write,triad,h2d,d2h,p2p (default: all that apply; p2p with 2+ GPUs).",
    )
    sizes: Optional[str] = option(
        "--sizes",
        metavar="SIZES",
        help="Buffer sizes (one buffer), e.g. 1M:1G or 64M,4G (default: LLC/16 doubling to a share of free memory).",
    )
    rotate: bool = option(
        "--rotate/--no-rotate",
        default=True,
        show_default=True,
        help="Cycle buffer sets past 4x the last-level cache (memory figures); --no-rotate shows the cache knee.",
    )


def parse_size_list(text: Optional[str]) -> Optional[list]:
    """`--sizes` in the size grammar; None when not given (the default sweep)."""
    if text is None:
        return None
    try:
        return parse_sizes(text)
    except SizeError as exc:
        raise UsageError(f"bad --sizes {text!r}: {exc}") from None


def p2p_default_bytes(facts: Facts) -> int:
    """p2p's one buffer size without --sizes, in every profile (--quick too): `P2P_DEFAULT_BYTES`, so a
    copy takes long enough to time the link and not the launch, lowered to a power of two that fits
    in `MEMORY_FRACTION` of the free device memory."""
    size = P2P_DEFAULT_BYTES
    if facts.free_bytes:
        size = min(size, _pow2_floor(MEMORY_FRACTION * facts.free_bytes / OPS["p2p"].device_buffers))
    return max(ELEMENT_BYTES, size)


def _default_size_for(op_name: str, size: int, swept: Sequence[int], p2p_bytes: Optional[int]) -> bool:
    """Whether an op runs at a size of the default plan: p2p at its one size, h2d/d2h up to 1 GiB."""
    op = OPS[op_name]
    if op.kind == "peer":
        return size == p2p_bytes
    return size in swept and (op.kind != "transfer" or size <= TRANSFER_DEFAULT_MAX_BYTES)


def make_plan(facts: Facts, options: MembwOptions) -> MembwPlan:
    """Validate the options and build the plan, sizes outer, ops inner (each size's buffers are filled once).

    Bad input raises UsageError (exit 2): an unknown op, a size list off the grammar, a size below
    one element, or an explicit size at which no requested op fits in memory. A point that does not
    fit while others at its size do is kept as a skipped point (out of memory); ops that cannot run
    on this device are one skipped point each (`bytes` 0). Without --sizes, the device-memory ops
    sweep `default_sizes`, h2d/d2h leave the sizes above 1 GiB out, and p2p runs at one size
    (`p2p_default_bytes`: 512 MiB unless memory is short), whatever the profile.
    """
    names = parse_ops(options.ops) or default_ops(facts)
    requested = parse_size_list(options.sizes)
    explicit = requested is not None
    if explicit:
        if not requested:
            raise UsageError("--sizes is empty")
        for size in requested:
            if buffer_bytes(size) <= 0:
                raise UsageError(f"--sizes {size}: a buffer holds at least one float32 ({ELEMENT_BYTES} bytes)")
    points = []
    for name in names:
        why = _op_skip_reason(name, facts)
        if why:
            points.append(Point(name, 0, 1, skip=why))
    runnable = [n for n in names if _op_skip_reason(n, facts) is None]
    swept, p2p_bytes = [], None
    if explicit:
        sizes = [buffer_bytes(s) for s in requested]
    else:
        sweeping = [n for n in runnable if OPS[n].kind != "peer"]
        swept = default_sizes(facts, sweeping, options.quick) if sweeping else []
        p2p_bytes = p2p_default_bytes(facts) if "p2p" in runnable else None
        sizes = sorted(set(swept) | ({p2p_bytes} if p2p_bytes else set()))
    for size in sizes:
        at_size = []
        for name in runnable:
            if not explicit and not _default_size_for(name, size, swept, p2p_bytes):
                continue
            for point in _points_for(name, size, facts, options.rotate):
                problem = point.skip or memory_problem(point, facts)
                at_size.append(point if problem is None else _with_skip(point, problem))
        if explicit and at_size and all(p.skip and p.skip.startswith("out of memory") for p in at_size):
            raise UsageError(f"--sizes {format_bytes(size)}: {at_size[0].skip}")
        points += at_size
    used = tuple(sorted({p.bytes for p in points if p.bytes}))
    return MembwPlan(points=tuple(points), sizes=used, quick=options.quick, rotate=options.rotate)


def _with_skip(point: Point, why: str) -> Point:
    return dataclasses.replace(point, skip=why)


# -- rules the report shares: which op answers which spec, which points give the peak -----------------


def op_family(op_name: str) -> Family:
    """The family of an op by name (records carry it as `family`); an unknown name counts as device memory."""
    op = OPS.get(str(op_name))
    return op.family if op is not None else Family.HBM


def is_large_buffer(op_name: str, size_bytes: int, llc_bytes: Optional[int]) -> bool:
    """Whether one buffer set of a device-memory op alone is at least `ROTATION_LLC_FACTOR` x the LLC.

    Such a point streams more than any cache holds in every call, whatever the rotation: the peak
    comes from these points. It is the rule that makes `rotation_sets` use one set (an unknown LLC
    counts as `DEFAULT_LLC_BYTES`, as in `Facts.llc`). Transfers and peer copies are never large.
    """
    op = OPS.get(str(op_name))
    if op is None or op.kind != "device":
        return False
    return op.device_buffers * aligned_bytes(int(size_bytes)) >= ROTATION_LLC_FACTOR * (llc_bytes or DEFAULT_LLC_BYTES)


def is_large(record: dict, llc_bytes: Optional[int]) -> bool:
    """A record's `large` fact when the probe recorded it, else `is_large_buffer` on its op and bytes."""
    params = record["params"]
    if isinstance(params.get("large"), bool):
        return params["large"]
    return is_large_buffer(params["op"], params["bytes"], llc_bytes)


def peaks(records: list, llc_bytes: Optional[int]) -> tuple:
    """({op: best record by median gbps}, from_large) over the device-memory ops' ok records.

    The best is taken among the large points (`is_large`) when there are some, else among the
    points that were not cache-resident.
    """
    ok = [
        r
        for r in records
        if r.get("status") == "ok"
        and r.get("probe", "membw") == "membw"
        and OPS.get(r["params"].get("op")) is not None
        and OPS[r["params"]["op"]].kind == "device"
    ]
    large = [r for r in ok if is_large(r, llc_bytes)]
    pool = large or [r for r in ok if not r["params"].get("cache_resident")]
    best = {}
    for record in pool:
        op = record["params"]["op"]
        if op not in best or record["metrics"]["gbps"] > best[op]["metrics"]["gbps"]:
            best[op] = record
    return best, bool(large)
