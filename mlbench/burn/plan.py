"""Burn-in plans and rules: options, durations, the workload, and the rules that name a bad GPU. No torch here.

A burn-in runs one deterministic matmul (fixed seed and shape, deterministic library settings) back to
back for `--duration`, in intervals of `--interval`. The first result (iteration 0) is the reference:
every later result is compared with it bit for bit. Each interval ends with a memory pattern pass
(write, read back, compare) and a read of the device's error counters. One record per interval.

Across GPUs: each process publishes the digest of its reference (sha256 of the result's bytes) next to
its records (`exchange`); GPUs of the same model running the same workload must agree bit for bit. A
GPU whose digest differs from the majority is named (`odd_ones`); with no majority every GPU of the
disagreement is. A GPU whose median interval TFLOPS is more than `SLOW_MARGIN` below the median of
its siblings' is named as slow (`slow_ones`). The reporter applies the same two rules to the records.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from ..exitcodes import UsageError
from ..mamf.plan import DType, Shape, parse_dtype, parse_shapes
from ..options import ProbeOptions, option
from ..sizes import SizeError, parse_size
from ..stats import median

SEED = 20240601  # the inputs of every burn-in: the same numbers on every GPU and every run
DEFAULT_SHAPE = {"cpu": Shape(512, 512, 512), "cpu-quick": Shape(256, 256, 256), "accelerator": Shape(8192, 8192, 8192)}
DEFAULT_DURATION_S = {"cpu": 10.0, "cpu-quick": 3.0, "accelerator": 300.0, "accelerator-quick": 20.0}
INTERVALS_PER_RUN = 10  # the default interval is the duration / this, within [MIN, MAX]_INTERVAL_S
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 60.0
PATTERN_FRACTION = 0.8  # accelerators: the pattern test covers this share of the memory left free
CPU_PATTERN_BYTES = {"default": 64 << 20, "quick": 8 << 20}
SLOW_MARGIN = 0.10  # a GPU this far below the median of its siblings' TFLOPS is named as slow
DIGEST_BLOCKS = 256  # the result's bytes are also digested in this many blocks (where two GPUs first differ)
DTYPES = ("bf16", "fp16", "tf32", "fp32")  # matmul kernels whose results are compared bit for bit

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600, "d": 86400}


def parse_duration(text, flag: str = "--duration") -> float:
    """Seconds from `90`, `90s`, `1.5m`, `30m`, `4h`, `1d` (a bare number is seconds); > 0."""
    match = _DURATION_RE.match(str(text))
    if not match:
        raise UsageError(f"bad {flag} {text!r}: expected seconds or a number with a unit: 90s, 30m, 4h")
    seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise UsageError(f"bad {flag} {text!r}: must be more than 0")
    return seconds


def format_duration(seconds: float) -> str:
    """`45 s`, `30 min`, `4.0 h`: how the plan and the summary say a duration."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class BurnOptions(ProbeOptions):
    device: str = option(
        "--device",
        default="all",
        show_default=True,
        help="all: every local GPU at once, one process each (the CPU on a node without); or one device: "
        "cpu, cuda, cuda:N (ROCm too), xpu, xpu:N, mps.",
    )
    duration: Optional[str] = option(
        "--duration",
        metavar="TIME",
        help="How long: seconds, or with a unit: 90s, 30m, 4h (default 5 min on accelerators, 10 s on the CPU; "
        "--quick: 20 s and 3 s).",
    )
    dtype: str = option("--dtype", default="bf16", show_default=True, help="bf16, fp16, tf32 or fp32.")
    shape: Optional[str] = option(
        "--shape", metavar="MxNxK", help="The matmul's shape (default 8192x8192x8192; on the CPU 512x512x512)."
    )
    interval: Optional[str] = option(
        "--interval", metavar="TIME", help="Length of one record (default: the duration / 10, between 1 s and 60 s)."
    )
    pattern_bytes: Optional[str] = option(
        "--pattern-bytes",
        metavar="SIZE",
        help="Memory covered by the pattern test (default: 80% of the free device memory; 64 MiB on the CPU; "
        "0: no pattern test).",
    )


@dataclass(frozen=True)
class BurnPlan:
    """What a burn-in does on one device."""

    duration_s: float
    interval_s: float
    dtype: DType
    shape: Shape
    pattern_bytes: Optional[int]  # None: PATTERN_FRACTION of the free device memory
    seed: int = SEED

    @property
    def intervals(self) -> int:
        return max(1, math.ceil(self.duration_s / self.interval_s - 1e-9))

    def describe(self) -> str:
        pattern = (
            "no pattern test"
            if self.pattern_bytes == 0
            else f"pattern test over {PATTERN_FRACTION:.0%} of free memory"
            if self.pattern_bytes is None
            else f"pattern test over {self.pattern_bytes / 2**20:g} MiB"
        )
        return (
            f"{self.dtype.name} {self.shape} for {format_duration(self.duration_s)} in "
            f"{self.intervals} interval(s) of {format_duration(self.interval_s)}; {pattern}"
        )


def _device_class(device_type: str) -> str:
    return "cpu" if device_type == "cpu" else "accelerator"


def make_plan(device_type: str, options: BurnOptions) -> BurnPlan:
    """Validate the options and build the plan; every bad input is a UsageError (exit 2)."""
    o = options
    dtype = parse_dtype(o.dtype)
    if dtype.name not in DTYPES:
        raise UsageError(f"--dtype {o.dtype}: a burn-in compares {', '.join(DTYPES)} matmuls bit for bit")
    kind = _device_class(device_type)
    if o.duration is not None:
        duration_s = parse_duration(o.duration)
    else:
        duration_s = DEFAULT_DURATION_S[f"{kind}-quick" if o.quick else kind]
    if o.interval is not None:
        interval_s = min(parse_duration(o.interval, "--interval"), duration_s)
    else:
        interval_s = min(duration_s, max(MIN_INTERVAL_S, min(MAX_INTERVAL_S, duration_s / INTERVALS_PER_RUN)))
    if o.shape is not None:
        shapes = parse_shapes(o.shape)
        if len(shapes) != 1:
            raise UsageError(f"--shape {o.shape}: give one shape MxNxK")
        shape = shapes[0]
    else:
        shape = DEFAULT_SHAPE["cpu-quick" if kind == "cpu" and o.quick else kind]
    if o.pattern_bytes is not None:
        try:
            pattern_bytes = parse_size(o.pattern_bytes)
        except SizeError as exc:
            raise UsageError(f"bad --pattern-bytes {o.pattern_bytes!r}: {exc}") from None
    elif kind == "cpu":
        pattern_bytes = CPU_PATTERN_BYTES["quick" if o.quick else "default"]
    else:
        pattern_bytes = None
    return BurnPlan(duration_s, interval_s, dtype, shape, pattern_bytes)


# -- the rules that name a GPU (the reporter applies them to the records) ----------------------------


@dataclass(frozen=True)
class OddOne:
    """A device whose result is not the majority's: `agree` devices share its digest, `majority` the
    largest group's; `ambiguous` when no digest has a strict majority (every side is named)."""

    agree: int
    majority: int
    ambiguous: bool


def odd_ones(digests: Mapping[str, str]) -> dict:
    """device -> OddOne for every device outside the unique largest group of equal digests.

    All equal: nobody. One group larger than every other: the devices of the other groups. A tie for
    the largest group: every device (it cannot be told which side computes right)."""
    groups: dict = {}
    for device, digest in digests.items():
        groups.setdefault(digest, []).append(device)
    if len(groups) <= 1:
        return {}
    sizes = sorted((len(members) for members in groups.values()), reverse=True)
    largest, ambiguous = sizes[0], sizes[0] == sizes[1]
    return {
        device: OddOne(len(members), largest, ambiguous)
        for members in groups.values()
        if ambiguous or len(members) < largest
        for device in members
    }


def slow_ones(tflops: Mapping[str, float], margin: float = SLOW_MARGIN) -> dict:
    """device -> fraction below the median of the other devices, for those more than `margin` below it
    (at least two devices; devices without a figure are left out)."""
    known = {device: value for device, value in tflops.items() if value is not None and value == value}
    if len(known) < 2:
        return {}
    slow = {}
    for device, value in known.items():
        others = median([v for d, v in known.items() if d != device])
        if others > 0 and value < (1 - margin) * others:
            slow[device] = 1 - value / others
    return slow


def first_differing_block(mine: list, theirs: list) -> Optional[int]:
    """The index of the first block whose digests differ (None when the lists agree or differ in length)."""
    if len(mine) != len(theirs):
        return None
    return next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)


def block_bounds(elements: int, blocks: int, index: int) -> tuple:
    """[first, last) elements of block `index` when `elements` are cut into `blocks` near-equal blocks."""
    return elements * index // blocks, elements * (index + 1) // blocks


def counter_growth(before: Mapping[str, int], after: Mapping[str, int]) -> dict:
    """counter -> increase, for every counter read both times that went up."""
    return {
        name: after[name] - before[name]
        for name in after
        if name in before and after[name] is not None and before[name] is not None and after[name] > before[name]
    }
