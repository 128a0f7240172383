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
- `fabric`: the network between nodes: inter/rail views against the nodes' NIC bandwidth, intra
  against the link, the pair rounds' named nodes (`fabric.node`) and links (`fabric.link`), NICs per node.
- `train`: per device and per job, the training step's TFLOPS per device against the dense peak,
  relative to the expected MFU for the part and preset; the weak-scaling efficiency of each job.
- `node`: node sanity from the acceptance run (cores and memory per GPU, disk, GPU state).
- `burn`: per device, the burn-in: FAIL on any wrong result, memory pattern error or error-counter
  growth, or a first result that differs from the other GPUs of its model; WARN naming a slow GPU.
- `telemetry`: per GPU, whether its measurements were throttled; per node, the temperature spread of
  its GPUs under the same load.
- `coverage`: INCOMPLETE for a probe a device or host did not run while others did.

`rows` holds the row type (`CheckRow`, whose fields are summary.csv's columns) and `judging` the
judging of one figure against its spec. A device or host whose probe has no ok record is INCOMPLETE
(N/A, not a verdict, when it cannot run there: h2d on a CPU); a figure with nothing to judge it against, INFO.
"""

from __future__ import annotations

from .burn import burn_checks
from .collectives import collectives_checks
from .coverage import missing_checks
from .diskio import diskio_checks
from .fabric import fabric_checks
from .judging import Context
from .mamf import mamf_checks
from .membw import membw_checks
from .node import node_checks
from .rows import COLUMNS, NODE, CheckRow, rows_frame
from .telemetry import telemetry_checks, with_throttle_words
from .train import train_checks

__all__ = ["CHECKERS", "COLUMNS", "NODE", "CheckRow", "Context", "all_checks", "rows_frame"]

CHECKERS = (
    node_checks,
    mamf_checks,
    membw_checks,
    collectives_checks,
    fabric_checks,
    diskio_checks,
    train_checks,
    burn_checks,
    telemetry_checks,
    missing_checks,
)


def all_checks(frame, ctx: Context) -> list[CheckRow]:
    """Every checker's rows, in the order of CHECKERS; each sees the frame with a `throttle` column (the
    throttle words of a throttled record, for the reason of a figure measured then)."""
    frame = with_throttle_words(frame)
    rows = []
    for checker in CHECKERS:
        rows += checker(frame, ctx)
    return rows
