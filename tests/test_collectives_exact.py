"""The collectives check's inputs stay exact at any world size, and the link rule that the probe's flag
and the report share."""

from __future__ import annotations

import types

import pytest
import torch

from mlbench.collectives.plan import DTYPES, OPS, above_link_spec, busbw_ceiling_gbps, fill_for
from mlbench.collectives.probe import CollectiveProbe, expected_values, values

WORLD_SIZES = [2, 3, 255, 256, 257, 512, 2049, pytest.param(65536, marks=pytest.mark.slow)]
INDEX = torch.cat([torch.arange(40), torch.randint(0, 10**7, (40,), generator=torch.Generator().manual_seed(3))])


def _inputs(op: str, dtype_name: str, n: int):
    """Every rank's inputs at the INDEX elements: (a [rank, element] tensor in the element type, the fill)."""
    fill = fill_for(OPS[op], DTYPES[dtype_name], n)
    ints = values(torch.arange(n).unsqueeze(1), INDEX.unsqueeze(0), fill)
    element = ints.to(getattr(torch, DTYPES[dtype_name].torch_name))
    assert torch.equal(element.to(torch.int64), ints)  # the inputs themselves are exact
    return element, fill


def _ring_partial_sums_exact(x: torch.Tensor) -> bool:
    """A ring: each element's sum starts at a different rank and adds one rank per hop, rounding to the
    element type at every hop. True when every partial sum equals the exact one."""
    n, m = x.shape
    starts = (torch.arange(m) * 7919) % n  # element e's chunk starts at rank starts[e]
    columns = torch.arange(m)
    acc = x[starts, columns].clone()
    exact = acc.to(torch.float64)
    ok = True
    for hop in range(1, n):
        row = x[(starts + hop) % n, columns]
        acc = acc + row  # computed, then rounded to bf16/fp16: one hop
        exact = exact + row.to(torch.float64)
        ok = ok and bool(torch.equal(acc.to(torch.float64), exact))
    return ok


def _tree_partial_sums_exact(x: torch.Tensor, order: torch.Tensor) -> bool:
    """A binary tree over the ranks in `order`: pairs summed level by level, rounded at every node."""
    level, exact = x[order], x[order].to(torch.float64)
    ok = True
    while level.shape[0] > 1:
        if level.shape[0] % 2:
            level = torch.cat([level, torch.zeros_like(level[:1])])
            exact = torch.cat([exact, torch.zeros_like(exact[:1])])
        level = level[0::2] + level[1::2]
        exact = exact[0::2] + exact[1::2]
        ok = ok and bool(torch.equal(level.to(torch.float64), exact))
    return ok


@pytest.mark.parametrize("dtype_name", ["bf16", "fp16"])
@pytest.mark.parametrize("n", WORLD_SIZES)
def test_every_partial_sum_is_exact_in_ring_and_tree_order(dtype_name, n):
    x, fill = _inputs("all_reduce", dtype_name, n)
    assert _ring_partial_sums_exact(x)
    assert _tree_partial_sums_exact(x, torch.arange(n))
    assert _tree_partial_sums_exact(x, torch.randperm(n, generator=torch.Generator().manual_seed(n)))
    # what each rank expects is the exact sum, and no element sums to 0
    want = expected_values("all_reduce", 0, len(INDEX), fill, INDEX)
    assert torch.equal(x.to(torch.int64).sum(0), want) and bool((want > 0).all())


@pytest.mark.parametrize("n", [3, 512, 65536])
def test_reduce_scatter_expects_the_exact_sum_of_its_chunk(n):
    count = 5
    fill = fill_for(OPS["reduce_scatter"], DTYPES["bf16"], n)
    for rank in (0, 1, n - 1):
        index = torch.arange(count)
        global_index = index + rank * count
        total = values(torch.arange(n).unsqueeze(1), global_index.unsqueeze(0), fill).sum(0)
        assert torch.equal(expected_values("reduce_scatter", rank, count, fill, index), total)


@pytest.mark.parametrize("n", [300, 2049])
def test_every_rank_contributes_to_some_element(n):
    """With more ranks than the element type sums exactly, the contributing ranks rotate with the element."""
    fill = fill_for(OPS["all_reduce"], DTYPES["bf16"], n)
    assert fill.active < n
    index = torch.arange(n)
    contributes = values(torch.arange(n).unsqueeze(1), index.unsqueeze(0), fill) > 0
    assert bool(contributes.any(1).all())
    assert bool((contributes.sum(0) == fill.active).all())


def test_data_moving_ops_have_every_rank_nonzero_and_different():
    fill = fill_for(OPS["all_gather"], DTYPES["bf16"], 4096)
    grid = values(torch.arange(4096).unsqueeze(1), torch.arange(64).unsqueeze(0), fill)
    assert bool((grid >= 1).all()) and bool((grid <= 4).all())
    assert not torch.equal(grid[0], grid[1])


# --- the link rule ------------------------------------------------------------------------------


def test_busbw_ceiling_counts_in_switch_reduction_for_all_reduce_only():
    # NVLS all_reduce on 8 ranks: each rank sends and receives (1 + 1/8) S instead of the ring's 2*7/8 S
    assert busbw_ceiling_gbps("all_reduce", 8, 450) == pytest.approx(450 * 14 / 9)
    assert busbw_ceiling_gbps("all_reduce", 2, 450) == 450  # 2 ranks: the ring is already as good
    for op in ("all_gather", "reduce_scatter", "all_to_all", "broadcast", "sendrecv", "unknown_op"):
        assert busbw_ceiling_gbps(op, 8, 450) == 450


@pytest.mark.parametrize(
    "op, busbw, n, link, nodes, above",
    [
        ("all_reduce", 480.0, 8, 450.0, 1, False),  # a healthy 8xH100 with NVLink SHARP
        ("all_reduce", 701.0, 8, 450.0, 1, True),  # more than NVLS could do
        ("all_gather", 480.0, 8, 450.0, 1, True),  # nothing to sum in the switch
        ("all_gather", 440.0, 8, 450.0, 1, False),
        ("all_reduce", 9000.0, 16, 450.0, 2, False),  # across nodes: the NIC is not in the registry
        ("all_reduce", 9000.0, 8, None, 1, False),  # no link figure
        ("all_reduce", float("nan"), 8, 450.0, 1, False),
    ],
)
def test_above_link_spec(op, busbw, n, link, nodes, above):
    assert above_link_spec(op, busbw, n, link, nodes) is above


def _probe_result(op: str, busbw_gbps: float):
    """The probe's record for one timed point whose every sample gives `busbw_gbps` on 8 ranks of one node."""
    from mlbench.collectives.plan import Point
    from mlbench.timing import Timing

    n, size = 8, 1 << 30
    spec = OPS[op]
    point = Point(spec, size, spec.counts(size, 2, n), True, "throughput")
    time_s = point.counts.s_bytes / (busbw_gbps / spec.busbw_factor(n)) / 1e9
    ctx = types.SimpleNamespace(
        device=types.SimpleNamespace(type="cuda"),
        world_size=n,
        rank=0,
        backend="nccl",
        backend_version="nccl 2.21",
        layout=types.SimpleNamespace(nodes=1, ranks_per_node="8", text="1x8"),
        gather_floats=lambda values: [list(values)] * n,
    )
    probe = CollectiveProbe(ctx, DTYPES["bf16"], quick=True, link_gbps=450.0)
    timing = Timing(samples_s=(time_s,) * 5, warmup=1, reps=5, estimate_s=time_s, timer="device-events")
    return probe._result(point, probe.params(point), timing, 1, 0)


def test_the_probe_flags_what_the_rule_says():
    assert "above_link_spec" not in _probe_result("all_reduce", 480.0).flags  # NVLS on a healthy node
    assert "above_link_spec" in _probe_result("all_reduce", 720.0).flags
    assert "above_link_spec" in _probe_result("all_gather", 480.0).flags
