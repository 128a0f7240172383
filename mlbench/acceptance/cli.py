"""`mlbench run`: the whole acceptance run on this node (or cluster, under torchrun), then the report."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..cli import Command
from ..exitcodes import FAILED, INCOMPLETE, OK, UsageError


@click.command(cls=Command, name="run", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--profile",
    type=click.Choice(["quick", "standard", "full"]),
    default=None,
    help="quick (~2 min on a GPU node, seconds on a CPU), standard (~15 min), full (hours). "
    "Default: quick on a CPU node, standard on a GPU node.",
)
@click.option(
    "--io-dir", default=None, metavar="PATH", help="File system for the storage test (default: the run directory's)."
)
@click.option(
    "--only",
    default=None,
    metavar="PROBES",
    help="Comma list of node,mamf,membw,collectives,diskio,train,fabric (more than one node),burn.",
)
@click.option("--skip", default=None, metavar="PROBES", help="Comma list of probes to leave out.")
@click.option("--dry-run", is_flag=True, help="Print the plan (every probe and its parameters) and exit.")
@click.option(
    "--resume",
    "resume_dir",
    default=None,
    metavar="RUN_DIR",
    help="Continue an interrupted run, skipping what is complete.",
)
@click.option("--out", "out_dir", default=None, metavar="RUN_DIR", help="The run directory (default results/<run-id>).")
@click.option("--run-id", default=None, envvar="MLBENCH_RUN_ID", help="Run id (default: time-host-random).")
@click.option(
    "--device", default="auto", show_default=True, help="auto (every local GPU) or cpu (ignore accelerators)."
)
@click.option(
    "--specs", "specs_files", multiple=True, metavar="FILE", help="Extra or overriding spec rows for the report."
)
@click.option(
    "--acceptance",
    default=None,
    metavar="FILE",
    help="JSON thresholds for the verdicts (as `mlbench report --acceptance`): a cluster hand-over's terms.",
)
@click.option("--strict", is_flag=True, help="A probe that did not run (INCOMPLETE) fails the run too.")
@click.option(
    "--burn",
    "burn",
    default=None,
    metavar="DURATION",
    help="Include a burn-in of this length (90s, 30m, 4h) in any profile; the full profile has one "
    "of 30 minutes on GPUs.",
)
def command(
    profile, io_dir, only, skip, dry_run, resume_dir, out_dir, run_id, device, specs_files, acceptance, strict, burn
):
    """Measure this node (or the cluster) with every probe, then report verdicts.

    Writes one run directory: each probe's records, env.json, plan.json, state.json, logs/ and the
    report (report.md, summary.csv, report.html, plots). Exit 0 when every verdict passes, 1 when one
    fails, 3 when interrupted (continue with --resume RUN_DIR).
    """
    from . import plan as planning

    if burn is not None:
        planning.parse_duration(burn, "--burn")
    probes = planning.select(only, skip, with_burn=profile == "full" or burn is not None)
    if device not in ("auto", "cpu"):
        raise UsageError(f"bad --device {device!r}: mlbench run takes auto (every local GPU) or cpu")
    for path in specs_files:
        if not os.path.isfile(path):
            raise UsageError(f"--specs {path}: no such file")
    if resume_dir is not None:
        if profile or only or skip or out_dir or io_dir or burn:
            raise UsageError(
                "--resume continues the plan saved in RUN_DIR: give no --profile/--only/--skip/--out/--io-dir/--burn"
            )
        if not _saved_plan(Path(resume_dir)).is_file():
            raise UsageError(f"--resume {resume_dir}: no plan.json there (not an mlbench run directory)")
    if io_dir is not None and not (os.path.isdir(io_dir) and os.access(io_dir, os.W_OK)):
        raise UsageError(f"--io-dir {io_dir}: not a writable directory")
    from ..report.cli import make_thresholds

    thresholds = make_thresholds(acceptance, strict, (), (), None, None, None, None, None)  # checked before measuring

    from ..records import new_run_id
    from .cluster import Coordinator, under_torchrun

    coordinator = Coordinator() if under_torchrun() and not dry_run else None
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        the_plan = planning.AcceptancePlan.from_json(_saved_plan(run_dir).read_text())
    else:
        run_id = run_id or new_run_id()
        if coordinator is not None:
            run_id = coordinator.broadcast(run_id)
        run_dir = Path(out_dir) if out_dir else Path("results") / run_id
        if not dry_run and run_dir.exists() and any(run_dir.iterdir()) and coordinator is None:
            raise UsageError(
                f"run directory {run_dir} exists and is not empty: choose another --out or --run-id, or --resume it"
            )
        layout = _layout(device, coordinator)
        chosen = profile or ("quick" if layout.device_type == "cpu" else "standard")
        the_plan = planning.build(chosen, layout, os.path.abspath(io_dir or run_dir), run_id, probes, burn=burn)
    if dry_run:
        click.echo(planning.describe(the_plan))
        return OK
    return _run(the_plan, run_dir, coordinator, specs_files, thresholds, resumed=resume_dir is not None)


def _saved_plan(run_dir: Path) -> Path:
    """RUN_DIR/plan.json, or this host's RUN_DIR/<host>/plan.json for a cluster run."""
    from ..records import hostname

    direct = run_dir / "plan.json"
    return direct if direct.is_file() else run_dir / hostname() / "plan.json"


def _layout(device: str, coordinator):
    from ..device import accelerator_types
    from ..records import hostname
    from .plan import NodeLayout

    kinds = [] if device == "cpu" else accelerator_types()
    kind = kinds[0] if kinds else "cpu"
    count = 0
    if kind in ("cuda", "xpu"):
        import torch

        count = getattr(torch, kind).device_count()
    elif kind == "mps":
        count = 1
    if coordinator is None:
        return NodeLayout(hostname(), kind, count)
    return NodeLayout(
        hostname(),
        kind,
        count,
        nodes=coordinator.world_size,
        node_rank=coordinator.rank,
        master_addr=coordinator.master_addr,
        master_port=coordinator.master_port,
    )


def _run(the_plan, run_dir: Path, coordinator, specs_files, thresholds, resumed: bool) -> int:
    from ..provenance import write_env_json
    from .plan import describe
    from .runner import StepState, execute

    node_dir = the_plan.node_dir(run_dir)
    node_dir.mkdir(parents=True, exist_ok=True)
    if not (node_dir / "plan.json").exists():
        (node_dir / "plan.json").write_text(the_plan.to_json())
    write_env_json(node_dir, "run")
    leader = coordinator is None or coordinator.rank == 0
    if leader:
        click.echo(describe(the_plan).splitlines()[0] + ("  (resumed)" if resumed else ""), err=True)
        click.echo(f"run directory: {run_dir}", err=True)
        if "diskio" in {s.name for s in the_plan.steps}:
            click.echo(
                f"storage test on {the_plan.io_dir}"
                + (
                    " (the run directory's file system)"
                    if os.path.abspath(the_plan.io_dir) == os.path.abspath(run_dir)
                    else ""
                ),
                err=True,
            )

    def on_event(kind, step, outcome, info):
        head = f"[{info['number']}/{info['total']}] {step.name}"
        if kind == "skip":
            click.echo(f"{head}: already complete, skipped", err=True)
        elif kind == "start":
            click.echo(
                f"{head}: {step.what} (about {_fmt_s(step.estimate_s)}; "
                f"elapsed {_fmt_s(info['elapsed_s'])}, about {_fmt_s(info['left_s'])} left)",
                err=True,
            )
        else:
            extra = (
                ""
                if outcome.status == StepState.DONE
                else f" (exit {','.join(map(str, outcome.exit_codes))}; see {run_dir / outcome.logs[0]})"
            )
            click.echo(f"{head}: {outcome.status} in {_fmt_s(outcome.seconds)}{extra}", err=True)

    outcome = execute(the_plan, run_dir, on_event, coordinator)
    if outcome.interrupted:
        click.echo(
            f"interrupted: what was measured is in {run_dir}; continue with: mlbench run --resume {run_dir}", err=True
        )
        return INCOMPLETE
    if coordinator is not None:
        coordinator.barrier()
        coordinator.collect_files(run_dir, the_plan.node.host)
        coordinator.barrier()
        if coordinator.rank != 0:
            coordinator.close()
            return OK
    failed_steps = [o.name for o in outcome.steps if o.status == StepState.FAILED]
    code = _report(run_dir, specs_files, thresholds)
    if failed_steps:
        click.echo(f"probe(s) that failed: {', '.join(failed_steps)} (logs in {node_dir / 'logs'})", err=True)
        code = max(code, FAILED) if code != INCOMPLETE else code
    if coordinator is not None:
        coordinator.close()
    return code


def _report(run_dir: Path, specs_files, thresholds) -> int:
    """The reporter over the run directory: prints the summary and verdicts, returns the exit code."""
    from ..report.api import build_report

    result = build_report([str(run_dir)], out_dir=str(run_dir), specs_files=tuple(specs_files), thresholds=thresholds)
    click.echo(result.markdown)
    click.echo(f"report: {run_dir / 'report.md'} (and report.html, summary.csv, plots)", err=True)
    return result.exit_code


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min {seconds % 60:02d} s" if seconds < 600 else f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
