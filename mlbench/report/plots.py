"""matplotlib plots (Agg backend, PNG files): one figure per probe that has ok records.

- mamf.png: TFLOPS over the measured shapes (sorted by FLOPs), one line per device for up to
  `MAX_LINES` devices, else the median across devices with a min-max band; the dense peak
  (dashed) and the published MAMF (dotted) of each recognised part.
- membw.png: GB/s against buffer size (log-2 axis) per op: device memory (read + written) on the
  left, host and peer links (bytes once) on the right.
- collectives.png: busbw against payload (log-2 axis) per op.
- diskio.png: GB/s bars per mode (direct / buffered) with the p99 latency on a second axis.
- fabric.png: the pair heatmap (node x node busbw) and busbw against payload per fabric view
  (`fabric_view.plot`).
- telemetry.png: SM clock, power and temperature per measurement over the run (`report.telemetry`).
With many devices or nodes each line is the median across them and the band their min..max.
"""

from __future__ import annotations

from pathlib import Path

MAX_LINES = 8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _lines(ax, part, x, y, label_col, unit_cols):
    """Per label: one line per unit (device or node: `unit_cols`) when few, else the median across
    units with a min..max band."""
    n_units = len(part[unit_cols].drop_duplicates())
    for label, sub in part.groupby(label_col, sort=True):
        per_unit = sub.groupby([x] + unit_cols, sort=True)[y].max()
        if n_units <= MAX_LINES:
            for unit, one in per_unit.groupby(level=list(range(1, len(unit_cols) + 1)), sort=True):
                one = one.droplevel(list(range(1, len(unit_cols) + 1)))
                name = ":".join(map(str, unit if isinstance(unit, tuple) else (unit,)))
                ax.plot(one.index, one.values, marker="o", ms=3, label=f"{label} {name}" if n_units > 1 else str(label))
        else:
            stats = per_unit.groupby(level=0).agg(["median", "min", "max"]).sort_index()
            ax.plot(stats.index, stats["median"], marker="o", ms=3, label=f"{label} (median of {n_units})")
            ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)


def _mamf_reference_lines(ax, checks) -> None:
    """Dashed: each recognised part's dense peak; dotted: its published MAMF (a few lines at most)."""
    if checks is None or checks.empty:
        return
    part = checks[(checks["probe"] == "mamf") & checks["spec"].astype(bool)]
    seen = set()
    for r in part.itertuples(index=False):
        dtype = str(r.check).split(".", 1)[-1]
        for value, style, what in ((r.spec_value, "--", "dense peak"), (r.reference, ":", "published MAMF")):
            key = (r.spec, dtype, what)
            if value is None or value != value or key in seen or len(seen) >= 4:
                continue
            seen.add(key)
            ax.axhline(float(value), linestyle=style, linewidth=1, color="grey")
            ax.annotate(
                f"{r.spec} {dtype} {what} {float(value):g}",
                (0, float(value)),
                xycoords=("axes fraction", "data"),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=7,
                color="grey",
            )


def plot_mamf(ok, out: Path, plt, checks=None) -> Path:
    if "params.mode" in ok:  # a sustain record repeats the best shape over minutes: not a point of the sweep
        ok = ok[ok["params.mode"].ne("sustain")]
    dims = ["params.m", "params.n", "params.k"]
    shapes = ok[dims].drop_duplicates().astype(int)
    flops = 2.0 * shapes["params.m"] * shapes["params.n"] * shapes["params.k"]
    shapes = shapes.assign(flops=flops).sort_values(["flops"] + dims)
    order = [f"{m}x{n}x{k}" for m, n, k in shapes[dims].itertuples(index=False, name=None)]
    shapes["position"] = range(len(shapes))
    d = ok.astype({c: int for c in dims}).merge(shapes[dims + ["position"]], on=dims, how="left")
    fig, ax = plt.subplots(figsize=(10, 5))
    _lines(ax, d, "position", "metrics.tflops", "params.dtype", ["host", "device_index"])
    _mamf_reference_lines(ax, checks)
    if len(order) <= 30:
        ax.set_xticks(range(len(order)), order, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel(f"{len(order)} shapes, by FLOPs")
    ax.set_ylabel("TFLOPS (median)")
    ax.set_title("MAMF: matmul TFLOPS over shapes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / "mamf.png", plt)


def _log2_axes(ax, xlabel: str) -> None:
    """Sizes on a log-2 axis, a light grid and a small legend: the bandwidth plots' common frame."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_membw(ok, out: Path, plt) -> Path:
    from ..membw.plan import Family
    from .checks.membw import families

    local = families(ok).eq(Family.HBM.value)
    panels = [(ok[local], "metrics.gbps", "device memory: GB/s (read + written)")]
    if (~local).any():
        links = ok[~local]
        copied = links["metrics.gbps_copied"] if "metrics.gbps_copied" in links else links["metrics.gbps"]
        panels.append(
            (links.assign(value=copied.fillna(links["metrics.gbps"])), "value", "host / peer links: GB/s (bytes once)")
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, (part, column, title) in zip(axes[0], panels):
        _lines(ax, part, "params.bytes", column, "params.op", ["host", "device_index"])
        _log2_axes(ax, "buffer size (bytes, log 2)")
        ax.set_title(title, fontsize=10)
    fig.suptitle("Memory bandwidth against size")
    return _save(fig, out / "membw.png", plt)


def plot_collectives(ok, out: Path, plt) -> Path:
    d = ok[ok["params.mode"].ne("latency")] if "params.mode" in ok else ok
    fig, ax = plt.subplots(figsize=(10, 5))
    _lines(ax, d, "params.bytes", "metrics.busbw_gbps", "params.op", ["host", "run_id"])
    _log2_axes(ax, "payload S (bytes, log 2)")
    ax.set_ylabel("busbw GB/s")
    ax.set_title("Collectives: bus bandwidth against payload")
    return _save(fig, out / "collectives.png", plt)


def plot_diskio(ok, out: Path, plt) -> Path:
    io = ok["params.direct"].map({True: "", False: " (buffered)"}).fillna("")
    d = ok.assign(label=ok["params.mode"].astype(str) + io)
    best = d.groupby(["label", "host"]).agg(gbps=("metrics.gbps", "max"), p99=("metrics.lat_us_p99", "median"))
    stats = best.groupby(level=0).median().sort_index()
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.bar(range(len(stats)), stats["gbps"], color="tab:blue", label="GB/s (best per node, median over nodes)")
    ax.set_xticks(range(len(stats)), stats.index, rotation=20)
    ax.set_ylabel("GB/s")
    twin = ax.twinx()
    twin.plot(range(len(stats)), stats["p99"], "o", color="tab:red", label="p99 latency us")
    twin.set_ylabel("p99 latency (us)")
    twin.set_yscale("log")
    ax.set_title("Storage: throughput and p99 latency per mode")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=7)
    return _save(fig, out / "diskio.png", plt)


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_fabric(ok, out: Path, plt, checks=None) -> Path:
    from .fabric_view import plot

    return plot(ok, out, plt, checks)


PLOTTERS = {
    "mamf": plot_mamf,
    "membw": plot_membw,
    "collectives": plot_collectives,
    "diskio": plot_diskio,
    "fabric": plot_fabric,
}
NEEDED = {
    "mamf": ("params.m", "params.n", "params.k", "metrics.tflops"),
    "membw": ("params.bytes", "metrics.gbps"),
    "collectives": ("params.bytes", "metrics.busbw_gbps"),
    "diskio": ("metrics.gbps", "metrics.lat_us_p99", "params.direct"),
    "fabric": ("params.view", "metrics.busbw_gbps"),
}


def write_plots(frame, out_dir: Path, checks=None) -> list[Path]:
    """Write a PNG per probe with ok records into `out_dir`; return their paths. With the checks,
    the MAMF plot shows each recognised part's dense peak and published MAMF."""
    plt = _pyplot()
    written = []
    for probe, plotter in PLOTTERS.items():
        ok = frame[(frame["probe"] == probe) & (frame["status"] == "ok")]
        if ok.empty or not all(c in ok for c in NEEDED[probe]):
            continue
        extra = {"checks": checks} if probe in ("mamf", "fabric") else {}
        written.append(plotter(ok.dropna(subset=list(NEEDED[probe])[:2]), out_dir, plt, **extra))
    from .telemetry import plot_telemetry

    return written + plot_telemetry(frame, out_dir, plt, MAX_LINES)
