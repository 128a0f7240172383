"""`mlbench burn` / `python -m mlbench.burn`: the burn-in's definition for the shared loop.

Options and plan: `plan.py`; the measurement: `probe.py`; one process per GPU for `--device all`:
`launch.py`; sharing results between those processes: `exchange.py`; the closing text: `summary.py`.
torch is imported only when the probe starts (or counts the GPUs for `--device all`).
"""

from __future__ import annotations

import contextlib

from .. import harness
from ..records import Result
from .plan import BurnOptions, format_duration, make_plan


class Burn(harness.Probe):
    """Burn-in: every GPU loaded for a duration, results compared bit for bit, memory patterns, error counters.

    A deterministic matmul (fixed seed and shape, deterministic library settings) runs back to back; every
    result is compared bit for bit with the first one, and the first result with the other GPUs' of the
    same model. Each interval (one record) ends with a memory pattern pass over most of the free memory
    and a read of the ECC / retired-page / row-remap / XID counters. Any mismatch, pattern error or
    counter growth is an error record naming the GPU, the iteration and the first bad element: exit 1.
    `--device all` (the default) runs one process per local GPU, all at once.
    """

    name = "burn"
    options = BurnOptions
    help = __doc__

    def validate(self, options: BurnOptions) -> None:
        from .. import faults
        from ..device import parse_device_spec

        if options.device != "all":
            parse_device_spec(options.device)
        make_plan("cpu", options)
        make_plan("cuda", options)
        faults.current()

    def delegate(self, options: BurnOptions):
        if options.device != "all":
            return None
        from ..device import accelerator_inventory
        from .launch import run_all

        gpus = [f"{info.type}:{info.index}" for info in accelerator_inventory()]
        if len(gpus) <= 1:
            return None
        return run_all(options, gpus, make_plan(gpus[0].split(":")[0], options))

    @contextlib.contextmanager
    def start(self, options: BurnOptions, stop):
        from .. import faults
        from ..device import resolve
        from ..records import default_out, hostname, new_run_id
        from .exchange import Exchange
        from .probe import (
            METHOD,
            MatmulCheck,
            Parts,
            Siblings,
            burn,
            describe_plan,
            deterministic,
            library_version,
            make_pattern,
        )

        dev = resolve("auto" if options.device == "all" else options.device)
        plan = make_plan(dev.type, options)
        run_id = options.run_id or new_run_id()
        out = options.out or str(default_out("burn", run_id))
        record = dev.info.record()
        host = hostname()
        corrupt_from = faults.current().corrupt_after(dev.info.index if dev.info.index is not None else 0)
        with dev.as_current(), deterministic(plan.dtype.allow_tf32) as settings:
            try:
                check = MatmulCheck(dev, plan, corrupt_from)
                pattern = make_pattern(plan, dev)
            except (RuntimeError, MemoryError) as exc:
                if not dev.is_oom(exc):
                    raise
                why = f"out of memory for the {plan.shape} workload: {str(exc).splitlines()[0][:160]}"
                skipped = [Result.skipped({"dtype": plan.dtype.name, "interval": 0}, why)]
                yield harness.Run(
                    record,
                    f"burn-in on {dev.info.name}",
                    skipped,
                    lambda records, interrupted: "",
                    total=1,
                    noun="interval(s)",
                    run_id=run_id,
                )
                return
            counters = dev.error_counters()
            try:
                library = library_version()
                key = {
                    "device_name": dev.info.name,
                    "dtype": plan.dtype.name,
                    "shape": str(plan.shape),
                    "seed": plan.seed,
                    "library": library,
                    **settings,
                }
                siblings = Siblings(Exchange(out, run_id, host, record), host, record, key)
                siblings.publish()
                params = {
                    "seed": plan.seed,
                    "duration_s": plan.duration_s,
                    "interval_s": plan.interval_s,
                    "library": library,
                    "counters_backend": counters.backend,
                    "method": METHOD,
                    **settings,
                }
                parts = Parts(dev, plan, check, pattern, counters, siblings, params)
                notes = [] if not getattr(counters, "why", None) else [f"no error counters: {counters.why}"]
                if corrupt_from is not None:
                    notes.append(f"fault injected: one bit of each result flipped from iteration {corrupt_from} on")
                yield harness.Run(
                    record,
                    f"burn-in on {dev.info.name} ({dev.torch_device}): {describe_plan(plan, pattern, counters)}",
                    burn(parts, stop),
                    summary=lambda records, interrupted: _summary(records, plan),
                    total=plan.intervals,
                    progress_text=lambda r: progress_text(r, plan.duration_s),
                    notes=notes,
                    warnings=lambda: _slow_warnings(siblings),
                    noun="interval(s)",
                    require_ok=True,
                    run_id=run_id,
                )
            finally:
                counters.close()


def progress_text(record: dict, duration_s: float) -> str:
    """`interval 3: 612 TFLOPS, 0 mismatches, 4 min left`."""
    m = record["metrics"]
    tflops = f"{m['tflops']:.4g} TFLOPS" if m.get("tflops") else "-"
    left = max(0.0, duration_s - (m.get("elapsed_s") or 0.0))
    state = "" if record["status"] == "ok" else f" {record['status'].upper()}"
    return (
        f"interval {record['params'].get('interval')}: {tflops}, {m.get('mismatches', 0)} mismatches, "
        f"{format_duration(round(left))} left{state}"
    )


def _summary(records: list, plan) -> str:
    from .summary import summary_text

    return summary_text(records, plan.duration_s)


def _slow_warnings(siblings) -> list:
    return [
        f"{label}: {100 * below:.0f}% slower than the median of the other GPUs of this run under the same load"
        for label, below in sorted(siblings.slow().items())
    ]


command = harness.command(Burn)
