"""`mlbench train` / `torchrun ... -m mlbench.train`: the probe's definition for the shared loop.

Options, presets, FLOP count and rules: `plan.py`; the model and task: `model.py`; measuring: `probe.py`.
Process group, watchdog, run-id agreement and the `--nproc-per-node` re-launch are the collectives
probe's (`collectives.dist`, `collectives.launch`, `collectives.cli.agree_on_run`). torch is imported
only when the probe starts.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

from .. import harness
from ..collectives.launch import leave_status, relaunch, under_torchrun
from ..exitcodes import USAGE, UsageError
from .plan import (
    HOST_USABLE_FRACTION,
    USABLE_FRACTION,
    Parallel,
    TrainOptions,
    TrainPlan,
    check_host_fit,
    expected_mfu,
    fit_problem,
    layers_that_fit,
    make_plan,
    parallel_for,
    scaling_sizes,
    world_size_hint,
)

PROG = "mlbench train"


class Train(harness.Probe):
    """A reference training step: a synthetic decoder-only transformer trained with AdamW in bf16.

    Tokens/s, step time (median, p99), TFLOPS per device from the analytic FLOP count (6 x parameters
    x tokens plus the attention term), MFU against the dense peak, utilisation against this device's
    MAMF when the run directory holds one, peak memory, and the loss at the first and the last step.
    Under torchrun (or with --nproc-per-node): weak scaling from one device to all of them, DDP within a
    node and FSDP across nodes. Rank 0 writes the records.
    """

    name = "train"
    options = TrainOptions
    help = __doc__

    def validate(self, options: TrainOptions) -> None:
        from .. import host

        kind = _device_kind(options.device)
        world = world_size_hint(options) or 1
        plan = make_plan(kind, options, world)
        if kind == "cpu":
            check_host_fit(plan, host.available_memory_bytes(), local_ranks(options))
        if plan.duration_s is not None and plan.warmup < 1:
            raise UsageError("--duration needs at least one --warmup step (it times one to count the steps)")

    def check_out(self, options: TrainOptions) -> None:
        if not under_torchrun():  # under torchrun rank 0 checks it in `start` and every rank learns the answer
            super().check_out(options)

    def delegate(self, options: TrainOptions):
        if under_torchrun():
            return None
        nproc = options.nproc_per_node or default_nproc(options.device)
        if nproc > 1:
            make_plan(_device_kind(options.device), options, nproc)  # a batch that does not split: refused here
            return relaunch(options, nproc, module="mlbench.train")
        return None

    @contextlib.contextmanager
    def start(self, options: TrainOptions, stop):
        from ..collectives.cli import agree_on_run
        from ..collectives.dist import Watchdog, setup
        from ..records import hostname

        rank0 = int(os.environ.get("RANK", 0)) == 0
        watchdog = Watchdog(
            options.timeout_s,
            f"rank {os.environ.get('RANK', 0)} on {hostname()}",
            on_exit=leave_status if rank0 else None,
            prog=PROG,
        )
        if under_torchrun():
            watchdog.start()
        ctx = None
        try:
            watchdog.doing("process-group set-up")
            ctx = setup(options.device, "auto", options.timeout_s)
            run_id = agree_on_run(ctx, options)
            yield self._run(ctx, options, run_id, watchdog, stop)
        except UsageError:
            if rank0:
                leave_status(USAGE)
                raise
            raise SystemExit(USAGE) from None  # rank 0 says it, once
        finally:
            watchdog.doing("process-group teardown")
            try:
                if ctx is not None:
                    ctx.close()
            finally:
                watchdog.stop()

    def _run(self, ctx, options: TrainOptions, run_id: str, watchdog, stop) -> harness.Run:
        from pathlib import Path

        from .. import specs
        from ..records import default_out
        from .probe import Trainer, gather_identity, own_mamf_tflops, precision_for

        plan = make_plan(ctx.device.type, options, ctx.world_size)
        precision = precision_for(ctx.device, plan.dtype)
        plan = sized_plan(ctx, plan, precision)
        identity = gather_identity(ctx)
        sizes = scaling_sizes(ctx.world_size, _ranks_per_node(ctx), ctx.layout.nodes, plan.scaling)
        spec = specs.lookup(ctx.device.info.name) if ctx.device.type != "cpu" else None
        peak = spec.peak_tflops(precision.name) if spec else None
        run_dir = Path(options.out).parent if options.out else default_out("train", run_id).parent
        mamf = own_mamf_tflops(run_dir, ctx.device.info, precision.name)
        trainer = Trainer(ctx, plan, precision, identity, peak, mamf, progress=watchdog.doing, stop=stop)
        expected = expected_mfu(spec, plan.model)
        total = sum(ctx.world_size if k == 1 else 1 for k in sizes)
        return harness.Run(
            ctx.device.info.record(),
            f"{ctx.world_size} rank(s) ({ctx.layout.text} nodes x ranks per node), {ctx.device.info.name}; "
            f"{plan.describe()}; points {', '.join(map(str, sizes))} device(s)",
            trainer.points(sizes),
            summary=lambda records, interrupted: summary_text(records, ctx.device.info.name, peak, expected),
            total=total,
            progress_text=progress_text,
            notes=notes(ctx, options, plan, precision, mamf),
            noun="result(s)",
            require_ok=True,
            rank=ctx.rank,
            world_size=ctx.world_size,
            writes=ctx.rank == 0,
            run_id=run_id,
            finish=leave_status if ctx.rank == 0 else (lambda code: None),
        )


def _device_kind(spec: str) -> str:
    """`cpu` or `cuda` (any accelerator) for the plan's defaults; a bad --device is a UsageError."""
    from ..device import parse_device_spec

    kind, _index = parse_device_spec(spec)
    return "cpu" if kind == "cpu" else "cuda"


def local_ranks(options: TrainOptions) -> int:
    """Ranks sharing this host: torchrun's LOCAL_WORLD_SIZE, or --nproc-per-node, else 1."""
    text = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(text) if text.isdigit() and under_torchrun() else (options.nproc_per_node or 1)


def default_nproc(device_spec: str) -> int:
    """Without --nproc-per-node: every local GPU for `auto` and `cuda`, else one process."""
    from ..device import parse_device_spec

    kind, index = parse_device_spec(device_spec)
    if kind not in ("auto", "cuda") or index is not None:
        return 1
    from ..device import gpu_count

    return max(1, gpu_count())


def _ranks_per_node(ctx):
    text = ctx.layout.ranks_per_node
    return int(text) if text.isdigit() else None


def sized_plan(ctx, plan: TrainPlan, precision) -> TrainPlan:
    """The plan with the dtype used and, for a preset sized to the device, its layers; a model that does not
    fit one device (agreed by all ranks) is a UsageError."""
    from .. import host

    plan = replace(plan, dtype=precision.name)
    if ctx.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if not ctx.single_process else 1
        usable = int((host.available_memory_bytes() or 0) * HOST_USABLE_FRACTION) // max(1, local)
    else:
        usable = int((ctx.device.info.total_memory_bytes or 0) * USABLE_FRACTION)
    if plan.sized_to_device:
        layers = int(ctx.all_min(layers_that_fit(plan.preset, plan.shape, plan.micro_batch, plan.dtype, usable)))
        if layers < 1:
            problem = fit_problem(plan.with_layers(1).shape, plan.micro_batch, plan.dtype, usable)
            raise UsageError(problem or "not one layer fits this device")
        return plan.with_layers(layers)
    shards = 1  # every device trains alone first; without that point, FSDP over all of them shards the state
    if not plan.scaling and parallel_for(plan.parallel, ctx.world_size, ctx.layout.nodes) == Parallel.FSDP:
        shards = ctx.world_size
    problem = fit_problem(plan.shape, plan.micro_batch, plan.dtype, usable, shards) if usable else None
    if ctx.all_max(1.0 if problem else 0.0):
        raise UsageError(problem or "the model does not fit another rank's device")
    return plan


def notes(ctx, options: TrainOptions, plan: TrainPlan, precision, mamf) -> list:
    lines = []
    if ctx.single_process:
        lines.append(
            "not under torchrun: one process on one device; use --nproc-per-node N or "
            "`torchrun --nproc-per-node N -m mlbench.train` for DDP/FSDP and weak scaling"
        )
    if options.nproc_per_node is not None and not ctx.single_process:  # a re-launch does not forward it
        lines.append(f"--nproc-per-node {options.nproc_per_node} ignored: already under torchrun")
    if precision.note:
        lines.append(precision.note)
    if plan.preset.layers is None and options.layers is None:
        lines.append(
            f"preset {plan.preset.name}: {plan.shape.layers} layers fit one device "
            f"({plan.shape.params_count / 1e9:.3g}B parameters)"
        )
    lines.append(
        f"FLOPs per token {plan.shape.flops_per_token:.4g} (6 x {plan.shape.matmul_params:,} matmul "
        f"parameters + attention {plan.shape.attention_flops_per_token:,})"
    )
    if mamf:
        lines.append(f"this device's measured MAMF ({precision.name}): {mamf:.4g} TFLOPS")
    return lines


def progress_text(record: dict) -> str:
    p, m = record["params"], record["metrics"]
    if record["status"] == "skipped":
        return "skipped"
    who = f"rank {p.get('gpu_rank')}" if p["world_size"] == 1 and "gpu_rank" in p else f"{p['world_size']} devices"
    return f"{who}: {m['tokens_per_s']:.4g} tokens/s, {m['tflops_per_gpu']:.3g} TFLOPS/device"


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if value is not None else "-"


def summary_text(records: list, device_name: str, peak, expected) -> str:
    """A table per scaling point: tokens/s, step times, TFLOPS per device, MFU, scaling efficiency, loss."""
    ok = [r for r in records if r["metrics"].get("tokens_per_s") is not None]
    if not ok:
        return "no training step measured"
    lines = [
        f"{'devices':>8} {'parallel':>8} {'tokens/s':>12} {'step ms':>9} {'p99 ms':>9} {'TFLOPS/dev':>10} "
        f"{'MFU':>6} {'scaling':>8} {'loss first->last':>18}"
    ]
    singles = [r for r in ok if r["params"]["world_size"] == 1]
    rows = []
    if singles:
        mid = sorted(singles, key=lambda r: r["metrics"]["tokens_per_s"])[(len(singles) - 1) // 2]
        rows.append((f"1 ({len(singles)}x)" if len(singles) > 1 else "1", mid))
    rows += [(str(r["params"]["world_size"]), r) for r in ok if r["params"]["world_size"] > 1]
    for label, r in rows:
        m, p = r["metrics"], r["params"]
        loss = f"{m['loss_first']:.3f}->{m['loss_last']:.3f}"
        lines.append(
            f"{label:>8} {p['parallel']:>8} {m['tokens_per_s']:>12.5g} {m['step_ms']:>9.4g} "
            f"{m['step_ms_p99']:>9.4g} {m['tflops_per_gpu']:>10.4g} {_pct(m['mfu']):>6} "
            f"{_pct(m.get('scaling_efficiency')):>8} {loss:>18}"
        )
    if len(singles) > 1:
        rates = sorted(r["metrics"]["tokens_per_s"] for r in singles)
        slow = min(singles, key=lambda r: r["metrics"]["tokens_per_s"])
        lines.append(
            f"alone: median of {len(singles)} devices shown; slowest rank {slow['params']['gpu_rank']} on "
            f"{slow['params']['node']} at {100 * rates[0] / rates[(len(rates) - 1) // 2]:.0f}% of the median"
        )
    if peak:
        line = f"MFU: TFLOPS per device over the {peak:g} TFLOPS dense peak of {device_name}"
        if expected:
            line += f"; a healthy part reaches ~{100 * expected.value:.0f}% on this preset"
        lines.append(line)
    else:
        lines.append(f"MFU: no advertised peak for {device_name!r} (null in the records)")
    return "\n".join(lines)


command = harness.command(Train)
