"""The report's telemetry: the section of telemetry checks, and clocks, power and temperature over the run.

The section lists the `telemetry.*` check rows (`checks.telemetry`): per GPU whether its measurements
were throttled, per node the temperature spread of its GPUs under the same load.

The plot (`telemetry.png`) has one point per measurement window (from asking the probe for an item to
its arrival: the timed work and its preparation), at the window's middle on a common time axis (each
records file is placed by its records' wall-clock times, to the second): the median SM clock (its
min..max as a band), the median power with the power limit dashed, and the hottest temperature;
throttled windows are marked with a red x. One line per device, up to `plots.MAX_LINES` in the legend.
"""

from __future__ import annotations

from pathlib import Path

PANELS = (
    ("telemetry.sm_clock_mhz", "SM clock (MHz)"),
    ("telemetry.power_w", "power (W)"),
    ("telemetry.temp_c", "temperature (C)"),
)
NEEDED = ("telemetry.start_s", "telemetry.span_s")


def telemetry_section(checks):
    """The report section of the telemetry check rows (empty when there are none)."""
    from .render import Section, _limit, text

    part = checks[checks["probe"] == "telemetry"]
    notes: list = []
    part = _limit(part, notes)
    rows = [
        [r.host, r.device, text(r.device_name), r.check.split(".", 1)[-1], text(r.at), r.verdict, text(r.reason)]
        for r in part.itertuples(index=False)
    ]
    if rows:
        notes.append(
            "Each record's telemetry covers its window: from asking the probe for the item to its arrival "
            "(the timed work and its preparation). Throttled: power, thermal or hardware slowdown held more "
            "than 5% of a window; temp spread: GPUs of a node more than 5 C apart under the same load."
        )
    return Section("Telemetry", ["host", "dev", "device", "check", "over the run", "verdict", "reason"], rows, notes)


def timeline(frame):
    """The records with telemetry figures, each with `t_s`: its window's middle on the run's common time axis."""
    import pandas as pd

    if not all(c in frame for c in NEEDED) or not any(f"{c}.median" in frame for c, _ in PANELS):
        return frame.iloc[:0]
    d = frame[frame["telemetry.start_s"].notna() & frame["telemetry.span_s"].notna()].copy()
    if d.empty:
        return d
    start = d["telemetry.start_s"].astype(float)
    span = d["telemetry.span_s"].astype(float)
    wall = pd.to_datetime(d["time"], utc=True, errors="coerce")
    origin = (wall - pd.to_timedelta(start + span, unit="s")).groupby(d["file"]).transform("min")
    d["t_s"] = ((origin - origin.min()).dt.total_seconds() + start + span / 2).astype(float)
    return d.sort_values("t_s")


def plot_telemetry(frame, out_dir: Path, plt, max_lines: int = 8) -> list:
    """Write telemetry.png when records carry telemetry figures; return [its path] or []."""
    from .plots import _save

    d = timeline(frame)
    if d.empty:
        return []
    panels = [(column, label) for column, label in PANELS if f"{column}.median" in d]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), sharex=True, squeeze=False)
    units = list(d.groupby(["host", "device_index"], sort=True))
    throttled = d["flags"].astype(str).str.split(",").map(lambda words: "throttled" in words)
    for ax, (column, label) in zip(axes[:, 0], panels):
        for (host, index), part in units:
            name = f"{host}:{index}"
            y = part[f"{column}.max" if column == "telemetry.temp_c" else f"{column}.median"].astype(float)
            line = ax.plot(
                part["t_s"],
                y,
                marker=".",
                ms=3,
                lw=1,
                label=name if len(units) <= max_lines else None,
                alpha=1.0 if len(units) <= max_lines else 0.5,
            )[0]
            if column == "telemetry.sm_clock_mhz" and f"{column}.min" in part:
                ax.fill_between(
                    part["t_s"],
                    part[f"{column}.min"].astype(float),
                    part[f"{column}.max"].astype(float),
                    color=line.get_color(),
                    alpha=0.15,
                )
                hot = part[throttled.loc[part.index]]
                ax.plot(hot["t_s"], hot[f"{column}.median"].astype(float), "x", color="red", ms=6)
            if column == "telemetry.power_w" and "telemetry.power_limit_w.median" in part:
                ax.plot(
                    part["t_s"],
                    part["telemetry.power_limit_w.median"].astype(float),
                    "--",
                    lw=1,
                    color=line.get_color(),
                    alpha=0.6,
                )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(
        "Telemetry over the run (one point per measurement; red x: throttled; dashed: power limit)", fontsize=10
    )
    if len(units) <= max_lines:
        axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("time since the first measurement (s)")
    return [_save(fig, Path(out_dir) / "telemetry.png", plt)]
