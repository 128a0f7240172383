"""`mlbench membw` / `python -m mlbench.membw`: the click layer (torch is imported only when it runs)."""

from __future__ import annotations

import click

from ..cli import SIZES, Command, probe_options
from ..exitcodes import FAILED, INCOMPLETE, OK


@click.command(cls=Command, name="membw", context_settings={"help_option_names": ["-h", "--help"]})
@probe_options
@click.option("--ops", default=None, metavar="OPS",
              help="Comma list of copy,read,write,triad,h2d,d2h,p2p (default: all that apply; p2p with 2+ GPUs).")
@click.option("--sizes", type=SIZES, default=None, metavar="SIZES",
              help="Buffer sizes (one buffer), e.g. 1M:1G or 64M,4G (default: LLC/16 doubling to a share of free memory).")
@click.option("--rotate/--no-rotate", default=True, show_default=True,
              help="Cycle buffer sets past 4x the last-level cache (memory figures); --no-rotate shows the cache knee.")
def command(device, out, quick, run_id, ops, sizes, rotate):
    """Memory bandwidth: copy, read, write and triad over a size sweep; h2d/d2h and p2p on GPUs.

    gbps counts bytes read + bytes written per second (the HBM-spec convention); gbps_copied
    counts the bytes once for copy-like ops (nvbandwidth's convention, and the links'). Median of
    the harness's samples, buffer sets rotated so the cache is not what is timed, every result
    verified after timing. The peak comes from large sizes, compared with the advertised TB/s.
    """
    from .plan import parse_ops
    from ..device import parse_device_spec

    names = parse_ops(ops)
    parse_device_spec(device)

    from .. import specs
    from ..device import resolve
    from ..progress import Progress
    from ..session import ProbeSession
    from .plan import make_plan
    from .probe import BandwidthProbe, device_facts
    from .run import run

    dev = resolve(device)
    plan = make_plan(device_facts(dev), names, sizes, quick, rotate)
    spec = specs.lookup(dev.info.name) if dev.type != "cpu" else None
    hbm_tbps = spec.number("hbm_tbps") if spec else None
    link_gbps = spec.number("link_gbps") if spec else None
    session = ProbeSession("membw", dev.info.record(), out=out, run_id=run_id)
    session.start()
    click.echo(f"mlbench membw on {dev.info.name} ({dev.torch_device}); {plan.describe()}; records -> {session.out}", err=True)
    progress = Progress(len(plan.points), "membw")

    def show(record: dict) -> None:
        p = record["params"]
        now = f"{record['metrics']['gbps']:.1f} GB/s" if record["status"] == "ok" else record["status"]
        progress.update(1, f"{p['op']} {p['bytes']} B {now}")

    with BandwidthProbe(dev, quick=quick, peak_gbps=hbm_tbps * 1000 if hbm_tbps else None, link_gbps=link_gbps) as probe:
        probe.reserve(plan)
        interrupted = session.record_all((result for _point, result in run(plan, probe)), on_record=show)
    progress.close()

    records = session.records
    click.echo(summary_text(records, dev.info.name, dev.info.llc_bytes, hbm_tbps, spec, interrupted))
    if interrupted:
        return INCOMPLETE
    return FAILED if any(r["status"] == "error" for r in records) else OK


def _gbps(value) -> str:
    return f"{value:,.1f}" if value is not None else "-"


def sweep_table(records: list) -> list:
    """Lines of a size x op table of gbps (bytes read + written) for the device-memory ops."""
    from .plan import OPS
    from ..sizes import format_bytes

    ok = [r for r in records if r["status"] == "ok" and OPS[r["params"]["op"]].kind == "device"]
    if not ok:
        return []
    ops = list(dict.fromkeys(r["params"]["op"] for r in ok))
    cells = {(r["params"]["bytes"], r["params"]["op"]): r for r in ok}
    lines = ["GB/s (read + written)  " + "".join(f"{op:>12}" for op in ops)]
    for size in sorted({r["params"]["bytes"] for r in ok}):
        row = [cells.get((size, op)) for op in ops]
        marks = "*" if any(r and r["params"].get("cache_resident") for r in row) else " "
        lines.append(f"{format_bytes(size):>21}{marks} " + "".join(f"{_gbps(r['metrics']['gbps'] if r else None):>12}" for r in row))
    if any(r["params"].get("cache_resident") for r in ok):
        lines.append("  * buffers fit in the last-level cache (--no-rotate): a cache figure, not memory")
    return lines


def transfer_lines(records: list) -> list:
    """Best h2d/d2h (bytes once) per host memory kind, and a p2p matrix per direction (write, read)."""
    from ..sizes import format_bytes

    lines = []
    for op in ("h2d", "d2h"):
        for kind in ("pinned", "pageable"):
            ok = [r for r in records if r["status"] == "ok" and r["params"]["op"] == op and r["params"].get("host_memory") == kind]
            if ok:
                best = max(ok, key=lambda r: r["metrics"]["gbps_copied"])
                lines.append(f"{op} {kind}: {best['metrics']['gbps_copied']:.1f} GB/s (bytes once) at {format_bytes(best['params']['bytes'])}")
    for direction in ("write", "read"):
        peer = [r for r in records if r["params"]["op"] == "p2p" and r["params"].get("src") is not None
                and r["params"].get("direction", "write") == direction]
        if not peer:
            continue
        gpus = sorted({r["params"]["src"] for r in peer} | {r["params"]["dst"] for r in peer})
        best = {}
        for r in peer:
            key = (r["params"]["src"], r["params"]["dst"])
            if r["status"] == "ok" and (key not in best or r["metrics"]["gbps_copied"] > (best[key] or 0)):
                best[key] = r["metrics"]["gbps_copied"]
            best.setdefault(key, None)
        who = "the source pushes" if direction == "write" else "the destination pulls"
        lines.append(f"p2p {direction} ({who}) GB/s (bytes once), rows src, columns dst; x = no peer access or failed")
        lines.append("     " + "".join(f"{j:>9}" for j in gpus))
        for i in gpus:
            cells = ["-" if i == j else ("x" if best.get((i, j)) is None else f"{best[(i, j)]:.1f}") for j in gpus]
            lines.append(f"{i:>5}" + "".join(f"{c:>9}" for c in cells))
    return lines


def summary_text(records, device_name, llc_bytes, hbm_tbps, spec, interrupted) -> str:
    from .run import peaks
    from ..sizes import format_bytes

    lines = []
    if interrupted:
        lines.append(f"interrupted after {len(records)} measurement(s): what was measured so far")
    lines += sweep_table(records)
    lines += transfer_lines(records)
    best, from_large = peaks(records, llc_bytes)
    if best:
        where = "large sizes" if from_large else "sizes below 4x LLC only (no large size measured)"
        parts = []
        for op, r in best.items():
            text = f"{op} {r['metrics']['gbps']:,.1f}"
            if r["metrics"].get("gbps_copied") is not None:
                text += f" ({r['metrics']['gbps_copied']:,.1f} copied)"
            parts.append(text)
        lines.append(f"peak memory bandwidth on {device_name}, GB/s read + written, from {where}: " + "; ".join(parts))
        top = max(best.values(), key=lambda r: r["metrics"]["gbps"])
        if hbm_tbps:
            lines.append(f"efficiency: {top['params']['op']} {top['metrics']['gbps']:,.1f} GB/s at "
                         f"{format_bytes(top['params']['bytes'])} = {100 * top['metrics']['gbps'] / (hbm_tbps * 1000):.1f}% "
                         f"of the advertised {hbm_tbps:g} TB/s of {spec.name}")
        else:
            lines.append(f"efficiency: no advertised memory bandwidth known for {device_name!r}")
    if any("above_spec_peak" in r.get("flags", []) for r in records):
        lines.append("SUSPECT: a sample ran faster than the advertised bandwidth: check the timing, clocks or spec")
    ok = sum(r["status"] == "ok" for r in records)
    skipped = [r for r in records if r["status"] == "skipped"]
    errors = [r for r in records if r["status"] == "error"]
    lines.append(f"{ok} point(s) measured, {len(skipped)} skipped, {len(errors)} failed")
    for r in list(dict.fromkeys(r["error"] for r in skipped))[:4]:
        lines.append(f"  skipped: {r}")
    for r in errors[:3]:
        lines.append(f"  error: {r['error']}")
    return "\n".join(lines)
