import math
import random

import pytest
from conftest import parse_options

from mlbench.exitcodes import UsageError
from mlbench.mamf.plan import (
    Grid,
    MamfOptions,
    SearchSettings,
    SearchState,
    Shape,
    coarse_indices,
    make_plan,
    parse_dtype,
    parse_shapes,
    search,
    tflops,
)


def test_flops_are_2mnk():
    assert Shape(2, 3, 4).flops == 48
    assert Shape(8192, 8192, 8192).flops == 2 * 8192**3
    # 8192^3 in 1.39 ms is 791 TFLOPS (hand: 1.0995e12 / 1.39e-3 / 1e12)
    assert tflops(Shape(8192, 8192, 8192), 1.39e-3) == pytest.approx(791.0, rel=1e-3)


@pytest.mark.parametrize(
    "text, name",
    [
        ("bf16", "bf16"),
        ("bfloat16", "bf16"),
        ("BF16", "bf16"),
        ("float16", "fp16"),
        ("fp16", "fp16"),
        ("tf32", "tf32"),
        ("float32", "fp32"),
        ("float8_e4m3fn", "fp8"),
        ("fp8", "fp8"),
        ("int8", "int8"),
    ],
)
def test_dtype_names(text, name):
    assert parse_dtype(text).name == name


def test_unknown_dtype_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown --dtype 'bf17'"):
        parse_dtype("bf17")


def test_shapes_grammar():
    assert parse_shapes("4096x4096x4096,1Kx2Kx4K") == [Shape(4096, 4096, 4096), Shape(1024, 2048, 4096)]
    for bad in ("4096x4096", "axbxc", "0x1x1", "1x-1x1", "1x1x1,", "4096*4096*4096"):
        with pytest.raises(UsageError):
            parse_shapes(bad)


def test_make_plan_validation():
    O = MamfOptions  # noqa: E741  (short: the calls below read as the command lines they stand for)
    plan = make_plan("cpu", O(m="256:1024:+256", n="512", k="1K,2K"))
    assert plan.mode == "sweep" and plan.grid.m == (256, 512, 768, 1024) and len(plan.grid) == 8
    assert make_plan("cpu", O()).mode == "search"  # the default recipe
    assert make_plan("cpu", O(quick=True)).mode == "sweep"  # --quick
    assert make_plan("cuda", O()).grid.m[-1] == 20480
    assert make_plan("cpu", O(shapes="8x8x8", warmup_s=0)).shapes == (Shape(8, 8, 8),)
    with pytest.raises(UsageError, match="go together"):
        make_plan("cpu", O(m="1K"))
    with pytest.raises(UsageError, match="not both"):
        make_plan("cpu", O(shapes="8x8x8", m="1K", n="1K", k="1K"))
    with pytest.raises(UsageError, match="--search needs a grid"):
        make_plan("cpu", O(shapes="8x8x8", search=True))
    with pytest.raises(UsageError, match="bad --m"):
        make_plan("cpu", O(m="-5", n="1K", k="1K"))
    with pytest.raises(UsageError):
        make_plan("cpu", O(warmup_s=-1.0))
    with pytest.raises(UsageError, match="unknown --dtype"):
        make_plan("cpu", O(dtype="bf17"))


def test_options_round_trip_through_the_command_line():
    """Every option given comes back from to_argv, and click parses it into the same object."""

    from mlbench.mamf.cli import command

    given = MamfOptions(
        device="cpu",
        quick=True,
        dtype="fp16",
        m="1K",
        n="2K",
        k="4K",
        search=False,
        fp8_fast_accum=True,
        warmup_s=0.25,
        out="x.jsonl",
        run_id="r7",
    )
    argv = given.to_argv()
    assert argv[:2] == ["--device", "cpu"] and "--sweep" in argv and "--fp8-fast-accum" in argv
    assert parse_options(command, MamfOptions, argv) == given
    assert MamfOptions().to_argv() == []


def test_coarse_indices_spread_and_keep_the_ends():
    assert coarse_indices(3, 4) == [0, 1, 2]
    assert coarse_indices(16, 4) == [0, 5, 10, 15]
    assert coarse_indices(20, 5)[0] == 0 and coarse_indices(20, 5)[-1] == 19


def _landscape(peak_at, noise=0.0, seed=0):
    """A smooth unimodal TFLOPS landscape with a ridge, like a matmul roofline with tile effects."""
    rng = random.Random(seed)

    def score(shape: Shape):
        m0, n0, k0 = peak_at
        base = 800 * math.exp(
            -(((shape.m - m0) / 6000) ** 2 + ((shape.n - n0) / 6000) ** 2 + ((shape.k - k0) / 8000) ** 2)
        )
        return base * (1 + rng.uniform(-noise, noise))

    return score


@pytest.mark.parametrize(
    "peak_at", [(2048, 2048, 13312), (12288, 18432, 1024), (20480, 20480, 20480), (1024, 1024, 1024)]
)
def test_search_finds_the_grid_optimum_with_few_measurements(peak_at):
    values = tuple(range(1024, 20480 + 1, 1024))
    grid = Grid(values, values, values)
    score = _landscape(peak_at)
    calls = []

    def measure(shape, phase):
        calls.append(phase)
        return score(shape)

    state = SearchState()
    events = list(search(grid, measure, SearchSettings(), state))
    best_shape, best_score = state.best()
    exhaustive = max(score(s) for s in grid.shapes())
    assert best_score >= 0.99 * exhaustive
    assert len(calls) <= 0.05 * len(grid)  # 8000 shapes: the search measures a few percent of them
    assert [e[0] for e in events][-3:] == ["confirm"] * 3
    assert calls.count("coarse") == 64


def test_search_skips_failed_shapes_and_never_remeasures():
    grid = Grid((1, 2, 3, 4, 5, 6, 7, 8), (1, 2, 3, 4), (1, 2))
    seen = []

    def measure(shape, phase):
        if phase != "confirm":
            assert shape not in seen, f"{shape} measured twice"
            seen.append(shape)
        if shape.m == 8:
            return None  # e.g. out of memory
        return shape.m * shape.n * shape.k

    state = SearchState()
    list(search(grid, measure, SearchSettings(coarse_per_dim=3), state))
    assert state.best() == (Shape(7, 4, 2), 56)
