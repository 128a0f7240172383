"""Coverage checks: INCOMPLETE rows for probes that a device or host did not run while others did.

A required probe (`Thresholds.require`) with no record at all is one INCOMPLETE row (host `*`);
mamf and membw are expected on every device some probe ran on, diskio on every host (collectives
too when required).
"""

from __future__ import annotations

from .judging import Context, incomplete_check
from .rows import NODE, CheckRow, Subject

PER_DEVICE_PROBES = ("mamf", "membw")
PER_HOST_PROBES = ("diskio", "collectives")


def missing_checks(frame, ctx: Context) -> list[CheckRow]:
    """INCOMPLETE rows for probes a device or host did not run while others (or `require`) did."""
    rows = []
    present = set(frame["probe"].unique())
    for probe in ctx.thresholds.require:
        if probe not in present:
            rows.append(
                incomplete_check(Subject("*", NODE, "", ""), probe, probe, f"required probe {probe!r} has no records")
            )
    columns = ["host", "device_index", "device_type", "device_name"]
    ran = {
        probe: set(frame.loc[frame["probe"] == probe, columns].drop_duplicates().itertuples(index=False, name=None))
        for probe in PER_DEVICE_PROBES
        if probe in present
    }
    every = sorted(set().union(*ran.values())) if ran else []
    for probe, have in ran.items():
        for host, index, device_type, name in every:
            if (host, index, device_type, name) not in have:
                rows.append(
                    incomplete_check(
                        Subject(host, str(index), device_type, name),
                        probe,
                        probe,
                        f"{probe} did not run on this device",
                    )
                )
    hosts = set(frame["host"].unique())
    for probe in PER_HOST_PROBES:
        if probe in present and (probe == "diskio" or probe in ctx.thresholds.require):
            have = set(frame.loc[frame["probe"] == probe, "host"].unique())
            rows += [
                incomplete_check(Subject(h, NODE, "", ""), probe, probe, f"{probe} did not run on this node")
                for h in sorted(hosts - have)
            ]
    return rows
