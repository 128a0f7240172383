"""Running a MAMF plan: the warm-up, then a sweep or the search, yielding one `Result` per shape."""

from __future__ import annotations

from typing import Iterator, Optional

from .plan import MamfPlan, SearchSettings, SearchState, Shape, search, sweep_shapes
from .probe import MatmulProbe


def warmup_shape(plan: MamfPlan) -> Shape:
    """The plan's middle-sized shape: big enough to load the device, small enough to fit."""
    shapes = sorted(sweep_shapes(plan) if plan.grid is None else [plan.grid.shape((len(plan.grid.m) // 2, len(plan.grid.n) // 2, len(plan.grid.k) // 2))],
                    key=lambda s: s.flops)
    return shapes[len(shapes) // 2]


def run(plan: MamfPlan, probe: MatmulProbe, settings: Optional[SearchSettings] = None,
        state: Optional[SearchState] = None) -> Iterator:
    """Yield a Result per measured shape (params carry `mode`, and `phase` in a search)."""
    probe.warm_up(warmup_shape(plan), plan.warmup_s)
    if plan.mode == "sweep":
        for shape in sweep_shapes(plan):
            yield probe.measure(shape, mode="sweep")
        return
    last = {}

    def measure(shape: Shape, phase: str):
        result = probe.measure(shape, short=phase != "confirm", mode="search", phase=phase)
        last["result"] = result
        return result.metrics["tflops"] if result.ok else None

    for _phase, _shape, _score in search(plan.grid, measure, settings or SearchSettings(), state):
        yield last["result"]


def best_record(records: list) -> Optional[dict]:
    """The best shape by median TFLOPS: among a search's confirmed shapes, else among all ok ones."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("probe", "mamf") == "mamf"]
    confirmed = [r for r in ok if r["params"].get("phase") == "confirm"]
    pool = confirmed or ok
    return max(pool, key=lambda r: r["metrics"]["tflops"]) if pool else None
