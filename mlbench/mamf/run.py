"""Running a MAMF plan: the warm-up, then a sweep or the search, yielding one `Result` per shape."""

from __future__ import annotations

from typing import Iterator, Optional

from .plan import MamfPlan, SearchSettings, SearchState, Shape, best_record, search, sweep_shapes
from .probe import MatmulProbe

__all__ = ["run", "warmup_shape", "best_record"]  # best_record: the rule lives in plan


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

