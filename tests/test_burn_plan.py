"""Burn-in plans and the rules that name a GPU: durations, defaults, majority of digests, slow siblings. No torch."""

import pytest

from mlbench.burn.plan import (
    BurnOptions,
    block_bounds,
    counter_growth,
    first_differing_block,
    make_plan,
    odd_ones,
    parse_duration,
    slow_ones,
)
from mlbench.exitcodes import UsageError


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90),
        ("90s", 90),
        ("1.5m", 90),
        ("30m", 1800),
        ("30min", 1800),
        ("4h", 14400),
        ("1d", 86400),
        (" 2 s ", 2),
        ("0.5", 0.5),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0", "0s", "-5", "5x", "m", "1h30m"])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_defaults_per_device():
    cpu = make_plan("cpu", BurnOptions())
    assert (cpu.duration_s, cpu.interval_s, cpu.intervals, str(cpu.shape)) == (10, 1, 10, "512x512x512")
    assert cpu.pattern_bytes == 64 << 20  # bounded on the CPU
    gpu = make_plan("cuda", BurnOptions())
    assert (gpu.duration_s, gpu.interval_s, gpu.intervals, str(gpu.shape)) == (300, 30, 10, "8192x8192x8192")
    assert gpu.pattern_bytes is None  # most of the free memory, decided on the device
    quick = make_plan("cpu", BurnOptions(quick=True))
    assert (quick.duration_s, quick.interval_s, quick.intervals) == (3, 1, 3)


def test_intervals_follow_the_duration():
    assert make_plan("cuda", BurnOptions(duration="30m")).interval_s == 60  # a tenth, at most a minute
    assert make_plan("cuda", BurnOptions(duration="60s")).interval_s == 6
    short = make_plan("cpu", BurnOptions(duration="2.5s"))
    assert (short.interval_s, short.intervals) == (1, 3)  # at least a second; the last interval is shorter
    capped = make_plan("cpu", BurnOptions(duration="2s", interval="5s"))
    assert (capped.interval_s, capped.intervals) == (2, 1)


def test_options_and_their_errors():
    plan = make_plan("cpu", BurnOptions(dtype="float32", shape="64x32x16", pattern_bytes="1M"))
    assert (plan.dtype.name, str(plan.shape), plan.pattern_bytes) == ("fp32", "64x32x16", 1 << 20)
    for bad in (
        dict(dtype="fp8"),
        dict(dtype="int8"),
        dict(dtype="bf17"),
        dict(shape="64x64"),
        dict(shape="8x8x8,16x16x16"),
        dict(pattern_bytes="lots"),
        dict(interval="never"),
    ):
        with pytest.raises(UsageError):
            make_plan("cpu", BurnOptions(**bad))


def test_options_round_trip_through_the_command_line():
    options = BurnOptions(device="cuda:3", duration="30m", dtype="fp16", out="x.jsonl")
    assert options.to_argv() == ["--device", "cuda:3", "--out", "x.jsonl", "--duration", "30m", "--dtype", "fp16"]
    assert BurnOptions().to_argv() == []  # `--device all` is the default


def test_odd_ones():
    assert odd_ones({"a": "x", "b": "x", "c": "x"}) == {}
    odd = odd_ones({"a": "x", "b": "x", "c": "x", "d": "y"})
    assert list(odd) == ["d"] and (odd["d"].agree, odd["d"].majority, odd["d"].ambiguous) == (1, 3, False)
    two = odd_ones({"a": "x", "b": "y"})  # no majority: both are named
    assert set(two) == {"a", "b"} and all(o.ambiguous for o in two.values())
    assert set(odd_ones({"a": "x", "b": "x", "c": "y", "d": "y"})) == {"a", "b", "c", "d"}
    assert set(odd_ones({"a": "x", "b": "x", "c": "y", "d": "z"})) == {"c", "d"}
    assert odd_ones({"a": "x"}) == {}


def test_slow_ones():
    slow = slow_ones({"g0": 100.0, "g1": 100.0, "g2": 98.0, "g3": 85.0})
    assert list(slow) == ["g3"] and slow["g3"] == pytest.approx(0.15)  # the others (100, 100, 98): median 100
    assert slow_ones({"g0": 100.0, "g1": 91.0}) == {}  # 9% below the other: within the margin
    assert list(slow_ones({"g0": 100.0, "g1": 89.0})) == ["g1"]
    assert slow_ones({"g0": 100.0}) == {} and slow_ones({"g0": 100.0, "g1": None}) == {}


def test_blocks_and_counters():
    assert [block_bounds(10, 3, i) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert first_differing_block(["a", "b", "c"], ["a", "x", "y"]) == 1
    assert first_differing_block(["a", "b"], ["a", "b"]) is None
    assert first_differing_block(["a"], []) is None
    assert counter_growth({"ecc": 1, "xid": 0, "gone": 3}, {"ecc": 3, "xid": 0, "new": 5}) == {"ecc": 2}
