"""Running a collectives plan: which points fit in memory, then one `Result` per point, in order.

Every rank walks the same points in the same order (the collectives pair up by order).
"""

from __future__ import annotations

from typing import Iterator, Optional

from ..records import Result
from ..sizes import format_bytes
from .plan import CollectivesPlan, Point
from .probe import CHUNK_ELEMENTS, CollectiveProbe

# besides its buffers a point needs room for the check's int64 temporaries (a few per chunk)
CHECK_BYTES = 4 * 8 * CHUNK_ELEMENTS
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


def too_big_result(probe: CollectiveProbe, point: Point, limit_bytes: int) -> Result:
    need = point.buffer_bytes(probe.dtype.element_bytes)
    return Result.skipped(probe.params(point), f"out of memory: needs {format_bytes(need)} per rank, "
                                               f"{format_bytes(limit_bytes)} usable (85% of the smallest free memory)")


def run(plan: CollectivesPlan, probe: CollectiveProbe, points: list) -> Iterator[Result]:
    """Warm the communicator up once, then measure each point."""
    probe.ctx.all_sum_int(1)  # first collective: NCCL builds its communicator here, not in a timed point
    for point in points:
        yield probe.measure(point)
