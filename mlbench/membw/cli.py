"""`mlbench membw` / `python -m mlbench.membw`: the probe's definition for the shared loop, and its summary.

Options and plan: `plan.py`; measuring one point: `probe.py`; here: what runs, and the tables shown at
the end. torch is imported only when the probe starts.
"""

from __future__ import annotations

import contextlib

from .. import harness
from .plan import Facts, MembwOptions, make_plan


class Membw(harness.Probe):
    """Memory bandwidth: copy, read, write and triad over a size sweep; h2d/d2h and p2p on GPUs.

    gbps counts bytes read + bytes written per second (the HBM-spec convention); gbps_copied
    counts the bytes once for copy-like ops (nvbandwidth's convention, and the links'). Median of
    the harness's samples, buffer sets rotated so the cache is not what is timed, every result
    verified after timing. The peak comes from large sizes, compared with the advertised TB/s.
    """

    name = "membw"
    options = MembwOptions
    help = __doc__

    def validate(self, options: MembwOptions) -> None:
        from ..device import parse_device_spec

        make_plan(Facts("cpu"), options)  # ops and sizes; what fits in memory is checked on the device
        parse_device_spec(options.device)

    @contextlib.contextmanager
    def start(self, options: MembwOptions, stop):
        from .. import specs
        from ..device import resolve
        from .probe import BandwidthProbe, device_facts

        dev = resolve(options.device)
        plan = make_plan(device_facts(dev), options)
        spec = specs.lookup(dev.info.name) if dev.type != "cpu" else None
        hbm_tbps = spec.number("hbm_tbps") if spec else None
        link_gbps = spec.number("link_gbps") if spec else None
        header = f"memory bandwidth on {dev.info.name} ({dev.torch_device}); {plan.describe()}"
        peak_gbps = hbm_tbps * 1000 if hbm_tbps else None
        with BandwidthProbe(dev, quick=options.quick, peak_gbps=peak_gbps, link_gbps=link_gbps) as probe:
            yield harness.Run(
                dev.info.record(),
                header,
                probe.results(plan),
                summary=lambda records, interrupted: summary_text(
                    records, dev.info.name, dev.info.llc_bytes, hbm_tbps, spec
                ),
                total=len(plan.points),
                progress_text=progress_text,
            )


def progress_text(record: dict) -> str:
    """The progress line's text: the point and its GB/s (read + written), or its status."""
    p = record["params"]
    now = f"{record['metrics']['gbps']:.1f} GB/s" if record["status"] == "ok" else record["status"]
    return f"{p['op']} {p['bytes']} B {now}"


def _gbps(value) -> str:
    return f"{value:,.1f}" if value is not None else "-"


def sweep_table(records: list) -> list:
    """Lines of a size x op table of gbps (bytes read + written) for the device-memory ops."""
    from ..sizes import format_bytes
    from .plan import OPS

    ok = [r for r in records if r["status"] == "ok" and OPS[r["params"]["op"]].kind == "device"]
    if not ok:
        return []
    ops = list(dict.fromkeys(r["params"]["op"] for r in ok))
    cells = {(r["params"]["bytes"], r["params"]["op"]): r for r in ok}
    lines = ["GB/s (read + written)  " + "".join(f"{op:>12}" for op in ops)]
    for size in sorted({r["params"]["bytes"] for r in ok}):
        row = [cells.get((size, op)) for op in ops]
        marks = "*" if any(r and r["params"].get("cache_resident") for r in row) else " "
        values = "".join(f"{_gbps(r['metrics']['gbps'] if r else None):>12}" for r in row)
        lines.append(f"{format_bytes(size):>21}{marks} {values}")
    if any(r["params"].get("cache_resident") for r in ok):
        lines.append("  * buffers fit in the last-level cache (--no-rotate): a cache figure, not memory")
    return lines


def transfer_lines(records: list) -> list:
    """Best h2d/d2h (bytes once) per host memory kind, and a p2p matrix per direction (write, read)."""
    from ..sizes import format_bytes

    lines = []
    for op in ("h2d", "d2h"):
        for kind in ("pinned", "pageable"):
            ok = [
                r
                for r in records
                if r["status"] == "ok" and r["params"]["op"] == op and r["params"].get("host_memory") == kind
            ]
            if ok:
                best = max(ok, key=lambda r: r["metrics"]["gbps_copied"])
                lines.append(
                    f"{op} {kind}: {best['metrics']['gbps_copied']:.1f} GB/s (bytes once) "
                    f"at {format_bytes(best['params']['bytes'])}"
                )
    for direction in ("write", "read"):
        peer = [
            r
            for r in records
            if r["params"]["op"] == "p2p"
            and r["params"].get("src") is not None
            and r["params"].get("direction", "write") == direction
        ]
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


def peak_lines(records: list, device_name: str, llc_bytes, hbm_tbps, spec) -> list:
    """The peak per device-memory op (from large sizes when measured) and the best against the advertised TB/s."""
    from ..sizes import format_bytes
    from .plan import peaks

    best, from_large = peaks(records, llc_bytes)
    if not best:
        return []
    where = "large sizes" if from_large else "sizes below 4x LLC only (no large size measured)"
    parts = []
    for op, r in best.items():
        text = f"{op} {r['metrics']['gbps']:,.1f}"
        if r["metrics"].get("gbps_copied") is not None:
            text += f" ({r['metrics']['gbps_copied']:,.1f} copied)"
        parts.append(text)
    lines = [f"peak memory bandwidth on {device_name}, GB/s read + written, from {where}: " + "; ".join(parts)]
    top = max(best.values(), key=lambda r: r["metrics"]["gbps"])
    if hbm_tbps:
        pct = 100 * top["metrics"]["gbps"] / (hbm_tbps * 1000)
        lines.append(
            f"efficiency: {top['params']['op']} {top['metrics']['gbps']:,.1f} GB/s at "
            f"{format_bytes(top['params']['bytes'])} = {pct:.1f}% "
            f"of the advertised {hbm_tbps:g} TB/s of {spec.name}"
        )
    else:
        lines.append(f"efficiency: no advertised memory bandwidth known for {device_name!r}")
    return lines


def summary_text(records: list, device_name: str, llc_bytes, hbm_tbps, spec) -> str:
    """The tables and peaks shown at the end (the counts and the interruption line come from the harness)."""
    lines = sweep_table(records) + transfer_lines(records) + peak_lines(records, device_name, llc_bytes, hbm_tbps, spec)
    if any("above_spec_peak" in r.get("flags", []) for r in records):
        lines.append("SUSPECT: a sample ran faster than the advertised bandwidth: check the timing, clocks or spec")
    return "\n".join(lines)


command = harness.command(Membw)
