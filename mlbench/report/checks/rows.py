"""A check row: one line of summary.csv as a frozen dataclass whose fields are the columns, in order.

Every checker returns `CheckRow`s; `rows_frame` turns them into the verdicts DataFrame (the verdict
as its plain name). `Subject` is what a check is about (host and device); `NODE` is the `device`
of a node-level check (collectives, storage, node sanity). No pandas at import time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Optional

from ..verdicts import Verdict

NODE = "node"


@dataclass(frozen=True, kw_only=True)
class CheckRow:
    """One check of one device (or node): the measured figure, the spec it is compared with, the verdict."""

    host: str
    device: str
    device_type: Optional[str] = None
    device_name: Optional[str] = None
    spec: Optional[str] = None  # the registry key of the part, "" when it is not known
    probe: str
    check: str  # mamf.<dtype>, hbm, h2d, d2h, p2p, busbw.<op>, storage.<mode>[.buffered], node.<check>...
    value: Optional[float] = None  # the measured figure, in `unit`; higher is better for the fleet view
    unit: Optional[str] = None
    at: Optional[str] = None  # where it was measured: shape, op and size, block size and jobs...
    spec_value: Optional[float] = None
    pct_of_spec: Optional[float] = None
    expected_pct: Optional[float] = None  # the normal efficiency the verdict is relative to, in %
    reference: Optional[float] = None  # a published measurement (MAMF) in `unit`
    pct_of_reference: Optional[float] = None
    verdict: Verdict
    reason: str
    half_peak_bytes: Optional[float] = None  # collectives
    small_latency_us: Optional[float] = None  # collectives
    errors: Optional[float] = None  # collectives: wrong elements
    iops: Optional[float] = None  # storage
    lat_us_p99: Optional[float] = None  # storage
    direct: Optional[bool] = None  # storage: O_DIRECT (True) or through the page cache


COLUMNS = tuple(f.name for f in fields(CheckRow))
_CELLS = attrgetter(*COLUMNS)


@dataclass(frozen=True)
class Subject:
    """What a check is about: a device of a host, or the host itself (`device` NODE)."""

    host: str
    device: str
    device_type: Optional[str] = None
    device_name: Optional[str] = None

    def row(self, **columns) -> CheckRow:
        """A CheckRow of this subject with the other columns given."""
        return CheckRow(
            host=self.host, device=self.device, device_type=self.device_type, device_name=self.device_name, **columns
        )


def rows_frame(rows: list):
    """The DataFrame of check rows, one column per CheckRow field (summary.csv's layout)."""
    import pandas as pd

    frame = pd.DataFrame([_CELLS(r) for r in rows], columns=list(COLUMNS))
    frame["verdict"] = frame["verdict"].map(str, na_action="ignore")
    return frame


def as_number(value) -> Optional[float]:
    """A float, or None for a missing, NaN or non-numeric value."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def count_text(value) -> str:
    """An integer-valued number without '.0' (pandas turns int columns with gaps into floats)."""
    number = as_number(value)
    return str(int(number)) if number is not None and number == int(number) else str(value)
