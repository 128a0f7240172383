"""Measuring the fabric (returns `Result`s on rank 0; never prints). Every rank runs this.

Groups: each step of a view runs one collective in several disjoint groups at once (all rails, all
nodes, all pairs of a round). NCCL groups of one step are made with one communicator split
(`torch.distributed.split_group`) where the default group is bound to a device; otherwise every
rank makes every group of the step in the same order (`new_group`: cheap for non-members, no
global barrier); groups are cached.

One measurement in one group, as `mlbench.collectives` does it (and with its pieces): nccl-tests'
byte accounting and busbw factor (`collectives.plan`), exact integer inputs checked after timing
(`collectives.probe`), the shared timing loop with counts agreed by the group; a sample's time is the
slowest rank's; the slowest rank (by its median) and its node are kept. Then every group's leader
sends its figures to rank 0 (one gather over all ranks), which writes the records.

Fault injection for tests (`MLBENCH_FAULTS`, `mlbench.faults`): every collective call of a rank
sleeps `collective_delay_ms(its node, the group's nodes)` first.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist

from .. import faults as faults_module
from ..collectives.dist import DistContext, Watchdog, gather_into_tensor
from ..collectives.plan import OPS, DType, algbw_gbps, busbw_gbps, fill_for, max_repeats_in_place
from ..collectives.probe import SENTINEL, Budget, budget_for, count_wrong, expected_values, fill_inputs
from ..records import Result
from ..stats import summarize, time_metrics
from ..timing import TimingPlan, time_call
from .plan import (
    PAIR_OP,
    VIEW_OPS,
    FabricPlan,
    Finding,
    IntraPath,
    PairResult,
    Rounds,
    Stage,
    Topology,
    View,
    after_round_one,
    disjoint_batches,
    judge,
    localise,
    pair_floor,
    random_pairing,
    reference_gbps,
    retest_pairings,
    round_robin,
)

METHOD = (
    "mlbench-fabric/1: nccl-tests byte accounting; groups of a step measured at once; slowest rank per "
    "sample; k queued calls per event pair; barrier before each sample; exact integer check"
)


class FabricWatchdog(Watchdog):
    """The collectives watchdog, speaking for `mlbench fabric`."""

    def fire(self, why: str) -> None:
        try:
            sys.stderr.write(
                f"mlbench fabric: error: {self.who}: {why}, during {self._what}; records written so far are kept\n"
            )
            sys.stderr.flush()
            if self.on_exit is not None:
                self.on_exit(self.exit_code)
        finally:
            os._exit(self.exit_code)


# --- groups --------------------------------------------------------------------------------------

WORLD = "world"  # the default group


class Groups:
    """Disjoint subgroups of the default group, one call per step on every rank; cached by rank lists."""

    def __init__(self, ctx: DistContext, timeout_s: float):
        import datetime as _dt

        self.ctx = ctx
        self.timeout = _dt.timedelta(seconds=timeout_s)
        self._cache: dict = {}
        self.method = ""

    def mine(self, rank_lists: list):
        """This rank's group among `rank_lists` (WORLD for all ranks, None when in none)."""
        rank = self.ctx.rank
        lists = [sorted(r) for r in rank_lists if r]
        member = next((r for r in lists if rank in r), None)
        if len(lists) == 1 and len(lists[0]) == self.ctx.world_size:
            return WORLD
        key = tuple(tuple(r) for r in lists)
        if key not in self._cache:
            self._cache[key] = self._make(lists, member)
        return self._cache[key]

    def _make(self, lists: list, member: Optional[list]):
        split = getattr(dist, "split_group", None)
        default = dist.distributed_c10d._get_default_group()
        if self.ctx.backend == "nccl" and split is not None and getattr(default, "bound_device_id", None):
            try:
                self.method = "split_group"
                return split(split_ranks=lists, timeout=self.timeout)
            except (RuntimeError, NotImplementedError, ValueError):
                pass  # every rank fails alike (same torch, same backend): fall back together
        # every rank makes every group, in the same order (group names count the groups made so far, so
        # members-only creation would name a group differently on ranks that sat out a step)
        self.method = "new_group"
        made = None
        for ranks in lists:
            group = dist.new_group(ranks, timeout=self.timeout)
            if member == ranks:
                made = group
        return made


# --- one measurement in one group --------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One collective at one size in groups that run at the same time."""

    view: View
    op: str
    size_bytes: int
    groups: tuple  # rank lists
    labels: tuple  # per group: extra params (rail, node, node_a/node_b...)


class GroupBench:
    """Measures one collective in the caller's group; every member calls `measure` in the same order."""

    def __init__(
        self,
        ctx: DistContext,
        topo: Topology,
        dtype: DType,
        budget: Budget,
        delay_ms: Callable[[list], float],
        progress: Callable[[str], None],
    ):
        self.ctx = ctx
        self.topo = topo
        self.dtype = dtype
        self.budget = budget
        self.delay_ms = delay_ms
        self.progress = progress

    def _handle(self, group):
        return None if group == WORLD else group

    def _device_ids(self) -> dict:
        return {"device_ids": [self.ctx.device.torch_device.index]} if self.ctx.backend == "nccl" else {}

    def barrier(self, group) -> None:
        dist.barrier(group=self._handle(group), **self._device_ids())
        self.ctx.device.synchronize()

    def _reduce(self, group, value: float, op) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.ctx.tensor_device())
        dist.all_reduce(t, op=op, group=self._handle(group))
        return float(t.item())

    def measure(self, group, ranks: list, op_name: str, size_bytes: int) -> Optional[dict]:
        """On the group's leader (its first rank): {status, error, metrics, raw, params}; None elsewhere."""
        op = OPS[op_name]
        n = len(ranks)
        me = ranks.index(self.ctx.rank)
        counts = op.counts(size_bytes, self.dtype.element_bytes, n)
        nodes = sorted({self.topo.node_of_rank[r] for r in ranks})
        params = {
            "bytes": counts.s_bytes,
            "count": counts.count,
            "requested_bytes": size_bytes,
            "busbw_factor": op.busbw_factor(n),
        }
        leader = me == 0
        if counts.count == 0:
            why = f"{size_bytes} B gives no {self.dtype.name} elements per rank for {op_name} over {n} ranks"
            return {"status": "skipped", "error": why, "params": params} if leader else None
        delay_s = self.delay_ms(nodes) / 1e3
        handle = self._handle(group)
        what = f"{op_name} of {counts.s_bytes} B in a group of {n} rank(s) ({'+'.join(nodes[:4])})"
        self.progress(what + ": allocating")
        torch_dtype = getattr(torch, self.dtype.torch_name)
        device = self.ctx.tensor_device()
        buffers, error = None, None
        try:
            send = torch.empty(counts.send_count, dtype=torch_dtype, device=device)
            recv = send if op_name == "all_reduce" else torch.empty(counts.recv_count, dtype=torch_dtype, device=device)
            pristine = torch.empty_like(send) if op.reduces else None
            buffers = (send, recv, pristine)
        except Exception as exc:  # noqa: BLE001 - one rank out of memory must not hang the others
            error = exc
        if self._reduce(group, 1.0 if error is not None else 0.0, dist.ReduceOp.MAX):
            where = f"{type(error).__name__}: {error}"[:200] if error is not None else "another rank"
            return (
                {"status": "skipped", "error": f"could not allocate buffers ({where})", "params": params}
                if leader
                else None
            )
        send, recv, pristine = buffers

        if op_name == "all_reduce":

            def collective():
                dist.all_reduce(send, group=handle)
        elif op_name == "all_gather":

            def collective():
                gather_into_tensor(recv, send, group=handle)
        else:
            raise ValueError(f"the fabric probe does not run {op_name}")

        def call():
            if delay_s:
                time.sleep(delay_s)
            collective()

        fill = fill_for(op, self.dtype, n)
        fill_inputs(send, me, fill)
        if pristine is not None:
            pristine.copy_(send)

        def prepare():
            if pristine is not None:
                send.copy_(pristine)
            self.barrier(group)
            self.progress(what)

        prepare()
        call()  # first call: connections are made here, not in a timed sample
        self.ctx.device.synchronize()
        prepare()
        start = time.perf_counter()
        call()
        call()
        self.ctx.device.synchronize()
        estimate_s = max(self._reduce(group, (time.perf_counter() - start) / 2, dist.ReduceOp.MAX), 1e-7)
        b = self.budget
        calls = max(1, min(b.max_calls, math.ceil(b.sample_s / estimate_s)))
        cap = max_repeats_in_place(op, self.dtype, n, fill.levels)
        calls = min(calls, cap) if cap else calls

        def fn():
            for _ in range(calls):
                call()

        timing = time_call(
            fn,
            self.ctx.device,
            TimingPlan(warmup=b.warmup_samples, reps=b.samples),
            prepare=prepare,
            estimate_s=estimate_s * calls,
        )
        self.progress(what + ": checking")
        if recv is not send:
            recv.fill_(SENTINEL)
        fill_inputs(send, me, fill)
        self.barrier(group)
        call()
        self.ctx.device.synchronize()
        wrong = count_wrong(recv, lambda index: expected_values(op_name, me, counts.count, fill, index))
        errors = int(self._reduce(group, wrong, dist.ReduceOp.SUM))
        per_call = [s / calls for s in timing.samples_s]
        local = torch.tensor(per_call, dtype=torch.float64, device=device)
        everyone = torch.empty(n * len(per_call), dtype=torch.float64, device=device)
        gather_into_tensor(everyone, local, group=handle)
        if not leader:
            return None
        rows = everyone.view(n, len(per_call)).tolist()
        return self._figures(rows, ranks, op, counts.s_bytes, n, timing, calls, errors, fill, params)

    def _figures(
        self, rows: list, ranks: list, op, s_bytes: int, n: int, timing, calls: int, errors: int, fill, params: dict
    ) -> dict:
        slowest = [max(column) for column in zip(*rows)]
        stats = summarize(slowest)
        medians = [summarize(row).median for row in rows]
        worst = max(range(n), key=lambda i: medians[i])
        metrics = {
            **time_metrics(stats, "us"),
            "algbw_gbps": algbw_gbps(s_bytes, stats.median),
            "busbw_gbps": busbw_gbps(op, s_bytes, stats.median, n),
            "busbw_gbps_max": busbw_gbps(op, s_bytes, stats.min, n),
            "errors": errors,
            "slowest_rank": ranks[worst],
            "slowest_host": self.topo.node_of_rank[ranks[worst]],
            "rank_time_us_max": medians[worst] * 1e6,
            "rank_time_us_min": min(medians) * 1e6,
            "samples": timing.reps,
            "calls_per_sample": calls,
        }
        params = dict(params, timer=timing.timer, fill_levels=fill.levels, fill_ranks=fill.active)
        flags = ["noisy"] if stats.noisy else []
        out = {
            "status": "ok",
            "error": None,
            "metrics": metrics,
            "params": params,
            "flags": flags,
            "raw": {"time_us": [t * 1e6 for t in slowest], "rank_time_us": [t * 1e6 for t in medians]},
        }
        if errors:
            out.update(
                status="error",
                flags=flags + ["check_failed"],
                error=f"{errors} wrong element(s) in {op.name} of {s_bytes} B summed over {n} ranks",
            )
        return out


# --- the views and the pair rounds ----------------------------------------------------------------

PAIR_SAMPLES = 7  # a pair's verdict names a node: at least this many samples, whatever the plan's budget
PAIR_SAMPLE_S = 0.02


def pair_budget(budget: Budget) -> Budget:
    """The pair rounds' budget: the plan's, with enough samples and calls per sample for a stable median."""
    return replace(
        budget,
        samples=max(budget.samples, PAIR_SAMPLES),
        sample_s=max(budget.sample_s, PAIR_SAMPLE_S),
        max_calls=max(budget.max_calls, 20),
    )


class FabricProbe:
    """Runs the plan's views on every rank; rank 0 yields the records."""

    def __init__(
        self,
        ctx: DistContext,
        topo: Topology,
        plan: FabricPlan,
        seed: int,
        path: IntraPath,
        expected_of: Callable[[str], Optional[float]],
        progress: Callable[[str], None],
        environ=None,
    ):
        self.ctx = ctx
        self.topo = topo
        self.plan = plan
        self.seed = seed
        self.path = path
        self.expected_of = expected_of
        self.progress = progress
        self.groups = Groups(ctx, plan.timeout_s)
        node = topo.node_of_rank[ctx.rank]
        faults = faults_module.current(environ)
        budget = budget_for(ctx.device.type, plan.quick)
        delay = lambda nodes: faults.collective_delay_ms(node, nodes)  # noqa: E731
        self.bench = GroupBench(ctx, topo, plan.dtype, budget, delay, progress)
        self.pair_bench = GroupBench(ctx, topo, plan.dtype, pair_budget(budget), delay, progress)
        self.findings = None
        self.pair_results: list = []
        self.retests = 0

    @property
    def writes(self) -> bool:
        return self.ctx.rank == 0

    def common_params(self, view: View, op: str, ranks: list) -> dict:
        nodes = sorted({self.topo.node_of_rank[r] for r in ranks})
        return {
            "view": view.value,
            "op": op,
            "nodes": nodes,
            "group_size": len(ranks),
            "dtype": self.plan.dtype.name,
            "backend": self.ctx.backend,
            "backend_version": self.ctx.backend_version,
            "in_place": op == "all_reduce",
            "world_size": self.ctx.world_size,
            "fleet_nodes": len(self.topo.nodes),
            "ranks_per_node": self.topo.ranks_per_node,
            "intra_node_path": self.path.value,
            "threshold": self.plan.threshold,
            "method": METHOD,
        }

    def skipped(self, view: View, why: str) -> Result:
        ranks = list(range(self.ctx.world_size))
        op = PAIR_OP if view == View.PAIR else VIEW_OPS[0]
        return Result.skipped({**self.common_params(view, op, ranks), "bytes": self.plan.pair_bytes}, why)

    def results(self) -> Iterator[Result]:
        nodes = self.topo.nodes
        for view in self.plan.views:
            if view in (View.INTER, View.RAIL, View.PAIR) and len(nodes) < 2:
                if self.writes:
                    yield self.skipped(
                        view,
                        f"one node ({nodes[0]}): no network between nodes to measure; run under torchrun --nnodes N",
                    )
                continue
            if view in (View.RAIL, View.INTRA) and min(len(self.topo.ranks_of(n)) for n in nodes) < 2:
                if self.writes:
                    why = (
                        "one rank per node: the rail view is the inter view"
                        if view == View.RAIL
                        else "one rank per node: nothing inside a node to measure"
                    )
                    yield self.skipped(view, why)
                continue
            if view == View.PAIR:
                yield from self.pairs()
            else:
                yield from self.view(view)

    def view(self, view: View) -> Iterator[Result]:
        if view == View.INTER:
            groups, labels = [list(range(self.ctx.world_size))], [{}]
        elif view == View.RAIL:
            groups = self.topo.rails()
            labels = [{"rail": i} for i in range(len(groups))]
        else:
            groups = self.topo.node_groups()
            labels = [{"node": n} for n in self.topo.nodes]
        for op in VIEW_OPS:
            for size in self.plan.sizes:
                yield from self.step(Step(view, op, size, tuple(groups), tuple(labels)))

    def step(self, step: Step) -> Iterator[Result]:
        """Run one step in every group at once; rank 0 yields one Result per group."""
        group = self.groups.mine(list(step.groups))
        mine = next((ranks for ranks in step.groups if self.ctx.rank in ranks), None)
        local = None
        if mine is not None:
            bench = self.pair_bench if step.view == View.PAIR else self.bench
            local = bench.measure(group, sorted(mine), step.op, step.size_bytes)  # group ranks in rank order
            self.ctx.device.empty_cache()  # the step's buffers are gone with `measure`
            if local is not None:
                local["group"] = step.groups.index(mine)
        self.progress(f"{step.view} {step.op} {step.size_bytes} B: gathering")
        gathered = [None] * self.ctx.world_size if self.writes else None
        dist.gather_object(local, gathered, dst=0)
        if not self.writes:
            return
        for item in gathered:
            if item is None:
                continue
            ranks = list(step.groups[item["group"]])
            params = {**self.common_params(step.view, step.op, ranks), **item["params"], **step.labels[item["group"]]}
            yield Result(
                params=params,
                metrics=item.get("metrics", {}),
                status=item["status"],
                error=item["error"],
                flags=item.get("flags", []),
                raw=item.get("raw", {}),
            )

    # pairs ---------------------------------------------------------------------------------------

    def pairs(self) -> Iterator[Result]:
        nodes = self.topo.nodes
        if self.plan.rounds == Rounds.FULL:
            for number, pairing in enumerate(round_robin(nodes), 1):
                yield from self.pair_round(Stage.ROBIN, number, 0, pairing)
            last = len(round_robin(nodes))
        else:
            yield from self.pair_round(Stage.FIRST, 1, 0, random_pairing(nodes, self.seed))
            batches = None
            if self.writes:
                _, judged = judge(self.pair_results, Rounds.QUICK, self.plan.threshold, self.expected_of)
                state = after_round_one(judged, nodes)
                batches = retest_pairings(state.suspects, state.passed, self.seed, state.untested)
            for batch, pairing in enumerate(self.ctx.broadcast_object(batches)):
                self.retests += len(pairing.pairs)
                yield from self.pair_round(Stage.RETEST, 2, batch, pairing)
            last = 2
        confirm = None
        if self.writes:
            found = localise(self.pair_results, nodes, self.plan.rounds, self.plan.threshold, self.expected_of)
            confirm = disjoint_batches(found.candidates)
        for batch, pairing in enumerate(self.ctx.broadcast_object(confirm)):
            yield from self.pair_round(Stage.CONFIRM, last + 1, batch, pairing)
        if self.writes:
            self.findings = localise(self.pair_results, nodes, self.plan.rounds, self.plan.threshold, self.expected_of)
            yield from self.finding_results()

    def pair_round(self, stage: Stage, number: int, batch: int, pairing) -> Iterator[Result]:
        groups = tuple(self.topo.pair_ranks(a, b) for a, b in pairing.pairs)
        labels = tuple(
            {
                "node_a": a,
                "node_b": b,
                "stage": stage.value,
                "round": number,
                "batch": batch,
                "rounds": self.plan.rounds.value,
                "seed": self.seed,
                "bye": pairing.bye,
            }
            for a, b in pairing.pairs
        )
        step = Step(View.PAIR, PAIR_OP, self.plan.pair_bytes, groups, labels)
        measured = list(self.step(step)) if groups else []
        if not self.writes:
            return
        for result in measured:
            p = result.params
            gbps = result.metrics.get("busbw_gbps", math.nan) if result.ok else math.nan
            self.pair_results.append(PairResult(stage, number, p["node_a"], p["node_b"], gbps))
        reference = reference_gbps(self.pair_results, self.plan.rounds)
        for result in measured:
            p = result.params
            floor = pair_floor(p["node_a"], p["node_b"], reference, self.plan.threshold, self.expected_of)
            gbps = result.metrics.get("busbw_gbps", math.nan) if result.ok else math.nan
            p.update(reference_gbps=reference, floor_gbps=floor.gbps, floor=floor.why)
            expected = [self.expected_of(p["node_a"]), self.expected_of(p["node_b"])]
            if all(expected):
                p["expected_gbps"] = min(expected)
            if result.ok and gbps < floor.gbps:
                result.flags.append("below_floor")
            yield result

    def finding_results(self) -> Iterator[Result]:
        f = self.findings
        base = {
            "op": PAIR_OP,
            "bytes": self.plan.pair_bytes,
            "rounds": self.plan.rounds.value,
            "seed": self.seed,
            "threshold": self.plan.threshold,
            "reference_gbps": f.reference_gbps,
            "view": View.PAIR.value,
            "backend": self.ctx.backend,
            "fleet_nodes": len(self.topo.nodes),
        }
        for node, why in sorted(f.nodes.items()):
            ranks = self.topo.ranks_of(node)
            yield Result.failed(
                {**base, "finding": Finding.NODE.value, "node": node, "nodes": [node], "group_size": len(ranks)},
                f"slow node {node}: {why}",
            )
        for (a, b), why in sorted(f.links.items()):
            yield Result.failed(
                {
                    **base,
                    "finding": Finding.LINK.value,
                    "node_a": a,
                    "node_b": b,
                    "nodes": [a, b],
                    "group_size": len(self.topo.pair_ranks(a, b)),
                },
                f"slow link {a}+{b}: {why}",
            )
