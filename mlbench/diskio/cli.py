"""`mlbench diskio` / `python -m mlbench.diskio`: the click layer (no torch; numpy only when it runs)."""

from __future__ import annotations

import click

from ..cli import Command, probe_options
from ..exitcodes import FAILED, INCOMPLETE, OK, MeasurementFailed, UsageError


@click.command(cls=Command, name="diskio", context_settings={"help_option_names": ["-h", "--help"]})
@probe_options
@click.option("--dir", "directory", default=".", show_default=True, metavar="PATH",
              help="A directory on the file system to test; a fresh mlbench-diskio-<random> directory is made "
                   "inside it and removed at the end.")
@click.option("--modes", default=None, metavar="LIST",
              help="Comma list of seqwrite,seqread,randread,randwrite,checkpoint (default: all).")
@click.option("--block-sizes", default=None, metavar="SIZES",
              help="IO sizes, e.g. 4K:16M:x4 (default: 1MiB for sequential modes and checkpoint, 4KiB for random).")
@click.option("--jobs", default=None, metavar="LIST", help="Concurrent jobs (processes), a list: 1,4,16 (default; --quick: 1).")
@click.option("--file-size", default=None, metavar="SIZE", help="Test file size (default 1GiB; --quick: 16MiB).")
@click.option("--duration", "duration_s", type=float, default=None, metavar="SECONDS",
              help="Time bound of each test (default 10; --quick: 0.3).")
@click.option("--io-size", default=None, metavar="SIZE",
              help="Byte bound of each test, all jobs together (default: the file size, one pass).")
@click.option("--direct/--buffered", default=True, show_default=True,
              help="O_DIRECT (default) or through the page cache (labelled 'buffered': shows how much a cache flatters).")
@click.option("--allow-buffered", is_flag=True,
              help="Where the file system refuses O_DIRECT, measure buffered instead (labelled) rather than stop.")
def command(device, out, quick, run_id, directory, modes, block_sizes, jobs, file_size, duration_s, io_size,
            direct, allow_buffered):
    """Storage IO as ML uses it: O_DIRECT sequential and random reads and writes, and checkpoint bursts.

    Each job is a process doing one synchronous read or write at a time (fio's psync engine), on
    stamped random data (never zeros; reads are checked). GB/s and IOPS use fio's accounting: all
    bytes / the longest job's time; latencies are per IO (p50, p99, p99.9). Only files it creates in
    a fresh directory under --dir are written, and all are removed at the end, on errors and on
    Ctrl-C; a test that would fill the file system past 90% is refused.
    """
    from .plan import make_plan

    plan = make_plan(modes, block_sizes, jobs, file_size, duration_s, direct, io_size, quick)
    if device not in ("auto", "cpu"):
        raise UsageError(f"--device {device}: diskio measures storage from the host; use auto or cpu")

    from .run import open_target, run_plan
    from ..session import ProbeSession

    session = ProbeSession("diskio", {"type": "storage", "name": "", "index": None}, out=out, run_id=run_id)
    with open_target(directory, plan, allow_buffered) as (workspace, target):
        session.device_record = target.device_record()
        session.start()
        click.echo(f"mlbench diskio: {target.mount.describe()} (test directory {workspace.path}); {plan.describe()}; "
                   f"O_DIRECT alignment {target.offset_align} B ({target.align_source}); records -> {session.out}",
                   err=True)
        if target.direct_refused:
            click.echo("mlbench diskio: O_DIRECT refused here: measuring through the page cache (labelled 'buffered')",
                       err=True)
        outcome = run_plan(plan, workspace, target, session)
    for warning in outcome.warnings:
        click.echo(f"mlbench diskio: warning: {warning}", err=True)
    click.echo(summary_text(session.records, outcome.interrupted))
    if outcome.disk_full:
        raise MeasurementFailed(f"{outcome.disk_full}: stopped, test files removed")
    if outcome.interrupted:
        return INCOMPLETE
    records = session.records
    if any(r["status"] == "error" for r in records) or not any(r["status"] == "ok" for r in records):
        return FAILED
    return OK


def summary_text(records: list, interrupted: bool) -> str:
    from ..sizes import format_bytes

    lines = []
    if interrupted:
        lines.append(f"interrupted after {len(records)} measurement(s); test files removed")
    header = f"{'mode':<16}{'bs':>8}{'jobs':>6}{'GB/s':>10}{'IOPS':>11}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}  flags"
    lines.append(header)
    for r in records:
        p, m = r["params"], r["metrics"]
        mode = p["mode"] + (f"/{p['phase']}" if p.get("phase") else "")
        head = f"{mode:<16}{format_bytes(p['block_size']):>8}{p['jobs']:>6}"
        if r["status"] == "ok" or m.get("gbps") is not None:
            lines.append(f"{head}{m['gbps']:>10.3f}{m['iops']:>11.0f}{m['lat_us_p50']:>10.1f}{m['lat_us_p99']:>10.1f}"
                         f"{m['lat_us_p999']:>10.1f}  {','.join(r.get('flags', []))}")
        else:
            lines.append(f"{head}  {r['status']}: {r['error']}")
    ok = sum(r["status"] == "ok" for r in records)
    skipped = sum(r["status"] == "skipped" for r in records)
    errors = sum(r["status"] == "error" for r in records)
    lines.append(f"{ok} test(s) measured, {skipped} skipped, {errors} failed")
    return "\n".join(lines)
