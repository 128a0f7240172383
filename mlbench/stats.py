"""Statistics over raw samples: computed here and nowhere else.

Quantiles use linear interpolation between closest ranks (numpy's default, "type 7"), so
`percentile([1, 2, 3, 4], 50) == 2.5`. Pure Python: no numpy import on the start-up path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

# Coefficient of variation above which a measurement is called noisy.
NOISY_CV = 0.05


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no samples."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    values = sorted(samples)
    if not values:
        return math.nan
    position = (len(values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    fraction = position - low
    return values[low] + (values[high] - values[low]) * fraction


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one set of samples (same unit as the samples)."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    p5: float
    p95: float
    p99: float
    stdev: float
    cv: float  # stdev / mean: the spread, unitless

    @property
    def noisy(self) -> bool:
        return self.n > 1 and self.cv > NOISY_CV

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}{key}": value for key, value in asdict(self).items()}


def summarize(samples: Sequence[float]) -> Summary:
    """Summary of samples; the standard deviation is the sample (n-1) one."""
    values = [float(s) for s in samples]
    n = len(values)
    if n == 0:
        raise ValueError("no samples to summarize")
    mean = math.fsum(values) / n
    stdev = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Summary(
        n=n,
        median=percentile(values, 50),
        mean=mean,
        min=min(values),
        max=max(values),
        p5=percentile(values, 5),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        stdev=stdev,
        cv=stdev / mean if mean else 0.0,
    )


_UNIT_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6}


def time_metrics(summary: Summary, unit: str = "ms") -> dict:
    """Record metrics of a time summary (samples in seconds): `time_<unit>` is the median."""
    scale = _UNIT_SCALE[unit]
    return {
        f"time_{unit}": summary.median * scale,
        f"time_{unit}_mean": summary.mean * scale,
        f"time_{unit}_min": summary.min * scale,
        f"time_{unit}_max": summary.max * scale,
        f"time_{unit}_p5": summary.p5 * scale,
        f"time_{unit}_p95": summary.p95 * scale,
        f"time_{unit}_p99": summary.p99 * scale,
        "cv": summary.cv,
    }


def rate_metrics(name: str, rate_of: Callable[[float], float], summary: Summary) -> dict:
    """A rate (work / time) from a time summary: `name` from the median time, `_mean` from the mean,
    `_max` from the fastest sample and `_min` from the slowest."""
    return {
        name: rate_of(summary.median),
        f"{name}_mean": rate_of(summary.mean),
        f"{name}_max": rate_of(summary.min),
        f"{name}_min": rate_of(summary.max),
    }


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def robust_z(values: Sequence[float]) -> list[float]:
    """(x - median) / (1.4826 * MAD) for each value: outlier scores that one bad node cannot skew.

    With no spread at all (MAD = 0) every score is 0.
    """
    center = median(values)
    mad = median([abs(v - center) for v in values])
    scale = 1.4826 * mad
    return [0.0 if scale == 0 else (v - center) / scale for v in values]
