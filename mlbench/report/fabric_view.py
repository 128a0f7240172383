"""The report's fabric section (tables of the `fabric.*` checks, what is named and why) and its plot.

The plot (`fabric.png`): the pair heatmap, node x node busbw of the pair rounds (the lowest when a
pair was measured more than once; blank where a pair was not measured; named nodes marked), and
beside it busbw against payload for the inter, rail and intra views. No pandas import at module level.
"""

from __future__ import annotations

import math
from pathlib import Path

from .render import Section, _limit, _measured, _worst_first, fmt, fmt_pct, text
from .verdicts import Verdict

MAX_LABELLED_NODES = 32
MAX_CELLS = 128  # above this many nodes the heatmap draws measured pairs as dots


def section(checks) -> Section:
    part = checks[checks["probe"] == "fabric"] if len(checks) else checks
    notes: list = []
    if part.empty:
        return Section("Fabric", [], [], [])
    named_nodes = part[(part["check"] == "fabric.node") & (part["verdict"] == Verdict.FAIL)]["host"].tolist()
    named_links = part[(part["check"] == "fabric.link") & (part["verdict"] == Verdict.FAIL)]["host"].tolist()
    if (part["check"] == "fabric.node").any():
        notes.append(
            "Named: "
            + (
                "; ".join([f"node {n}" for n in named_nodes] + [f"link {link}" for link in named_links])
                or "nothing (every node and link above the floor)"
            )
            + "."
        )
    shown = _limit(_worst_first(part), notes)
    rows = [
        [
            r.check,
            r.host,
            r.device,
            _measured(r),
            text(r.at),
            fmt(r.spec_value),
            fmt_pct(r.pct_of_spec),
            r.verdict,
            text(r.reason),
        ]
        for r in shown.itertuples(index=False)
    ]
    if (part["check"] != "fabric.nics").any():  # a fabric run, not only the NIC inventory of the node check
        notes.append(
            "inter/rail: peak busbw over sizes (nccl-tests convention, the slowest rank's time) against the "
            "nodes' advertised NIC bandwidth where known; intra: against the accelerator's link; node/link: the "
            "pair rounds (a node failing again with a node that passed, or a pair slow only together and again "
            "when measured again); nics: each node's fabric ports against the fleet's."
        )
    return Section(
        "Fabric", ["check", "host", "dev", "measured", "at", "spec GB/s", "% spec", "verdict", "reason"], rows, notes
    )


def pair_matrix(ok):
    """(node names, matrix of the lowest busbw per pair, NaN where unmeasured) from ok pair records."""
    import numpy as np

    pairs = ok[(ok["params.view"] == "pair")]
    if "params.finding" in pairs:
        pairs = pairs[pairs["params.finding"].isna()]
    if pairs.empty or "params.node_a" not in pairs:
        return [], np.zeros((0, 0))
    lowest = pairs.groupby(["params.node_a", "params.node_b"])["metrics.busbw_gbps"].min()
    names = sorted(set(lowest.index.get_level_values(0)) | set(lowest.index.get_level_values(1)))
    index = {n: i for i, n in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for (a, b), value in lowest.items():
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = value
    return names, matrix


def plot(ok, out: Path, plt, checks=None) -> Path:
    """fabric.png: the pair heatmap (when there are pair records) and busbw against payload per view."""
    names, matrix = pair_matrix(ok)
    views = ok[ok["params.view"].isin(["inter", "rail", "intra"])] if "params.view" in ok else ok.iloc[0:0]
    panels = int(bool(names)) + int(not views.empty)
    fig, axes = plt.subplots(1, max(1, panels), figsize=(7 * max(1, panels), 6), squeeze=False)
    axes = list(axes[0])
    if names:
        ax = axes.pop(0)
        if len(names) <= MAX_CELLS:
            image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
        else:  # a cell per pair would be below a pixel: measured pairs as dots, the slowest drawn last
            import numpy as np

            rows, cols = np.nonzero(~np.isnan(matrix))
            values = matrix[rows, cols]
            order = np.argsort(-values)
            image = ax.scatter(cols[order], rows[order], c=values[order], s=6, cmap="viridis", marker="s")
            ax.set_xlim(-0.5, len(names) - 0.5)
            ax.set_ylim(len(names) - 0.5, -0.5)
            ax.set_aspect("equal")
        fig.colorbar(image, ax=ax, label="pair busbw GB/s (lowest measured)")
        if len(names) <= MAX_LABELLED_NODES:
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
        else:
            ax.set_xlabel(f"{len(names)} nodes, sorted by name")
        named = _named_nodes(checks)
        for node in named:
            if node in names:
                i = names.index(node)
                ax.axhline(i, color="red", linewidth=0.6, alpha=0.7)
                ax.axvline(i, color="red", linewidth=0.6, alpha=0.7)
        measured = int(math.fsum(1 for v in matrix.flat if v == v) // 2)
        ax.set_title(f"Pair rounds: {measured} pairs measured" + (f", named in red: {len(named)}" if named else ""))
    if not views.empty:
        ax = axes.pop(0)
        label = views["params.view"].astype(str) + " " + views["params.op"].astype(str)
        for name, part in views.assign(label=label).groupby("label", sort=True):
            stats = part.groupby("params.bytes")["metrics.busbw_gbps"].agg(["median", "min", "max"]).sort_index()
            ax.plot(stats.index, stats["median"], marker="o", ms=3, label=f"{name} (median of groups)")
            ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("payload S (bytes, log 2)")
        ax.set_ylabel("busbw GB/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("Fabric views: busbw against payload (band: lowest..highest group)")
    fig.tight_layout()
    path = out / "fabric.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _named_nodes(checks) -> list:
    if checks is None or len(checks) == 0:
        return []
    part = checks[(checks["check"] == "fabric.node") & (checks["verdict"] == Verdict.FAIL)]
    return part["host"].astype(str).tolist()
