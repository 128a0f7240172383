"""`mlbench mamf` / `python -m mlbench.mamf`: the probe's definition for the shared loop.

Options and plan: `plan.py`; measuring one shape: `probe.py`; here: what runs, and the summary.
torch is imported only when the probe starts.
"""

from __future__ import annotations

import contextlib

from .. import harness
from ..records import Result
from .plan import MamfOptions, make_plan, parse_dtype


class Mamf(harness.Probe):
    """Maximum achievable matmul FLOPS: sweep or search matmul shapes, report the best.

    TFLOPS = 2*m*n*k / time, with the median time (also the mean, and the max from the fastest
    sample). Inputs are random normal, the output preallocated, the cache flushed before each
    timed matmul, each shape's result spot-checked against float64.
    """

    name = "mamf"
    options = MamfOptions
    help = __doc__

    def validate(self, options: MamfOptions) -> None:
        from ..device import parse_device_spec

        parse_device_spec(options.device)
        make_plan("cpu", options)

    @contextlib.contextmanager
    def start(self, options: MamfOptions, stop):
        from .. import specs
        from ..device import resolve
        from .probe import MatmulProbe, results, unsupported_reason

        dev = resolve(options.device)
        dtype = parse_dtype(options.dtype)
        plan = make_plan(dev.type, options)
        spec = specs.lookup(dev.info.name)
        peak = spec.peak_tflops(dtype.name) if spec else None
        header = f"{dtype.name} on {dev.info.name} ({dev.torch_device}); {plan.describe()}"
        why = unsupported_reason(dtype, dev)
        if why:
            skipped = [Result.skipped({"m": 0, "n": 0, "k": 0, "dtype": dtype.name}, why)]
            yield harness.Run(
                dev.info.record(), header, skipped, lambda records, interrupted: "", total=1, noun="shape(s)"
            )
            return
        total = len(plan.grid) if plan.mode == "sweep" and plan.grid is not None else (len(plan.shapes) or None)
        if total and plan.sustain_s:
            total += 1  # the sustained run's record
        tracker = BestTracker()
        with MatmulProbe(dev, dtype, quick=options.quick, peak_tflops=peak, fast_accum=options.fp8_fast_accum) as probe:
            yield harness.Run(
                dev.info.record(),
                header,
                results(plan, probe),
                summary=lambda records, interrupted: summary_text(
                    records, dev.info.name, dtype.name, peak, spec, interrupted
                ),
                total=total,
                progress_text=tracker.text,
                noun="shape(s)",
            )


class BestTracker:
    """The progress line's text: this shape's TFLOPS and the best so far."""

    def __init__(self):
        self.best = None

    def text(self, record: dict) -> str:
        p, m = record["params"], record["metrics"]
        if record["status"] == "ok" and (self.best is None or m["tflops"] > self.best):
            self.best = m["tflops"]
        now = f"{m['tflops']:.4g} TFLOPS" if record["status"] == "ok" else record["status"]
        return f"{p['m']}x{p['n']}x{p['k']} {now}" + (f" | best {self.best:.4g}" if self.best else "")


def summary_text(records, device_name, dtype_name, peak, spec, interrupted=False) -> str:
    """The best shape and its efficiency against the advertised dense peak (and the published MAMF)."""
    from .plan import best_record

    best = best_record(records)
    if best is None:
        return "no shape measured"
    p, mt = best["params"], best["metrics"]
    lines = ["best so far:"] if interrupted else []
    lines += [
        f"MAMF {dtype_name} on {device_name}: {mt['tflops']:.4g} TFLOPS (median) "
        f"at {p['m']}x{p['n']}x{p['k']}; mean {mt['tflops_mean']:.4g}, max {mt['tflops_max']:.4g}; "
        f"cv {100 * mt['cv']:.1f}% over {mt['reps']} reps"
    ]
    if peak:
        share = 100 * mt["tflops"] / peak
        line = f"efficiency: {share:.1f}% of the {peak:g} TFLOPS dense {dtype_name} peak of {spec.name}"
        ref = spec.number(f"mamf_{dtype_name}_tflops")
        if ref:
            line += f" (published MAMF {ref:g}: {100 * mt['tflops'] / ref:.1f}% of it)"
        lines.append(line)
    else:
        lines.append(f"efficiency: no advertised {dtype_name} peak known for {device_name!r}")
    if "above_spec_peak" in best.get("flags", []):
        lines.append("SUSPECT: a sample ran faster than the advertised peak: check the timing, clocks or spec")
    lines += sustain_lines(records)
    return "\n".join(lines)


def sustain_lines(records) -> list:
    """The sustained run: TFLOPS held over its windows, and the drop from the short burst."""
    from .plan import SUSTAIN_MODE

    lines = []
    for r in records:
        if r["params"].get("mode") != SUSTAIN_MODE or r["status"] != "ok":
            continue
        p, mt = r["params"], r["metrics"]
        line = (
            f"sustained: {mt['tflops_sustained']:.4g} TFLOPS (median of {mt['windows'] - 1 or 1} window(s) of "
            f"{p['window_s']:g} s after the first) at {p['m']}x{p['n']}x{p['k']} over {mt['sustained_s']:.0f} s"
        )
        if mt.get("drop_pct") is not None:
            side = "below" if mt["drop_pct"] >= 0 else "above"
            line += f"; {abs(mt['drop_pct']):.1f}% {side} the short burst ({mt['tflops_burst']:.4g} TFLOPS)"
        if "throttled" in r.get("flags", []):
            line += "; THROTTLED during the run (see the record's telemetry)"
        lines.append(line)
    return lines


command = harness.command(Mamf)
