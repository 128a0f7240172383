"""From the tidy records frame to one row per check (per node and device), each with its verdict.

One module per probe; each picks the figure that answers "does the hardware deliver", finds the
advertised figure in the spec registry and applies `mlbench.report.verdicts`:

- `mamf`: per device and dtype, the best median TFLOPS (the rule of `mlbench.mamf.plan.best_record`)
  against the dense peak; % of the published MAMF too.
- `membw`: per device and family (`mlbench.membw.plan.Family`): hbm, the best `gbps` (read + written)
  over large buffers against `hbm_tbps`; h2d/d2h (`gbps_copied`) against `host_link_gbps`; p2p
  against `link_gbps` (per direction).
- `collectives`: per job and op, the peak busbw over sizes, the half-peak size, the small-size
  latency and the wrong-element count; against `link_gbps` within a node, informational across nodes.
- `diskio`: per host, mode and direct/buffered IO, the best GB/s; informational unless a floor is set.
- `node`: node sanity from the acceptance run (cores and memory per GPU, disk, GPU state).
- `coverage`: INCOMPLETE for a probe a device or host did not run while others did.

`rows` holds the row type (`CheckRow`, whose fields are summary.csv's columns) and `judging` the
judging of one figure against its spec. A device or host whose probe has no ok record is INCOMPLETE.
"""

from __future__ import annotations

from .collectives import collectives_checks
from .coverage import missing_checks
from .diskio import diskio_checks
from .judging import Context
from .mamf import mamf_checks
from .membw import membw_checks
from .node import node_checks
from .rows import COLUMNS, NODE, CheckRow, rows_frame

__all__ = ["CHECKERS", "COLUMNS", "NODE", "CheckRow", "Context", "all_checks", "rows_frame"]

CHECKERS = (node_checks, mamf_checks, membw_checks, collectives_checks, diskio_checks, missing_checks)


def all_checks(frame, ctx: Context) -> list[CheckRow]:
    """Every checker's rows, in the order of CHECKERS."""
    rows = []
    for checker in CHECKERS:
        rows += checker(frame, ctx)
    return rows
