"""Running a membw plan (one `Result` per point) and picking the peak figures from the records.

The peak is taken at large sizes only: points whose one buffer set alone is at least
`ROTATION_LLC_FACTOR` x the last-level cache, where no cache can hold what a call streams. Smaller
points are kept out of it even when rotated (caches are not strict LRU, and small calls carry the
per-call overhead); when the plan has no large point the peak comes from the points that were not
cache-resident, and says so.
"""

from __future__ import annotations

from typing import Iterator, Optional

from .plan import DEFAULT_LLC_BYTES, OPS, ROTATION_LLC_FACTOR, MembwPlan


def run(plan: MembwPlan, probe) -> Iterator[tuple]:
    """Yield (point, Result) for every point of the plan, in order."""
    for point in plan.points:
        yield point, probe.measure(point)


def is_large(record: dict, llc_bytes: Optional[int]) -> bool:
    op = OPS.get(record["params"]["op"])
    if op is None or op.kind != "device":
        return False
    return record["params"]["bytes"] * op.device_buffers >= ROTATION_LLC_FACTOR * (llc_bytes or DEFAULT_LLC_BYTES)


def peaks(records: list, llc_bytes: Optional[int]) -> tuple:
    """({op: best record by median gbps}, from_large) over the device-memory ops' ok records."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("probe", "membw") == "membw"
          and OPS.get(r["params"].get("op")) is not None and OPS[r["params"]["op"]].kind == "device"]
    large = [r for r in ok if is_large(r, llc_bytes)]
    pool = large or [r for r in ok if not r["params"].get("cache_resident")]
    best = {}
    for record in pool:
        op = record["params"]["op"]
        if op not in best or record["metrics"]["gbps"] > best[op]["metrics"]["gbps"]:
            best[op] = record
    return best, bool(large)
