"""`mlbench collectives` / `torchrun ... -m mlbench.collectives`: the probe's definition for the shared loop.

Options and plan: `plan.py`; measuring one point: `probe.py`; process group and watchdog: `dist.py`;
the re-launch under torchrun (`--nproc-per-node N` outside torchrun): `launch.py`; tables: `table.py`.
Here: what runs on each rank. torch is imported only when the probe starts. Without torchrun and
without `--nproc-per-node` the probe runs as a single rank and says so.
"""

from __future__ import annotations

import contextlib
import os

from .. import harness
from ..exitcodes import USAGE, UsageError
from .launch import leave_status, relaunch, under_torchrun
from .plan import USABLE_FRACTION, CollectivesOptions, make_plan, memory_limit_bytes, split_by_memory


class Collectives(harness.Probe):
    """Collectives over payload sizes, nccl-tests style, under torchrun (one node or many).

    algbw = S / t and busbw = algbw x factor, with nccl-tests' S and factor per op; t is the
    slowest rank's. Every size is warmed up, timed out-of-place and in-place (where torch has
    them), and checked exactly: any wrong element fails the run (exit 1). Rank 0 writes records.
    """

    name = "collectives"
    options = CollectivesOptions
    help = __doc__

    def validate(self, options: CollectivesOptions) -> None:
        from ..device import parse_device_spec

        kind, _index = parse_device_spec(options.device)
        make_plan("cpu" if kind == "cpu" else "cuda", options)

    def check_out(self, options: CollectivesOptions) -> None:
        if not under_torchrun():  # under torchrun rank 0 checks it in `start` and every rank learns the answer
            super().check_out(options)

    def delegate(self, options: CollectivesOptions):
        if options.nproc_per_node is not None and not under_torchrun():
            return relaunch(options, options.nproc_per_node)
        return None

    @contextlib.contextmanager
    def start(self, options: CollectivesOptions, stop):
        from .. import specs
        from ..records import hostname
        from .dist import Watchdog, setup
        from .probe import CollectiveProbe
        from .table import render

        rank0 = int(os.environ.get("RANK", 0)) == 0
        watchdog = Watchdog(
            options.timeout_s,
            f"rank {os.environ.get('RANK', 0)} on {hostname()}",
            on_exit=leave_status if rank0 else None,
        )
        if under_torchrun():
            watchdog.start()
        ctx = None
        try:
            watchdog.doing("process-group set-up")
            ctx = setup(options.device, options.backend, options.timeout_s)
            plan = make_plan(ctx.device.type, options)
            run_id = agree_on_run(ctx, options)
            spec = specs.lookup(ctx.device.info.name) if ctx.device.type == "cuda" else None
            link_gbps = spec.number("link_gbps") if spec else None
            probe = CollectiveProbe(ctx, plan.dtype, options.quick, link_gbps=link_gbps, progress=watchdog.doing)
            free_bytes = int(ctx.all_min(ctx.device.free_memory_bytes() or 0)) if ctx.device.type != "cpu" else None
            limit = memory_limit_bytes(free_bytes)
            fits, too_big = split_by_memory(plan.points(ctx.world_size), plan.dtype.element_bytes, limit)
            asked_for = too_big if options.sizes is not None else []  # explicit sizes that do not fit: skipped records
            results = _results(probe, fits, asked_for, limit, watchdog, stop)
            yield harness.Run(
                ctx.device.info.record(),
                f"{ctx.world_size} rank(s) ({ctx.layout.text} nodes x ranks per node), {ctx.backend_version}, "
                f"{ctx.device.info.name}; {plan.describe()}",
                results,
                summary=lambda records, interrupted: render(records, plan.ops),
                total=len(fits) + len(asked_for),
                progress_text=progress_text,
                notes=notes(ctx, options, too_big, limit),
                rank=ctx.rank,
                world_size=ctx.world_size,
                writes=ctx.rank == 0,
                run_id=run_id,
                finish=leave_status if ctx.rank == 0 else (lambda code: None),
            )
        except UsageError:
            if rank0:
                leave_status(USAGE)
            raise
        finally:
            watchdog.doing("process-group teardown")  # still watched: a peer gone mid-collective cannot hang it
            try:
                if ctx is not None:
                    ctx.close()
            finally:
                watchdog.stop()


def agree_on_run(ctx, options: CollectivesOptions) -> str:
    """Rank 0 checks --out and picks the run id; every rank learns both (a bad --out: exit 2 on every rank)."""
    from ..records import check_writable, new_run_id

    run_id, problem = None, None
    if ctx.rank == 0:
        run_id = options.run_id or new_run_id()
        try:
            if options.out:
                check_writable(options.out)
        except UsageError as exc:
            problem = str(exc)
    run_id, problem = ctx.broadcast_object((run_id, problem))
    if problem:
        raise UsageError(problem)
    return run_id


def notes(ctx, options: CollectivesOptions, too_big: list, limit) -> list:
    """What rank 0 says before measuring: one rank only, an ignored option, sizes left out."""
    lines = []
    if ctx.single_process:
        lines.append(
            "not under torchrun: running as a single rank (busbw is 0 for one rank); "
            "use --nproc-per-node N or `torchrun --nproc-per-node N -m mlbench.collectives`"
        )
    if options.nproc_per_node is not None:
        lines.append(f"--nproc-per-node {options.nproc_per_node} ignored: already under torchrun")
    if too_big and options.sizes is None:
        lines.append(
            f"sizes from {min(p.counts.s_bytes for p in too_big)} B left out: they need more than "
            f"{USABLE_FRACTION:.0%} of the free memory ({limit} B usable per rank)"
        )
    return lines


def progress_text(record: dict) -> str:
    p = record["params"]
    now = f"{record['metrics']['busbw_gbps']:.3g} GB/s" if record["status"] != "skipped" else "skipped"
    return f"{p['op']} {p['bytes']} B {'ip' if p['in_place'] else 'oop'} {p['mode']}: {now}"


def _results(probe, points: list, too_big: list, limit, watchdog, stop):
    """The run's results: the points too big for memory (skipped), then the measured ones."""
    from .dist import guard_peers

    def results():
        for point in too_big:
            yield probe.too_big_result(point, limit)
        yield from probe.measure_all(points)

    return guard_peers(results(), probe.ctx, watchdog, stop)


command = harness.command(Collectives)
