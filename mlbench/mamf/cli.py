"""`mlbench mamf` / `python -m mlbench.mamf`: the click layer (torch is imported only when it runs)."""

from __future__ import annotations

import click

from ..cli import Command, probe_options
from ..exitcodes import FAILED, INCOMPLETE, OK


@click.command(cls=Command, name="mamf", context_settings={"help_option_names": ["-h", "--help"]})
@probe_options
@click.option("--dtype", "dtype_name", default="bf16", show_default=True,
              help="bf16, fp16, tf32, fp32, fp8 (e4m3), int8; torch names also accepted.")
@click.option("--shapes", default=None, metavar="MxNxK[,...]", help="Explicit shapes to sweep.")
@click.option("--m", "m", default=None, metavar="SIZES", help="M values: a list or range (e.g. 1K:16K:+1K).")
@click.option("--n", "n", default=None, metavar="SIZES", help="N values (with --m and --k: their product is swept).")
@click.option("--k", "k", default=None, metavar="SIZES", help="K values.")
@click.option("--search/--sweep", "search_mode", default=None,
              help="Search the grid for the best shape (default without shapes) or sweep all of it (default with --m/--n/--k).")
@click.option("--fp8-fast-accum", is_flag=True,
              help="fp8: let torch._scaled_mm use fast (lower-precision) accumulation; recorded as params.fast_accum.")
@click.option("--warmup-s", type=float, default=None,
              help="Seconds of back-to-back matmuls before measuring (default 10 on accelerators, 0.5 on CPU).")
def command(device, out, quick, run_id, dtype_name, shapes, m, n, k, search_mode, fp8_fast_accum, warmup_s):
    """Maximum achievable matmul FLOPS: sweep or search matmul shapes, report the best.

    TFLOPS = 2*m*n*k / time, with the median time (also the mean, and the max from the fastest
    sample). Inputs are random normal, the output preallocated, the cache flushed before each
    timed matmul, each shape's result spot-checked against float64.
    """
    from .plan import make_plan, parse_dtype

    dtype = parse_dtype(dtype_name)
    mode = None if search_mode is None else ("search" if search_mode else "sweep")
    # validate everything that needs no device before importing torch
    from ..device import parse_device_spec

    parse_device_spec(device)
    make_plan("cpu", shapes, m, n, k, mode, quick, warmup_s)

    from ..device import resolve
    from ..session import ProbeSession
    from .. import specs
    from ..progress import Progress
    from ..records import Result
    from .probe import MatmulProbe, unsupported_reason
    from .run import best_record, run

    dev = resolve(device)
    plan = make_plan(dev.type, shapes, m, n, k, mode, quick, warmup_s)
    spec = specs.lookup(dev.info.name)
    peak = spec.peak_tflops(dtype.name) if spec else None
    session = ProbeSession("mamf", dev.info.record(), out=out, run_id=run_id)
    session.start()
    click.echo(f"mlbench mamf: {dtype.name} on {dev.info.name} ({dev.torch_device}); {plan.describe()}; "
               f"records -> {session.out}", err=True)
    why = unsupported_reason(dtype, dev)
    if why:
        session.add(Result.skipped({"m": 0, "n": 0, "k": 0, "dtype": dtype.name}, why))
        session.close()
        click.echo(f"mlbench mamf: skipped: {why}", err=True)
        return OK

    total = len(plan.grid) if plan.mode == "sweep" and plan.grid is not None else (len(plan.shapes) or None)
    progress = Progress(total, "mamf")
    best = None

    def show(record: dict) -> None:
        nonlocal best
        p, m = record["params"], record["metrics"]
        if record["status"] == "ok" and (best is None or m["tflops"] > best["metrics"]["tflops"]):
            best = record
        now = f"{m['tflops']:.4g} TFLOPS" if record["status"] == "ok" else record["status"]
        progress.update(1, f"{p['m']}x{p['n']}x{p['k']} {now}" + (f" | best {best['metrics']['tflops']:.4g}" if best else ""))

    with MatmulProbe(dev, dtype, quick=quick, peak_tflops=peak, fast_accum=fp8_fast_accum) as probe:
        interrupted = session.record_all(run(plan, probe), on_record=show)
    progress.close()

    records = session.records
    click.echo(summary_text(records, best_record(records), dev.info.name, dtype.name, peak, spec, interrupted))
    if interrupted:
        return INCOMPLETE
    return FAILED if any(r["status"] == "error" for r in records) else OK


def summary_text(records, best, device_name, dtype_name, peak, spec, interrupted) -> str:
    ok = [r for r in records if r["status"] == "ok"]
    skipped = sum(r["status"] == "skipped" for r in records)
    errors = [r for r in records if r["status"] == "error"]
    lines = []
    if interrupted:
        lines.append(f"interrupted after {len(records)} measurement(s): best so far")
    if best is None:
        lines.append(f"no shape measured ({skipped} skipped, {len(errors)} failed)")
    else:
        p, mt = best["params"], best["metrics"]
        lines.append(f"MAMF {dtype_name} on {device_name}: {mt['tflops']:.4g} TFLOPS (median) "
                     f"at {p['m']}x{p['n']}x{p['k']}; mean {mt['tflops_mean']:.4g}, max {mt['tflops_max']:.4g}; "
                     f"cv {100 * mt['cv']:.1f}% over {mt['reps']} reps")
        if peak:
            line = f"efficiency: {100 * mt['tflops'] / peak:.1f}% of the {peak:g} TFLOPS dense {dtype_name} peak of {spec.name}"
            ref = spec.number(f"mamf_{dtype_name}_tflops")
            if ref:
                line += f" (published MAMF {ref:g}: {100 * mt['tflops'] / ref:.1f}% of it)"
            lines.append(line)
        else:
            lines.append(f"efficiency: no advertised {dtype_name} peak known for {device_name!r}")
        if "above_spec_peak" in best.get("flags", []):
            lines.append("SUSPECT: a sample ran faster than the advertised peak: check the timing, clocks or spec")
    lines.append(f"{len(ok)} shape(s) measured, {skipped} skipped, {len(errors)} failed")
    for r in errors[:3]:
        lines.append(f"  error: {r['error']}")
    return "\n".join(lines)
