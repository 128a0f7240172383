"""Measuring training steps (returns `Result`s; never prints). Every rank runs this.

A scaling point of size k: the ranks form world/k groups of k consecutive ranks, and every group
trains its own copy of the model at once (every device busy): one device alone (no wrapper), DDP or
FSDP (`fully_shard` per block and on the root, bf16 parameters and fp32 gradient reduction) over its
group. Each rank: build the model (same seed everywhere), AdamW, the synthetic task (its own
sequences), `warmup` untimed steps, then the timed steps through `mlbench.timing.time_call` (an
event pair around each optimizer step, one synchronize at the end). The number of timed steps is
agreed by all ranks (from `--steps`, or from `--duration` over the slowest rank's warm-up step).

One step: `grad_accum` micro-batches (forward under autocast, loss, backward; gradients synchronised
on the last one only), then the optimizer step. The loss of every step stays on the device until
the point ends (no host sync inside the timed loop).

Figures of a group (rank 0 gathers every rank's samples): per step the slowest rank's time; tokens/s
= k x tokens per device and step / median step time; TFLOPS per device from `plan.ModelShape.
flops_per_token`; MFU against the dense peak of the dtype (registry); utilisation against the
device's own best MAMF of the dtype when the run directory holds mamf records. A point of size 1
gives one record per rank (the per-device view); larger points one record from the median group,
with the scaling efficiency against the single-device figures of its ranks.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist

from ..records import Result, Status, hostname, read_records
from ..stats import median, summarize
from ..timing import TimingPlan, time_call
from .model import PermutationTask, Transformer, loss_of
from .plan import (
    ModelShape,
    Parallel,
    TrainPlan,
    fraction,
    groups_of,
    parallel_for,
    tflops_per_device,
    tokens_per_s,
)

METHOD = (
    "mlbench-train/1: synthetic decoder-only transformer, AdamW, permutation-walk task generated on the device; "
    "event pair per optimizer step, slowest rank per step; FLOPs = 6 N + 12 layers seq_len hidden per token"
)
MODEL_SEED = 0
ADAMW = dict(betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)
MIN_DURATION_STEPS = 3
AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


@dataclass(frozen=True)
class Precision:
    """The dtype a run trains in: `bf16` under autocast, or `fp32`; `note` says why bf16 was not used."""

    name: str
    note: Optional[str] = None

    @property
    def autocast(self) -> bool:
        return self.name in AUTOCAST_DTYPES


def precision_for(device, asked: str) -> Precision:
    """bf16 autocast where the device supports it (CUDA sm80+, ROCm, XPU, a CPU with bf16 kernels), else fp32."""
    if asked == "fp32":
        return Precision("fp32")
    if device.type == "cuda":
        capability = device.capability()
        if capability is None or capability >= (8, 0):
            return Precision("bf16")
        return Precision(
            "fp32",
            f"bf16 needs compute capability 8.0 or newer (this device: "
            f"{capability[0]}.{capability[1]}): training in fp32",
        )
    if device.type == "xpu":
        return Precision("bf16")
    if device.type == "cpu":
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return Precision("bf16")
        return Precision("fp32", "this CPU has no bf16 kernels: training in fp32")
    return Precision("fp32", f"bf16 autocast is not used on {device.type}: training in fp32")


@dataclass
class RankFigures:
    """What one rank measured at one point."""

    step_s: list  # timed steps, seconds each
    loss_first: float  # the first (warm-up) step's loss
    loss_last: float  # the last timed step's loss
    peak_memory_bytes: Optional[int]
    timer: str


@dataclass(frozen=True)
class Identity:
    """Where every rank is: host, device index (the local rank on the CPU) and name, node key (to count nodes)."""

    hosts: tuple
    devices: tuple
    names: tuple
    nodes: tuple  # node keys (dist.node_key): two torchrun launches on one machine are two nodes

    def nodes_in(self, ranks: list) -> int:
        return len({self.nodes[r] for r in ranks})


def gather_identity(ctx) -> Identity:
    info = ctx.device.info
    mine = (hostname(), info.index if info.index is not None else ctx.layout.local_rank, info.name)
    everyone = [None] * ctx.world_size
    dist.all_gather_object(everyone, mine)
    return Identity(
        tuple(e[0] for e in everyone),
        tuple(e[1] for e in everyone),
        tuple(e[2] for e in everyone),
        tuple(ctx.layout.hosts),
    )


# --- one rank's model, optimizer and step ----------------------------------------------------------


def build_model(shape: ModelShape, device) -> torch.nn.Module:
    """The model on the device, the same weights on every rank (fixed seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MODEL_SEED)
        with torch.device(device):
            return Transformer(shape)


def wrap(model: torch.nn.Module, parallel: Parallel, group, device, precision: Precision) -> torch.nn.Module:
    """DDP or FSDP over `group` (None: the default group); the model itself for one device."""
    if parallel == Parallel.DDP:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids, process_group=group)
    if parallel == Parallel.FSDP:
        from torch.distributed.device_mesh import DeviceMesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = DeviceMesh.from_group(group or dist.group.WORLD, device.type)
        policy = MixedPrecisionPolicy(param_dtype=AUTOCAST_DTYPES.get(precision.name), reduce_dtype=torch.float32)
        for block in model.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def make_optimizer(model: torch.nn.Module, lr: float, device, parallel: Parallel) -> torch.optim.Optimizer:
    """AdamW (betas 0.9/0.95, weight decay 0.1); the fused kernel on CUDA for plain and DDP models."""
    fused = device.type == "cuda" and parallel != Parallel.FSDP
    return torch.optim.AdamW(model.parameters(), lr=lr, fused=fused or None, **ADAMW)


def gradient_sync(model: torch.nn.Module, parallel: Parallel, sync: bool):
    """A context where gradients are (not) synchronised across the group: DDP no_sync, FSDP's switch."""
    if sync or parallel == Parallel.NONE:
        return contextlib.nullcontext()
    if parallel == Parallel.DDP:
        return model.no_sync()
    model.set_requires_gradient_sync(False)
    return _restore_sync(model)


@contextlib.contextmanager
def _restore_sync(model):
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


class Step:
    """One optimizer step of `grad_accum` micro-batches; keeps each step's loss on the device."""

    def __init__(
        self,
        model,
        optimizer,
        task: PermutationTask,
        micro_batch: int,
        grad_accum: int,
        parallel: Parallel,
        device,
        precision: Precision,
    ):
        self.model, self.optimizer, self.task = model, optimizer, task
        self.micro_batch, self.grad_accum = micro_batch, grad_accum
        self.parallel, self.device_type, self.precision = parallel, device.type, precision
        self.losses: list = []  # one 0-d device tensor per step

    def __call__(self) -> None:
        total = None
        for i in range(self.grad_accum):
            with gradient_sync(self.model, self.parallel, i == self.grad_accum - 1):
                with torch.autocast(
                    self.device_type, dtype=AUTOCAST_DTYPES.get(self.precision.name), enabled=self.precision.autocast
                ):
                    loss = loss_of(self.model, self.task.batch(self.micro_batch))
                (loss / self.grad_accum if self.grad_accum > 1 else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(total / self.grad_accum if self.grad_accum > 1 else total)

    def loss_values(self) -> list:
        return torch.stack(self.losses).float().cpu().tolist() if self.losses else []


def make_step(plan: TrainPlan, parallel: Parallel, group, device, precision: Precision, data_seed: int) -> Step:
    """Model, wrapper, compile (when asked), optimizer and task of one rank."""
    model = wrap(build_model(plan.shape, device), parallel, group, device, precision)
    if plan.compile:
        model = torch.compile(model)
    optimizer = make_optimizer(model, plan.preset.lr, device, parallel)
    task = PermutationTask(plan.shape.vocab, plan.shape.seq_len, device, data_seed=data_seed)
    return Step(model, optimizer, task, plan.micro_batch, plan.grad_accum, parallel, device, precision)


# --- a point: every group trains at once ------------------------------------------------------------


class Trainer:
    """Runs the scaling points on every rank (all ranks call `point` with the same sizes in order)."""

    def __init__(
        self,
        ctx,
        plan: TrainPlan,
        precision: Precision,
        identity: Identity,
        peak_tflops: Optional[float],
        mamf_tflops: Optional[float],
        progress: Optional[Callable[[str], None]] = None,
        stop=None,
    ):
        self.ctx, self.plan, self.precision, self.identity = ctx, plan, precision, identity
        self.peak_tflops, self.mamf_tflops = peak_tflops, mamf_tflops
        self.progress = progress or (lambda what: None)
        self.stop = stop
        self.single_tokens_per_s: dict = {}  # rank -> tokens/s alone (the size-1 point)

    def points(self, sizes: tuple) -> Iterator[Result]:
        for size in sizes:
            yield from self.point(size)

    def point(self, size: int) -> list:
        ctx, plan = self.ctx, self.plan
        groups = groups_of(size, ctx.world_size)
        mine = next(g for g in groups if ctx.rank in g)
        parallel = parallel_for(plan.parallel, size, self.identity.nodes_in(mine))
        group = self._group(size, groups)
        try:
            figures = self._train(size, parallel, group)
        finally:
            if group is not None and group is not dist.group.WORLD:
                dist.destroy_process_group(group)
            self.ctx.device.empty_cache()
        rows = ctx.gather_floats(
            figures.step_s
            + [
                figures.loss_first,
                figures.loss_last,
                float(figures.peak_memory_bytes or -1),
                float(self.mamf_tflops or -1),
            ]
        )
        steps = len(figures.step_s)
        per_rank = [
            RankFigures(
                r[:steps], r[steps], r[steps + 1], int(r[steps + 2]) if r[steps + 2] >= 0 else None, figures.timer
            )
            for r in rows
        ]
        mamf = [r[steps + 3] if r[steps + 3] > 0 else None for r in rows]
        # every rank has every figure (all-gathered) and builds the same results; rank 0 writes them
        if size == 1:
            return [self._device_result(rank, f, mamf[rank], parallel) for rank, f in enumerate(per_rank)]
        return [self._group_result(size, groups, per_rank, mamf, parallel)]

    def _group(self, size: int, groups: list):
        """This rank's process group for a point: none alone, the default group for everyone, else a subgroup."""
        if size == 1:
            return None
        if size == self.ctx.world_size:
            return dist.group.WORLD
        current, _all = dist.new_subgroups_by_enumeration(groups)
        return current

    def _train(self, size: int, parallel: Parallel, group) -> RankFigures:
        ctx, plan = self.ctx, self.plan
        device = ctx.device.torch_device
        label = f"{size}-device point ({parallel})"
        self.progress(f"{label}: building the model")
        ctx.device.reset_peak_memory()
        step = make_step(
            plan,
            parallel,
            None if group is dist.group.WORLD else group,
            device,
            self.precision,
            data_seed=1000 + ctx.rank,
        )
        done = [0]

        def one_step():
            if self.stop is not None and self.stop.is_set():
                raise KeyboardInterrupt
            step()
            done[0] += 1
            self.progress(f"{label}: step {done[0]}")

        estimate_s = self._warm_up(one_step, label)
        steps = plan.steps or max(MIN_DURATION_STEPS, math.ceil(plan.duration_s / estimate_s))
        ctx.barrier()
        self.progress(f"{label}: timing {steps} steps")
        timing = time_call(one_step, ctx.device, TimingPlan(warmup=0, reps=steps), estimate_s=estimate_s)
        losses = step.loss_values()
        peak = ctx.device.peak_memory_bytes()
        return RankFigures(list(timing.samples_s), losses[0], losses[-1], peak, timing.timer)

    def _warm_up(self, one_step, label: str) -> float:
        """Run the warm-up steps; return the slowest rank's time of the last one (agreed by all ranks)."""
        self.progress(f"{label}: warming up")
        local = 1.0
        for i in range(self.plan.warmup):
            self.ctx.device.synchronize()
            start = time.perf_counter()
            one_step()
            self.ctx.device.synchronize()
            if i == self.plan.warmup - 1:
                local = time.perf_counter() - start
        return max(self.ctx.all_max(local), 1e-6)

    # --- records ---

    def _params(self, size: int, parallel: Parallel, groups: int, nodes: int) -> dict:
        plan, shape = self.plan, self.plan.shape
        return {
            "model": plan.model,
            "params_count": shape.params_count,
            "seq_len": shape.seq_len,
            "global_batch_tokens": plan.global_batch_tokens(size),
            "parallel": str(parallel),
            "world_size": size,
            "dtype": self.precision.name,
            "layers": shape.layers,
            "hidden": shape.hidden,
            "heads": shape.heads,
            "ffn": shape.ffn,
            "vocab": shape.vocab,
            "micro_batch": plan.micro_batch,
            "grad_accum": plan.grad_accum,
            "compile": plan.compile,
            "flops_per_token": shape.flops_per_token,
            "groups": groups,
            "nodes": nodes,
            "lr": plan.preset.lr,
            "task": "permutation-walk",
            "method": METHOD,
        }

    def _figures(
        self,
        size: int,
        step_s: list,
        loss_first: float,
        loss_last: float,
        peak_memory: Optional[int],
        mamf: Optional[float],
    ) -> tuple:
        """(metrics, flags) of one device or group from its per-step times (seconds)."""
        plan = self.plan
        s = summarize(step_s)
        tflops = tflops_per_device(plan.shape, plan.tokens_per_device_step, s.median)
        metrics = {
            "tokens_per_s": tokens_per_s(plan.global_batch_tokens(size), s.median),
            "tokens_per_s_per_gpu": tokens_per_s(plan.tokens_per_device_step, s.median),
            "tflops_per_gpu": tflops,
            "tflops_per_gpu_max": tflops_per_device(plan.shape, plan.tokens_per_device_step, s.min),
            "mfu": fraction(tflops, self.peak_tflops),
            "mamf_tflops": mamf,
            "mamf_util": fraction(tflops, mamf),
            "step_ms": s.median * 1e3,
            "step_ms_mean": s.mean * 1e3,
            "step_ms_min": s.min * 1e3,
            "step_ms_max": s.max * 1e3,
            "step_ms_p99": s.p99 * 1e3,
            "cv": s.cv,
            "loss_first": loss_first,
            "loss_last": loss_last,
            "peak_memory_bytes": peak_memory,
            "steps": s.n,
            "warmup_steps": plan.warmup,
        }
        flags = ["noisy"] if s.noisy else []
        return metrics, flags

    def _device_result(self, rank: int, f: RankFigures, mamf: Optional[float], parallel: Parallel) -> Result:
        ident = self.identity
        params = self._params(1, parallel, self.ctx.world_size, 1)
        params.update(
            node=ident.hosts[rank], gpu=ident.devices[rank], gpu_rank=rank, device_name=ident.names[rank], timer=f.timer
        )
        metrics, flags = self._figures(1, f.step_s, f.loss_first, f.loss_last, f.peak_memory_bytes, mamf)
        self.single_tokens_per_s[rank] = metrics["tokens_per_s"]
        return loss_verdict(Result(params, metrics, flags=flags, raw={"step_ms": [t * 1e3 for t in f.step_s]}))

    def _group_result(self, size: int, groups: list, per_rank: list, mamf: list, parallel: Parallel) -> Result:
        slowest = {i: [max(column) for column in zip(*(per_rank[r].step_s for r in g))] for i, g in enumerate(groups)}
        rates = {i: tokens_per_s(self.plan.global_batch_tokens(size), median(s)) for i, s in slowest.items()}
        order = sorted(rates, key=rates.get)
        pick = order[(len(order) - 1) // 2]  # the median group (the lower middle of an even count)
        ranks = groups[pick]
        known = [mamf[r] for r in ranks if mamf[r]]
        metrics, flags = self._figures(
            size,
            slowest[pick],
            sum(per_rank[r].loss_first for r in ranks) / size,
            sum(per_rank[r].loss_last for r in ranks) / size,
            max((per_rank[r].peak_memory_bytes or 0) for r in ranks) or None,
            sum(known) / len(known) if known else None,
        )
        alone = [self.single_tokens_per_s.get(r) for r in ranks]
        metrics["scaling_efficiency"] = (metrics["tokens_per_s"] / sum(alone)) if all(alone) else None
        metrics["tokens_per_s_min"] = rates[order[0]]
        params = self._params(size, parallel, len(groups), self.identity.nodes_in(ranks))
        params.update(timer=per_rank[0].timer, ranks=f"{ranks[0]}-{ranks[-1]}")
        raw = {"step_ms": [t * 1e3 for t in slowest[pick]], "group_tokens_per_s": [rates[i] for i in sorted(rates)]}
        return loss_verdict(Result(params, metrics, flags=flags, raw=raw))


def loss_verdict(result: Result) -> Result:
    """A step that does not train is a failed measurement: a loss that is not finite or did not go down."""
    first, last = result.metrics["loss_first"], result.metrics["loss_last"]
    if not (math.isfinite(first) and math.isfinite(last)):
        result.status, result.error = Status.ERROR, f"the loss is not finite (first {first}, last {last})"
        result.flags.append("loss_not_finite")
    elif last >= first:
        result.status = Status.ERROR
        result.error = f"the loss did not go down (first step {first:.4g}, last step {last:.4g})"
        result.flags.append("loss_not_decreasing")
    return result


# --- this device's MAMF from the run directory -------------------------------------------------------


def own_mamf_tflops(run_dir: Path, device_info, dtype: str) -> Optional[float]:
    """The best MAMF (mamf.plan.best_record) of `dtype` this host and device measured, from mamf records in
    the run directory (its host subdirectories too); None when there is none."""
    from ..mamf.plan import best_record

    if not run_dir.is_dir():
        return None
    index = device_info.index
    host = hostname()
    mine = []
    for path in sorted(run_dir.rglob("mamf*.jsonl")):
        try:
            records = list(read_records(path))
        except OSError:
            continue
        for r in records:
            device = r.get("device") or {}
            if (
                r.get("probe") == "mamf"
                and r.get("host") == host
                and device.get("name") == device_info.name
                and device.get("index") == index
                and (r.get("params") or {}).get("dtype") == dtype
                and (r.get("params") or {}).get("mode") != "sustain"
            ):
                mine.append(r)
    best = best_record(mine)
    return float(best["metrics"]["tflops"]) if best else None
