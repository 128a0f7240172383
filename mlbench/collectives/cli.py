"""`mlbench collectives` / `torchrun ... -m mlbench.collectives`: the click layer.

torch is imported only when the command runs. Outside torchrun, `--nproc-per-node N` re-launches
the same command through torchrun (`python -m torch.distributed.run --standalone`); without it
the probe runs as a single rank and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import click

from ..cli import Command, probe_options
from ..exitcodes import FAILED, INCOMPLETE, OK, UsageError

STATUS_FILE_VAR = "MLBENCH_COLLECTIVES_STATUS_FILE"  # rank 0 leaves its exit code here for a re-launching parent


@click.command(cls=Command, name="collectives", context_settings={"help_option_names": ["-h", "--help"]})
@probe_options
@click.option("--ops", default=None, metavar="OPS",
              help="Comma list of all_reduce,all_gather,reduce_scatter,broadcast,all_to_all,sendrecv "
                   "[default: all_reduce,all_gather].")
@click.option("--sizes", default=None, metavar="SIZES",
              help="Payload sizes S in bytes (nccl-tests' size column): a list or range, e.g. 8:8G or 1M,64M "
                   "[default: 8:8G on GPUs (capped by free memory), 8:64M on the CPU, 8:1M:x16 with --quick].")
@click.option("--dtype", "dtype_name", default="fp32", show_default=True, help="fp32, bf16 or fp16.")
@click.option("--modes", default=None, metavar="MODES",
              help="throughput (calls queued back to back, nccl-tests' main column), latency (one call per "
                   "sample: median and p99) [default: both].")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True,
              help="Seconds without progress after which every surviving rank gives up (exit 3).")
@click.option("--backend", default="auto", show_default=True, help="auto (NCCL/RCCL on GPUs, gloo on the CPU), nccl, gloo.")
@click.option("--nproc-per-node", "nproc_per_node", type=click.IntRange(min=1), default=None,
              help="Outside torchrun: re-launch through torchrun with N ranks on this node.")
def command(device, out, quick, run_id, ops, sizes, dtype_name, modes, timeout_s, backend, nproc_per_node):
    """Collectives over payload sizes, nccl-tests style, under torchrun (one node or many).

    algbw = S / t and busbw = algbw x factor, with nccl-tests' S and factor per op; t is the
    slowest rank's. Every size is warmed up, timed out-of-place and in-place (where torch has
    them), and checked exactly: any wrong element fails the run (exit 1). Rank 0 writes records.
    """
    from ..device import parse_device_spec
    from ..records import check_writable
    from .dist import under_torchrun
    from .plan import make_plan

    kind, _index = parse_device_spec(device)
    make_plan(ops, sizes, dtype_name, modes, timeout_s, quick, "cpu" if kind == "cpu" else "cuda")
    if backend not in ("auto", "nccl", "gloo"):
        raise UsageError(f"bad --backend {backend!r}: choose auto, nccl or gloo")
    if nproc_per_node is not None and not under_torchrun():
        if out:
            check_writable(out)
        return relaunch(nproc_per_node, device, out, quick, run_id, ops, sizes, dtype_name, modes, timeout_s, backend)
    return measure(device, out, quick, run_id, ops, sizes, dtype_name, modes, timeout_s, backend,
                   ignored_nproc=nproc_per_node)


def relaunch(nproc, device, out, quick, run_id, ops, sizes, dtype_name, modes, timeout_s, backend) -> int:
    """Run this command again under a real torchrun with `nproc` ranks; return rank 0's exit code."""
    from ..records import new_run_id

    args = ["--device", device, "--dtype", dtype_name, "--timeout", f"{timeout_s:g}", "--backend", backend]
    for flag, value in (("--out", out), ("--ops", ops), ("--sizes", sizes), ("--modes", modes)):
        if value is not None:
            args += [flag, value]
    if quick:
        args.append("--quick")
    run_id = run_id or new_run_id()
    args += ["--run-id", run_id]
    fd, status_path = tempfile.mkstemp(prefix="mlbench-collectives-", suffix=".status")
    os.close(fd)
    env = dict(os.environ, MLBENCH_RUN_ID=run_id, **{STATUS_FILE_VAR: status_path})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone",
           "-m", "mlbench.collectives", *args]
    try:
        rc = subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:
        rc = INCOMPLETE
    finally:
        try:
            with open(status_path) as f:
                text = f.read().strip()
            os.unlink(status_path)
        except OSError:
            text = ""
    if rc == 0:
        return OK
    return int(text) if text.isdigit() else (INCOMPLETE if rc == INCOMPLETE else FAILED)


def _leave_status(code: int) -> None:
    path = os.environ.get(STATUS_FILE_VAR)
    if path:
        try:
            with open(path, "w") as f:
                f.write(f"{code}\n")
        except OSError:
            pass


def measure(device, out, quick, run_id, ops, sizes, dtype_name, modes, timeout_s, backend, ignored_nproc=None) -> int:
    from .. import specs
    from ..progress import Progress
    from ..records import hostname
    from .dist import Watchdog, setup, under_torchrun
    from .plan import make_plan
    from .probe import CollectiveProbe
    from .run import memory_limit_bytes, run, split_by_memory, too_big_result
    from .table import render

    rank_env = int(os.environ.get("RANK", 0))
    watchdog = Watchdog(timeout_s, f"rank {rank_env} on {hostname()}",
                        on_exit=_leave_status if rank_env == 0 else None)
    if under_torchrun():
        watchdog.start()
    watchdog.doing("process-group set-up")
    ctx = setup(device, backend, timeout_s)
    try:
        plan = make_plan(ops, sizes, dtype_name, modes, timeout_s, quick, ctx.device.type)
        session = _agreed_session(ctx, out, run_id)
        rank0 = ctx.rank == 0
        spec = specs.lookup(ctx.device.info.name) if ctx.device.type == "cuda" else None
        probe = CollectiveProbe(ctx, plan.dtype, quick, link_gbps=spec.number("link_gbps") if spec else None,
                                progress=watchdog.doing)
        points = plan.points(ctx.world_size)
        limit = memory_limit_bytes(int(ctx.all_min(ctx.device.free_memory_bytes() or 0))) if ctx.device.type != "cpu" else None
        fits, too_big = split_by_memory(points, plan.dtype.element_bytes, limit)
        say = (lambda text: click.echo(f"mlbench collectives: {text}", err=True)) if rank0 else (lambda text: None)
        say(f"{ctx.world_size} rank(s) ({ctx.layout.text} nodes x ranks per node), {ctx.backend_version}, "
            f"{ctx.device.info.name}; {plan.describe()}; records -> {session.out}")
        if ctx.single_process:
            say("not under torchrun: running as a single rank (busbw is 0 for one rank); "
                "use --nproc-per-node N or `torchrun --nproc-per-node N -m mlbench.collectives`")
        if ignored_nproc is not None:
            say(f"--nproc-per-node {ignored_nproc} ignored: already under torchrun")
        if too_big and sizes is None:
            say(f"sizes from {min(p.counts.s_bytes for p in too_big)} B left out: they need more than 85% of "
                f"the free memory ({limit} B usable per rank)")
        session.start()
        progress = Progress(len(fits), "collectives", enabled=None if rank0 else False)
        interrupted = False
        try:
            if sizes is not None:
                for point in too_big:
                    session.add(too_big_result(probe, point, limit))
            for result in run(plan, probe, fits):
                record = session.add(result)
                p = record["params"]
                now = f"{record['metrics']['busbw_gbps']:.3g} GB/s" if record["status"] != "skipped" else "skipped"
                progress.update(1, f"{p['op']} {p['bytes']} B {'ip' if p['in_place'] else 'oop'} {p['mode']}: {now}")
        except KeyboardInterrupt:
            interrupted = True
        except Exception as exc:  # noqa: BLE001 - a peer that died: one line naming op, size and rank
            if ctx.single_process:
                raise
            if os.environ.get("MLBENCH_DEBUG"):
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
            watchdog.fire(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}")
        finally:
            progress.close()
            session.close()
        if rank0:
            click.echo(render(session.records, plan.ops, interrupted))
        code = INCOMPLETE if interrupted else (FAILED if any(r["status"] == "error" for r in session.records) else OK)
        if rank0:
            _leave_status(code)
        return code
    finally:
        watchdog.stop()
        ctx.close()


def _agreed_session(ctx, out, run_id):
    """Rank 0 picks the run id and checks --out; every rank learns both (a bad --out: exit 2 everywhere)."""
    from ..session import ProbeSession

    session, problem = None, None
    if ctx.rank == 0:
        try:
            session = ProbeSession("collectives", ctx.device.info.record(), out=out, run_id=run_id,
                                   rank=0, world_size=ctx.world_size, write=True)
        except UsageError as exc:
            problem = str(exc)
    agreed_run_id, problem = ctx.broadcast_object((session.run_id if session else None, problem))
    if problem:
        raise UsageError(problem)
    if session is None:
        session = ProbeSession("collectives", ctx.device.info.record(), out=out, run_id=agreed_run_id,
                               rank=ctx.rank, world_size=ctx.world_size, write=False)
    return session
