import math

import pytest

from mlbench.stats import percentile, robust_z, summarize


def test_percentile_interpolates_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 0) == 1
    assert percentile([1, 2, 3, 4], 100) == 4
    assert percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)  # 0.95 * 4 = 3.8 -> 40 + 0.8*10
    assert math.isnan(percentile([], 50))


def test_summary_hand_computed():
    s = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.n == 8
    assert s.mean == 5.0
    assert s.median == 4.5
    assert s.min == 2.0 and s.max == 9.0
    assert s.stdev == pytest.approx(math.sqrt(32 / 7))  # sample standard deviation
    assert s.cv == pytest.approx(math.sqrt(32 / 7) / 5)
    assert s.noisy


def test_single_sample_and_quiet_samples():
    s = summarize([3.0])
    assert (s.median, s.stdev, s.cv, s.noisy) == (3.0, 0.0, 0.0, False)
    assert not summarize([1.0, 1.01, 0.99]).noisy
    with pytest.raises(ValueError):
        summarize([])


def test_robust_z_flags_the_outlier_only():
    z = robust_z([100, 101, 99, 100, 102, 60])
    assert z[-1] < -10
    assert all(abs(v) < 2 for v in z[:-1])
    assert robust_z([5, 5, 5]) == [0.0, 0.0, 0.0]


def test_time_and_rate_metrics_from_one_summary():
    from mlbench.stats import rate_metrics, time_metrics

    s = summarize([0.001, 0.002, 0.004])  # seconds
    t = time_metrics(s, "ms")
    assert t["time_ms"] == pytest.approx(2.0) and t["time_ms_min"] == pytest.approx(1.0)
    assert t["time_ms_max"] == pytest.approx(4.0) and t["time_ms_mean"] == pytest.approx(7 / 3)
    assert time_metrics(s, "us")["time_us"] == pytest.approx(2000.0)
    # 2e9 FLOP of work: 1 TFLOPS at the median (2 ms), 2 at the fastest (1 ms), 0.5 at the slowest
    r = rate_metrics("tflops", lambda seconds: 2e9 / seconds / 1e12, s)
    assert (r["tflops"], r["tflops_max"], r["tflops_min"]) == pytest.approx((1.0, 2.0, 0.5))
