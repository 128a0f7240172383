"""The fleet view: the slowest GPU of each node, the spread inside it, and suspect nodes.

From the per-check rows (higher is better for every `value`), for each check, device model and node
(nodes are compared only with nodes of the same part):
`ceiling` = the slowest device's value (the node's ceiling when all its GPUs work together),
`best`, `median`, `spread_pct` = (best - ceiling) / best. Across nodes (at least
`min_fleet_nodes`), the fleet median of the ceilings and each node's robust z
((x - median) / (1.4826 MAD), `mlbench.stats.robust_z`); a node whose ceiling is more than
`fleet_margin` below the fleet median is a suspect (FAIL). Inside a node, a device more than
`node_spread` below the node's best is a WARN (the silicon lottery alone gives ~5%).
"""

from __future__ import annotations

from ..stats import median, robust_z
from .checks.rows import NODE, CheckRow
from .verdicts import Thresholds, Verdict

FLEET_COLUMNS = (
    "check",
    "device_name",
    "host",
    "devices",
    "slowest_device",
    "ceiling",
    "median",
    "best",
    "spread_pct",
    "unit",
    "fleet_median",
    "pct_of_fleet_median",
    "robust_z",
    "suspect",
)


def fleet_view(checks, th: Thresholds):
    """(fleet table as a DataFrame, extra check rows for spread warnings and suspect nodes)."""
    import pandas as pd

    measured = checks[checks["value"].notna() & checks["verdict"].ne(Verdict.INCOMPLETE)]
    if measured.empty:
        return pd.DataFrame(columns=list(FLEET_COLUMNS)), []
    measured = measured.assign(value=measured["value"].astype(float), device_name=measured["device_name"].fillna(""))
    keys = ["check", "device_name", "host"]
    grouped = measured.groupby(keys, sort=True)["value"]
    table = grouped.agg(devices="count", ceiling="min", median="median", best="max").reset_index()
    slowest = measured.loc[grouped.idxmin().values, keys + ["device", "unit"]]
    table = table.merge(slowest.rename(columns={"device": "slowest_device"}), on=keys, how="left")
    table["spread_pct"] = 100 * (table["best"] - table["ceiling"]) / table["best"].where(table["best"] > 0)
    extra = _spread_rows(measured, th)
    fleet_median, z, suspect = {}, {}, {}
    for _, part in table.groupby(["check", "device_name"], sort=False):
        if part["host"].nunique() < th.min_fleet_nodes:
            continue
        values = part["ceiling"].tolist()
        center = median(values)
        fleet_median.update(dict.fromkeys(part.index, center))
        z.update(zip(part.index, robust_z(values)))
        suspect.update(zip(part.index, [v < center * (1 - th.fleet_margin) for v in values]))
    table["fleet_median"] = pd.Series(fleet_median, dtype=float)
    table["pct_of_fleet_median"] = 100 * table["ceiling"] / table["fleet_median"]
    table["robust_z"] = pd.Series(z, dtype=float)
    table["suspect"] = pd.Series(suspect, dtype=object).reindex(table.index).fillna(False).astype(bool)
    for r in table[table["suspect"]].itertuples(index=False):
        extra.append(
            CheckRow(
                host=r.host,
                device=str(r.slowest_device),
                device_name=r.device_name,
                probe="fleet",
                check=f"fleet:{r.check}",
                value=r.ceiling,
                unit=r.unit,
                at=f"slowest of {r.devices} device(s)",
                verdict=Verdict.FAIL,
                reason=(
                    f"suspect node: ceiling {r.ceiling:.4g} {r.unit} is {100 - r.pct_of_fleet_median:.1f}% below "
                    f"the fleet median {r.fleet_median:.4g} (robust z {r.robust_z:.1f}; margin "
                    f"{100 * th.fleet_margin:.0f}%)"
                ),
            )
        )
    return table[list(FLEET_COLUMNS)], extra


def _spread_rows(measured, th: Thresholds) -> list[CheckRow]:
    """WARN rows for devices far below the best device of their node (per-device checks only)."""
    devices = measured[measured["device"].ne(NODE)]
    if devices.empty:
        return []
    best = devices.groupby(["check", "device_name", "host"])["value"].transform("max")
    count = devices.groupby(["check", "device_name", "host"])["value"].transform("count")
    slow = devices[(count > 1) & (devices["value"] < best * (1 - th.node_spread))]
    out = []
    for r, node_best in zip(slow.itertuples(index=False), best[slow.index]):
        out.append(
            CheckRow(
                host=r.host,
                device=r.device,
                device_type=r.device_type,
                device_name=r.device_name,
                spec=r.spec,
                probe="fleet",
                check=f"spread:{r.check}",
                value=r.value,
                unit=r.unit,
                at=r.at,
                verdict=Verdict.WARN,
                reason=(
                    f"{100 * (1 - r.value / node_best):.1f}% below the best device of its node "
                    f"({node_best:.4g} {r.unit}; allowed {100 * th.node_spread:.0f}%)"
                ),
            )
        )
    return out
