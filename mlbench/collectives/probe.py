"""Measuring one collective at one size (returns `Result`s; never prints). Every rank runs this.

Data (`plan.Fill`): small integers from a hash of the element index, h(i) = (40503 i) mod 65521:
f(r, i) = (h(i) + j) mod V + 1 with j = (r - i) mod n, for the `active` ranks j < k, else 0.
Ops that move data have every rank active (never zeros, different on every rank); reducing ops keep
k * V within the dtype's exact integers, so every partial sum is exact in any order at any world
size. Every rank can compute what any output element must be (sums in closed form). Reducing ops
get their inputs restored from a pristine copy before every sample (outside the timed span), so
repeated in-place sums cannot overflow; the repetitions per sample are capped for the same reason
(`max_repeats_in_place`).

Timing (the shared loop, `mlbench.timing.time_call`, with counts agreed by all ranks):
- throughput: each sample is k calls queued back to back between two events (nccl-tests' main
  column: host clock / device events around n ops, divided by n); a barrier before every sample;
- latency: each sample is one call between two events, a barrier before each.
The time of a sample is the slowest rank's (all ranks' samples are gathered); `time_us` is the
median over samples, with mean/min/max/p99; per-rank medians give `rank_time_us_mean/min`.

Check: after timing, fresh inputs (and a -1 sentinel in receive buffers), one call, every output
element compared with its exact value; `errors` = wrong elements summed over ranks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist

from ..records import Result
from ..stats import summarize, time_metrics
from ..timing import TimingPlan, time_call
from .dist import DistContext, gather_into_tensor, reduce_scatter_into_tensor
from .plan import (
    CHUNK_ELEMENTS,
    DType,
    Fill,
    Point,
    above_link_spec,
    algbw_gbps,
    busbw_gbps,
    fill_for,
    max_repeats_in_place,
    too_big_reason,
    too_small_reason,
)

METHOD = (
    "mlbench-collectives/1: nccl-tests byte accounting; slowest rank per sample; throughput = k queued calls "
    "per event pair, latency = 1 call per event pair; barrier before each sample; exact integer check"
)
HASH_MUL, HASH_MOD = 40503, 65521
SENTINEL = -1.0


@dataclass(frozen=True)
class Budget:
    """Repetition counts: throughput samples of up to `max_calls` calls filling ~`sample_s`;
    latency samples of one call filling ~`latency_s`, clamped to [min_latency, max_latency]."""

    samples: int
    warmup_samples: int
    sample_s: float
    max_calls: int
    latency_s: float
    min_latency: int
    max_latency: int


def budget_for(device_type: str, quick: bool) -> Budget:
    if quick:
        return Budget(
            samples=3, warmup_samples=1, sample_s=0.002, max_calls=10, latency_s=0.02, min_latency=5, max_latency=20
        )
    if device_type == "cpu":
        return Budget(
            samples=5, warmup_samples=1, sample_s=0.01, max_calls=20, latency_s=0.1, min_latency=10, max_latency=100
        )
    return Budget(
        samples=10, warmup_samples=2, sample_s=0.01, max_calls=20, latency_s=0.2, min_latency=20, max_latency=200
    )


# --- data: fill and expected values ----------------------------------------------------------


def _h(index: "torch.Tensor") -> "torch.Tensor":
    return (index * HASH_MUL) % HASH_MOD


def values(rank, index: "torch.Tensor", fill: Fill) -> "torch.Tensor":
    """f(r, i) as int64 (see `plan.Fill`); `rank` is an int or a tensor that broadcasts with `index`."""
    j = (rank - index) % fill.world_size
    value = (_h(index) + j) % fill.levels + 1
    if fill.active < fill.world_size:
        value = torch.where(j < fill.active, value, torch.zeros_like(value))
    return value


def reduced_values(index: "torch.Tensor", fill: Fill) -> "torch.Tensor":
    """The sum over all ranks of f(r, i), in closed form: the active ranks' values cycle through 1..V."""
    full, rest = divmod(fill.active, fill.levels)
    base = _h(index)
    total = torch.full_like(index, fill.active + full * fill.levels * (fill.levels - 1) // 2)
    for t in range(rest):
        total += (base + t) % fill.levels
    return total


def expected_values(op: str, rank: int, count: int, fill: Fill, index: "torch.Tensor") -> "torch.Tensor":
    """What element `index` of this rank's result must hold (int64), for each op."""
    n = fill.world_size
    if op == "all_reduce":
        return reduced_values(index, fill)
    if op == "reduce_scatter":
        return reduced_values(index + rank * count, fill)
    if op == "all_gather":
        return values(index // count, index % count, fill)
    if op == "all_to_all":
        return values(index // count, rank * count + index % count, fill)
    if op == "broadcast":
        return values(0, index, fill)
    if op == "sendrecv":
        return values((rank - 1) % n, index, fill)
    raise ValueError(f"no expected values for {op!r}")


def fill_inputs(tensor: "torch.Tensor", rank: int, fill: Fill, offset: int = 0) -> None:
    """tensor[i] = f(rank, offset + i), chunk by chunk."""
    for start in range(0, tensor.numel(), CHUNK_ELEMENTS):
        end = min(start + CHUNK_ELEMENTS, tensor.numel())
        index = torch.arange(offset + start, offset + end, dtype=torch.int64, device=tensor.device)
        tensor[start:end].copy_(values(rank, index, fill))


def count_wrong(result: "torch.Tensor", expected: Callable[["torch.Tensor"], "torch.Tensor"]) -> int:
    """Elements of `result` that differ from `expected(index)`, compared exactly (as float64)."""
    wrong = 0
    for start in range(0, result.numel(), CHUNK_ELEMENTS):
        end = min(start + CHUNK_ELEMENTS, result.numel())
        index = torch.arange(start, end, dtype=torch.int64, device=result.device)
        want = expected(index).to(torch.float64)
        wrong += int((result[start:end].to(torch.float64) != want).sum().item())
    return wrong


# --- buffers and the one call ------------------------------------------------------------------


@dataclass
class Buffers:
    """One rank's tensors for a point: `send` is what it contributes, `result` what it checks."""

    send: "torch.Tensor"
    result: "torch.Tensor"
    whole: "torch.Tensor"  # every tensor the call writes or reads (for sentinels)
    pristine: Optional["torch.Tensor"]
    call: Callable[[], object]
    impl: str


def make_buffers(point: Point, dtype: DType, ctx: DistContext) -> Buffers:
    """Allocate one point's tensors and bind the torch.distributed call that is timed."""
    c = point.counts
    torch_dtype = getattr(torch, dtype.torch_name)
    device = ctx.tensor_device()
    rank, n = ctx.rank, ctx.world_size
    op = point.op.name

    def empty(count: int) -> "torch.Tensor":
        return torch.empty(count, dtype=torch_dtype, device=device)

    if op in ("all_reduce", "broadcast"):  # torch: one tensor, in place
        buf = empty(c.count)
        if op == "all_reduce":
            call, impl = (lambda: dist.all_reduce(buf)), "all_reduce"
        else:
            call, impl = (lambda: dist.broadcast(buf, src=0)), "broadcast(src=0)"
        send, result, whole = buf, buf, buf
    elif op == "all_gather":
        whole = empty(c.recv_count)
        send = whole.narrow(0, rank * c.count, c.count) if point.in_place else empty(c.send_count)
        result = whole
        call, impl = (lambda: gather_into_tensor(whole, send)), gather_into_tensor.__name__
    elif op == "reduce_scatter":
        send = empty(c.send_count)
        result = send.narrow(0, rank * c.count, c.count) if point.in_place else empty(c.recv_count)
        whole = send if point.in_place else result
        call, impl = (lambda: reduce_scatter_into_tensor(result, send)), reduce_scatter_into_tensor.__name__
    elif op == "all_to_all":
        send, result = empty(c.send_count), empty(c.recv_count)
        whole = result
        call, impl = (lambda: dist.all_to_all_single(result, send)), "all_to_all_single"
    elif op == "sendrecv":
        send, result = empty(c.send_count), empty(c.recv_count)
        whole = result
        peer_to, peer_from = (rank + 1) % n, (rank - 1) % n

        def call():
            ops = [dist.P2POp(dist.isend, send, peer_to), dist.P2POp(dist.irecv, result, peer_from)]
            for work in dist.batch_isend_irecv(ops):
                work.wait()

        impl = "batch_isend_irecv(ring: send to rank+1, receive from rank-1)"
    else:
        raise ValueError(f"unknown op {op!r}")
    pristine = torch.empty_like(send) if point.op.reduces else None
    return Buffers(send, result, whole, pristine, call, impl)


class CollectiveProbe:
    """Measures points on every rank; all ranks must call `measure` with the same points in order."""

    def __init__(
        self,
        ctx: DistContext,
        dtype: DType,
        quick: bool,
        link_gbps: Optional[float] = None,
        progress: Optional[Callable[[str], None]] = None,
    ):
        self.ctx = ctx
        self.dtype = dtype
        self.budget = budget_for(ctx.device.type, quick)
        self.link_gbps = link_gbps
        self.progress = progress or (lambda what: None)

    # all ranks agree on every count, so they run the same number of calls
    def params(self, point: Point) -> dict:
        c = point.counts
        return {
            "op": point.op.name,
            "bytes": c.s_bytes,
            "count": c.count,
            "dtype": self.dtype.name,
            "world_size": self.ctx.world_size,
            "backend": self.ctx.backend,
            "in_place": point.in_place,
            "mode": point.mode,
            "requested_bytes": point.size_bytes,
            "send_count": c.send_count,
            "recv_count": c.recv_count,
            "busbw_factor": point.op.busbw_factor(self.ctx.world_size),
            "backend_version": self.ctx.backend_version,
            "nodes": self.ctx.layout.nodes,
            "ranks_per_node": self.ctx.layout.ranks_per_node,
            "layout": self.ctx.layout.text,
        }

    def unsupported_reason(self, point: Point) -> Optional[str]:
        if point.op.name == "sendrecv" and self.ctx.world_size < 2:
            return "sendrecv needs at least 2 ranks (a ring of one rank would send to itself)"
        return too_small_reason(point, self.dtype, self.ctx.world_size)

    def measure_all(self, points: list) -> Iterator[Result]:
        """Warm the communicator up once, then measure each point (every rank, same points, same order)."""
        self.ctx.all_sum_int(1)  # first collective: NCCL builds its communicator here, not in a timed point
        for point in points:
            yield self.measure(point)

    def too_big_result(self, point: Point, limit_bytes: int) -> Result:
        """A point that does not fit in `limit_bytes` on every rank: skipped without allocating."""
        return Result.skipped(self.params(point), too_big_reason(point, self.dtype.element_bytes, limit_bytes))

    def fill(self, point: Point) -> Fill:
        return fill_for(point.op, self.dtype, self.ctx.world_size)

    def measure(self, point: Point) -> Result:
        params = self.params(point)
        why = self.unsupported_reason(point)
        if why:
            return Result.skipped(params, why)
        placement = "in-place" if point.in_place else "out-of-place"
        what = f"{point.op.name} of {point.counts.s_bytes} B ({placement}, {point.mode})"
        self.progress(what + ": allocating")
        buffers, error = None, None
        try:
            buffers = make_buffers(point, self.dtype, self.ctx)
        except Exception as exc:  # noqa: BLE001 - out of memory on one rank must not hang the others
            error = exc
        failed = self.ctx.all_max(1.0 if error is not None else 0.0)
        if failed:
            del buffers
            self.ctx.device.empty_cache()
            if error is not None and self.ctx.device.is_oom(error):
                first_line = str(error).splitlines()[0][:160]
                return Result.skipped(params, f"out of memory on rank {self.ctx.rank}: {first_line}")
            where = f"rank {self.ctx.rank}: {type(error).__name__}: {error}" if error is not None else "another rank"
            return Result.skipped(params, f"could not allocate buffers ({where})"[:300])
        try:
            params["impl"] = buffers.impl
            timing, calls = self._time(point, buffers, what)
            self.progress(what + ": checking")
            errors = self._check(point, buffers)
        finally:
            del buffers
            self.ctx.device.empty_cache()
        return self._result(point, params, timing, calls, errors)

    def _restore(self, buffers: Buffers) -> None:
        if buffers.pristine is not None:
            buffers.send.copy_(buffers.pristine)

    def _time(self, point: Point, buffers: Buffers, what: str):
        fill = self.fill(point)
        fill_inputs(buffers.send, self.ctx.rank, fill)
        if buffers.pristine is not None:
            buffers.pristine.copy_(buffers.send)
        call = buffers.call

        def prepare():
            self._restore(buffers)
            self.ctx.barrier()
            self.progress(what)

        prepare()
        estimate_s = self._agreed_estimate(call, prepare)
        b = self.budget
        if point.mode == "throughput":
            calls = max(1, min(b.max_calls, math.ceil(b.sample_s / estimate_s)))
            cap = max_repeats_in_place(point.op, self.dtype, self.ctx.world_size, fill.levels)
            calls = min(calls, cap) if cap else calls

            def fn():
                for _ in range(calls):
                    call()

            plan = TimingPlan(warmup=b.warmup_samples, reps=b.samples)
        else:
            calls, fn = 1, call
            reps = max(b.min_latency, min(b.max_latency, math.ceil(b.latency_s / estimate_s)))
            plan = TimingPlan(warmup=2, reps=reps)
        timing = time_call(fn, self.ctx.device, plan, prepare=prepare, estimate_s=estimate_s * calls)
        return timing, calls

    def _agreed_estimate(self, call, prepare) -> float:
        """One call's time: the slowest rank's mean of two synchronized calls (after one untimed)."""
        call()
        self.ctx.device.synchronize()
        prepare()
        start = time.perf_counter()
        call()
        call()
        self.ctx.device.synchronize()
        local = (time.perf_counter() - start) / 2
        return max(self.ctx.all_max(local), 1e-7)

    def _check(self, point: Point, buffers: Buffers) -> int:
        rank, c, fill = self.ctx.rank, point.counts.count, self.fill(point)
        if buffers.whole is not buffers.send:
            buffers.whole.fill_(SENTINEL)
        fill_inputs(buffers.send, rank, fill)
        self.ctx.barrier()
        buffers.call()
        self.ctx.device.synchronize()
        op = point.op.name
        local = count_wrong(buffers.result, lambda index: expected_values(op, rank, c, fill, index))
        return self.ctx.all_sum_int(local)

    def _result(self, point: Point, params: dict, timing, calls: int, errors: int) -> Result:
        per_call = [s / calls for s in timing.samples_s]
        ranks = self.ctx.gather_floats(per_call)  # [rank][sample]
        slowest = [max(column) for column in zip(*ranks)]
        stats = summarize(slowest)
        rank_medians = [summarize(row).median for row in ranks]
        s_bytes, n = point.counts.s_bytes, self.ctx.world_size
        metrics = {
            **time_metrics(stats, "us"),
            "rank_time_us_mean": sum(rank_medians) / len(rank_medians) * 1e6,
            "rank_time_us_min": min(rank_medians) * 1e6,
            "algbw_gbps": algbw_gbps(s_bytes, stats.median),
            "busbw_gbps": busbw_gbps(point.op, s_bytes, stats.median, n),
            "algbw_gbps_max": algbw_gbps(s_bytes, stats.min),
            "busbw_gbps_max": busbw_gbps(point.op, s_bytes, stats.min, n),
            "errors": errors,
            "samples": timing.reps,
            "warmup_samples": timing.warmup,
            "calls_per_sample": calls,
        }
        fill = self.fill(point)
        params.update(timer=timing.timer, method=METHOD, fill_levels=fill.levels, fill_ranks=fill.active)
        flags = []
        if stats.noisy:
            flags.append("noisy")
        if n == 1:
            flags.append("single_rank")
        if above_link_spec(point.op.name, metrics["busbw_gbps_max"], n, self.link_gbps, self.ctx.layout.nodes):
            flags.append("above_link_spec")
        raw = {"time_us": [t * 1e6 for t in slowest], "rank_time_us": [t * 1e6 for t in rank_medians]}
        if errors:
            return Result.check_failed(
                params,
                metrics,
                f"{errors} wrong element(s) in {point.op.name} of {s_bytes} B "
                f"({'in-place' if point.in_place else 'out-of-place'}) summed over {n} ranks",
                flags,
                raw,
            )
        return Result(params=params, metrics=metrics, flags=flags, raw=raw)
