"""MAMF plans: dtypes, shape grids, default recipes and the shape search. No torch here.

The search finds the best shape of an M x N x K grid without measuring all of it:

1. coarse: every `stride`-th value of each dimension (about `coarse_per_dim` values, ends
   included), measured with a short timing plan;
2. refine: from each of the `leaders` best coarse shapes, a hill climb on the grid's index
   lattice: try the +-step neighbours in each dimension, move to the best one that improves,
   halve the step when none does, stop after step 1 finds nothing; measured shapes are memoised;
3. confirm: re-measure the `confirm` best distinct shapes with the full timing plan; the best
   confirmed median is the answer (a single lucky short measurement cannot win).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterator, Optional, Sequence

from ..exitcodes import UsageError
from ..options import ProbeOptions, option
from ..sizes import SizeError, parse_size, parse_sizes


class Kernel(str, Enum):
    """Which torch call measures a dtype."""

    MM = "mm"  # torch.mm(a, b, out=c)
    SCALED_MM = "scaled_mm"  # torch._scaled_mm (fp8, with scales)
    INT_MM = "int_mm"  # torch._int_mm (int8 in, int32 out)


@dataclass(frozen=True)
class DType:
    """One MAMF dtype: how to name it and which kernel measures it."""

    name: str
    torch_name: str  # operand dtype (fp8 picks e4m3fnuz on AMD MI300 at run time)
    kernel: Kernel
    allow_tf32: bool = False
    check_tolerance: float = 0.0  # max |C - ref| / rms(ref) on the spot-check block
    aliases: tuple = ()


DTYPES = {
    d.name: d
    for d in (
        DType("bf16", "bfloat16", Kernel.MM, check_tolerance=5e-2, aliases=("bfloat16",)),
        DType("fp16", "float16", Kernel.MM, check_tolerance=1e-2, aliases=("float16", "half")),
        DType("tf32", "float32", Kernel.MM, allow_tf32=True, check_tolerance=1e-2, aliases=("tensorfloat32",)),
        DType("fp32", "float32", Kernel.MM, check_tolerance=1e-3, aliases=("float32", "float")),
        DType(
            "fp8",
            "float8_e4m3fn",
            Kernel.SCALED_MM,
            check_tolerance=5e-2,
            aliases=("float8_e4m3fn", "e4m3", "fp8_e4m3"),
        ),
        DType("int8", "int8", Kernel.INT_MM, check_tolerance=0.0, aliases=()),
    )
}


def parse_dtype(text: str) -> DType:
    key = (text or "").strip().lower()
    for dtype in DTYPES.values():
        if key == dtype.name or key in dtype.aliases:
            return dtype
    raise UsageError(
        f"unknown --dtype {text!r}: choose from {', '.join(DTYPES)} (or bfloat16, float16, float32, float8_e4m3fn)"
    )


@dataclass(frozen=True, order=True)
class Shape:
    m: int
    n: int
    k: int

    @property
    def flops(self) -> int:
        """FLOPs of one C = A @ B: one multiply and one add per (m, n, k) triple (2mnk, as mamf-finder and
        cuBLAS count)."""
        return 2 * self.m * self.n * self.k

    def __str__(self) -> str:
        return f"{self.m}x{self.n}x{self.k}"


def tflops(shape: Shape, time_s: float) -> float:
    return shape.flops / time_s / 1e12


def parse_shapes(text: str) -> list[Shape]:
    """`MxNxK[,MxNxK...]`, each dimension in the size grammar (4096x4K x8K is fine)."""
    shapes = []
    for item in (text or "").split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise UsageError(f"bad --shapes item {item.strip()!r}: expected MxNxK, e.g. 4096x4096x4096")
        try:
            m, n, k = (parse_size(p) for p in parts)
        except SizeError as exc:
            raise UsageError(f"bad --shapes item {item.strip()!r}: {exc}") from None
        if min(m, n, k) <= 0:
            raise UsageError(f"bad --shapes item {item.strip()!r}: dimensions must be positive")
        shapes.append(Shape(m, n, k))
    return shapes


def parse_dim(text: str, flag: str) -> list[int]:
    try:
        values = parse_sizes(text)
    except SizeError as exc:
        raise UsageError(f"bad {flag} {text!r}: {exc}") from None
    return sorted(values)


@dataclass(frozen=True)
class Grid:
    """The cartesian product of three sorted value lists."""

    m: tuple
    n: tuple
    k: tuple

    def __len__(self) -> int:
        return len(self.m) * len(self.n) * len(self.k)

    def shape(self, index: tuple) -> Shape:
        return Shape(self.m[index[0]], self.n[index[1]], self.k[index[2]])

    def shapes(self) -> list[Shape]:
        return [Shape(m, n, k) for m in self.m for n in self.n for k in self.k]

    def dims(self) -> tuple:
        return (self.m, self.n, self.k)


@dataclass(frozen=True)
class MamfPlan:
    """What to measure: explicit shapes (a sweep) or a grid, swept or searched."""

    mode: str  # "sweep" or "search"
    shapes: tuple = ()
    grid: Optional[Grid] = None
    warmup_s: float = 0.0
    quick: bool = False
    sustain_s: float = 0.0  # then the best shape back to back this long (0: no sustained run)

    def describe(self) -> str:
        if self.grid is not None:
            dims = " x ".join(f"[{d[0]}..{d[-1]}]({len(d)})" for d in self.grid.dims())
            text = f"{self.mode} over {dims} = {len(self.grid)} shapes"
        else:
            text = f"{self.mode} of {len(self.shapes)} shape(s)"
        if self.sustain_s:
            text += f", then the best sustained for {self.sustain_s:g} s in windows of {self.window_s:g} s"
        return text

    @property
    def window_s(self) -> float:
        return sustain_window_s(self.sustain_s)


def sustain_window_s(sustain_s: float) -> float:
    """The length of one window of a sustained run: a tenth of it, between 0.5 s and 5 s."""
    return min(5.0, max(0.5, sustain_s / 10))


def default_grid(device_type: str, quick: bool) -> tuple[str, Grid]:
    """The recipe a user runs first, per device: a search over a broad range (a sweep for --quick)."""
    if device_type == "cpu":
        if quick:
            return "sweep", Grid((256, 512), (256, 512), (256,))
        values = tuple(range(256, 2048 + 1, 256))
        return "search", Grid(values, values, values)
    if quick:
        return "sweep", Grid((4096, 8192), (4096, 8192), (4096, 8192))
    values = tuple(range(1024, 20480 + 1, 1024))
    return "search", Grid(values, values, values)


@dataclass(frozen=True)
class MamfOptions(ProbeOptions):
    dtype: str = option(
        "--dtype",
        default="bf16",
        show_default=True,
        help="bf16, fp16, tf32, fp32, fp8 (e4m3), int8; torch names also accepted.",
    )
    shapes: Optional[str] = option("--shapes", metavar="MxNxK[,...]", help="Explicit shapes to sweep.")
    m: Optional[str] = option("--m", metavar="SIZES", help="M values: a list or range (e.g. 1K:16K:+1K).")
    n: Optional[str] = option("--n", metavar="SIZES", help="N values (with --m and --k: their product is swept).")
    k: Optional[str] = option("--k", metavar="SIZES", help="K values.")
    search: Optional[bool] = option(
        "--search/--sweep",
        help="Search the grid for the best shape (default without shapes) or sweep all of it "
        "(default with --m/--n/--k).",
    )
    fp8_fast_accum: bool = option(
        "--fp8-fast-accum",
        default=False,
        flag=True,
        help="fp8: let torch._scaled_mm use fast (lower-precision) accumulation; recorded as params.fast_accum.",
    )
    warmup_s: Optional[float] = option(
        "--warmup-s",
        type=float,
        help="Seconds of back-to-back matmuls before measuring (default 10 on accelerators, 0.5 on CPU).",
    )
    sustain_s: Optional[float] = option(
        "--sustain",
        type=float,
        metavar="SECONDS",
        help="After the sweep or search, run its best shape (or the given --shapes' best) back to back for this "
        "long: TFLOPS per window of a few seconds, sustained TFLOPS and the drop from the short burst.",
    )

    @property
    def mode(self) -> Optional[str]:
        return None if self.search is None else ("search" if self.search else "sweep")


def make_plan(device_type: str, options: MamfOptions) -> MamfPlan:
    """Validate the options and build the plan; every bad input is a UsageError (exit 2)."""
    if options.sustain_s is not None and not (options.sustain_s > 0 and math.isfinite(options.sustain_s)):
        raise UsageError(f"--sustain must be a number of seconds > 0, got {options.sustain_s}")
    plan = _shapes_plan(device_type, options)
    return dataclasses.replace(plan, sustain_s=options.sustain_s or 0.0)


def _shapes_plan(device_type: str, options: MamfOptions) -> MamfPlan:
    o = options
    parse_dtype(o.dtype)
    dims_given = [d is not None for d in (o.m, o.n, o.k)]
    if o.shapes is not None and any(dims_given):
        raise UsageError("give either --shapes or --m/--n/--k, not both")
    if any(dims_given) and not all(dims_given):
        raise UsageError("--m, --n and --k go together: give all three (each a list or a range)")
    if o.warmup_s is not None and o.warmup_s < 0:
        raise UsageError(f"--warmup-s must be >= 0, got {o.warmup_s}")
    default_warmup = 0.1 if o.quick else (0.5 if device_type == "cpu" else 10.0)
    warmup = default_warmup if o.warmup_s is None else o.warmup_s
    if o.shapes is not None:
        if o.mode == "search":
            raise UsageError("--search needs a grid (--m/--n/--k), not a list of --shapes")
        return MamfPlan("sweep", shapes=tuple(parse_shapes(o.shapes)), warmup_s=warmup, quick=o.quick)
    if all(dims_given):
        grid = Grid(tuple(parse_dim(o.m, "--m")), tuple(parse_dim(o.n, "--n")), tuple(parse_dim(o.k, "--k")))
        return MamfPlan(o.mode or "sweep", grid=grid, warmup_s=warmup, quick=o.quick)
    default_mode, grid = default_grid(device_type, o.quick)
    return MamfPlan(o.mode or default_mode, grid=grid, warmup_s=warmup, quick=o.quick)


# ---------------------------------------------------------------------------------------------
# search


@dataclass
class SearchSettings:
    coarse_per_dim: Optional[int] = None  # default: about sqrt(values in the dimension), at least 3
    leaders: int = 3
    confirm: int = 3


@dataclass
class SearchState:
    """Every measurement the search made, by shape and phase (score = TFLOPS from the median)."""

    scores: dict = field(default_factory=dict)  # Shape -> best short-plan score
    confirmed: dict = field(default_factory=dict)  # Shape -> full-plan score
    measured: int = 0

    def best(self) -> Optional[tuple]:
        pool = self.confirmed or self.scores
        if not pool:
            return None
        shape = max(pool, key=lambda s: pool[s])
        return shape, pool[shape]


def coarse_indices(length: int, per_dim: int) -> list[int]:
    """About `per_dim` evenly spread indices of a dimension, both ends included."""
    if length <= per_dim:
        return list(range(length))
    stride = (length - 1) / (per_dim - 1)
    return sorted({round(i * stride) for i in range(per_dim)})


def search(
    grid: Grid,
    measure: Callable[[Shape, str], Optional[float]],
    settings: Optional[SearchSettings] = None,
    state: Optional[SearchState] = None,
) -> Iterator[tuple]:
    """Run the search, yielding (phase, shape, score) after each measurement.

    `measure(shape, phase)` returns TFLOPS or None (skipped: out of memory, failed check); phase
    is "coarse", "refine" or "confirm". The state (pass one in to read it afterwards) holds the
    answer: `state.best()`.
    """
    state = state if state is not None else SearchState()
    dims = grid.dims()
    index_of: dict = {}

    def visit(index: tuple, phase: str):
        shape = grid.shape(index)
        index_of[shape] = index
        if shape in state.scores:
            return None
        score = measure(shape, phase)
        state.measured += 1
        state.scores[shape] = score if score is not None else -math.inf
        return (phase, shape, score)

    settings = settings or SearchSettings()
    per_dim_counts = [settings.coarse_per_dim or max(3, round(math.sqrt(len(d)))) for d in dims]
    per_dim = [coarse_indices(len(d), count) for d, count in zip(dims, per_dim_counts)]
    for i in per_dim[0]:
        for j in per_dim[1]:
            for h in per_dim[2]:
                event = visit((i, j, h), "coarse")
                if event:
                    yield event

    # hill climb from each leader: +-step neighbours per axis, halving the steps until 1
    strides = [max(1, (len(d) - 1) // max(1, count - 1)) for d, count in zip(dims, per_dim_counts)]
    ranked = sorted((s for s in state.scores if state.scores[s] > -math.inf), key=lambda s: -state.scores[s])
    for leader in ranked[: settings.leaders]:
        current = index_of[leader]
        steps = [max(1, stride // 2) for stride in strides]
        while True:
            neighbours = []
            for axis in range(3):
                for sign in (-1, 1):
                    candidate = list(current)
                    candidate[axis] += sign * steps[axis]
                    if 0 <= candidate[axis] < len(dims[axis]):
                        neighbours.append(tuple(candidate))
            for candidate in neighbours:
                event = visit(candidate, "refine")
                if event:
                    yield event
            best = max(neighbours, key=lambda c: state.scores[grid.shape(c)], default=None)
            if best is not None and state.scores[grid.shape(best)] > state.scores[grid.shape(current)]:
                current = best
            elif max(steps) == 1:
                break
            else:
                steps = [max(1, step // 2) for step in steps]

    finalists = sorted((s for s in state.scores if state.scores[s] > -math.inf), key=lambda s: -state.scores[s])
    for shape in finalists[: settings.confirm]:
        score = measure(shape, "confirm")
        state.measured += 1
        if score is not None:
            state.confirmed[shape] = score
        yield ("confirm", shape, score)


def sweep_shapes(plan: MamfPlan) -> Sequence[Shape]:
    return list(plan.shapes) if plan.grid is None else plan.grid.shapes()


# -- the answer of a run (the report applies the same rule) --------------------------------------------

ANSWER_PHASE = "confirm"  # a search's answer comes from its full-plan re-measurements only
SUSTAIN_MODE = "sustain"  # params.mode of a sustained run's record: not a candidate for the answer


def answer_pool(records: list) -> list:
    """The ok MAMF records the answer is chosen from: a search's confirmed shapes when there are
    some (a lucky short measurement cannot win), else every ok record (a sweep's shapes); never a
    sustained run's record."""
    ok = [
        r
        for r in records
        if r.get("status") == "ok" and r.get("probe", "mamf") == "mamf" and r["params"].get("mode") != SUSTAIN_MODE
    ]
    confirmed = [r for r in ok if r["params"].get("phase") == ANSWER_PHASE]
    return confirmed or ok


def best_record(records: list) -> Optional[dict]:
    """The best shape by median TFLOPS (`metrics.tflops`) among `answer_pool(records)`; None when empty."""
    pool = answer_pool(records)
    return max(pool, key=lambda r: r["metrics"]["tflops"]) if pool else None
