"""The first page: the figures a buyer asks for, per node and for the fleet, each with % of spec and verdict.

A headline figure (`HeadlineFigure`) names a few check rows of the verdicts frame: MAMF per GPU for
each measured dtype (and sustained, when measured), HBM bandwidth per GPU, intra-node and inter-node
busbw, storage read and write, MFU when `train` measured it (the training step's TFLOPS per GPU, its % of
spec the MFU). `HEADLINE_FIGURES` lists them in page
order; a probe adds its figure there with one `HeadlineFigure(...)` line.

Per node, a figure is the lowest value among its rows (for per-device checks, the node's slowest
device: what every GPU of the node can be counted on for), with that row's % of spec; its verdict is
the overall verdict (`verdicts.overall`) of every row of the figure on the node, INCOMPLETE ones and
the fleet view's rows about them (`fleet:<check>`, `spread:<check>`) included. For the fleet
(several nodes), the median of the nodes' figures and of their % of spec, the lowest and highest
node, and the overall verdict of every row. A core figure with no row at all is shown as not
measured, without a verdict; an optional one (sustained MAMF, MFU) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..stats import median
from .checks.collectives import spans_nodes
from .checks.mamf import SUSTAINED_SUFFIX
from .checks.rows import NODE
from .verdicts import HOST_DEVICE_TYPES, OVERALL_ORDER, Verdict, overall

PREFERRED_DTYPES = ("bf16", "fp16", "fp8", "tf32", "fp32", "int8")
PREFERRED_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "sendrecv")
FLEET_ROWS = ("fleet:", "spread:")  # the fleet view's rows about a check: part of its verdict


@dataclass(frozen=True)
class HeadlineFigure:
    """One headline figure: `label` (a format: {suffix} from `select`, such as the dtype; {per} "per GPU" or,
    on host devices, "per device"; {memory} "HBM" or "memory"), the rows it reads (`select`: verdicts frame ->
    {suffix: mask}), whether it is shown as "not measured" when it has none (`core`), whether a mixed fleet
    gets one line per device model (`per_part`)."""

    label: str
    select: Callable  # verdicts frame -> {label suffix: boolean mask over the frame}
    core: bool = True
    per_part: bool = False  # a figure of the part (per GPU): one line per device model in a mixed fleet


@dataclass(frozen=True)
class Line:
    """A headline figure on one node or the fleet: the figure, its % of spec, the verdict, how it was formed."""

    label: str
    scope: str  # a host name, or "fleet"
    value: Optional[float]
    unit: str
    pct_of_spec: Optional[float]
    verdict: Optional[Verdict]  # None: not measured
    detail: str


def _by_check(checks, pattern: Callable[[str], Optional[str]]) -> dict:
    """{suffix: mask} for the checks whose name `pattern` maps to a suffix (None: not this figure)."""
    names = sorted(
        {c for c in checks["check"].dropna().unique() if pattern(c) is not None}, key=lambda c: _dtype_rank(pattern(c))
    )
    return {pattern(name): checks["check"].eq(name) for name in names}


def _dtype_rank(dtype: str):
    return (PREFERRED_DTYPES.index(dtype) if dtype in PREFERRED_DTYPES else len(PREFERRED_DTYPES), dtype)


def _mamf_dtype(check: str) -> Optional[str]:
    parts = check.split(".")
    return parts[1] if len(parts) == 2 and parts[0] == "mamf" else None


def _sustained_dtype(check: str) -> Optional[str]:
    if check.startswith("mamf.") and check.endswith(SUSTAINED_SUFFIX):
        return check[len("mamf.") : -len(SUSTAINED_SUFFIX)]
    return None


def mamf(checks) -> dict:
    return _by_check(checks, _mamf_dtype)


def mamf_sustained(checks) -> dict:
    return _by_check(checks, _sustained_dtype)


def hbm(checks) -> dict:
    return {"": checks["check"].eq("hbm")}


def _busbw(checks, inter: bool) -> dict:
    collectives = checks["probe"].eq("collectives") & checks["check"].str.startswith("busbw.", na=False)
    across = collectives.copy()
    across[collectives] = checks.loc[collectives, "at"].map(spans_nodes).astype(bool)
    part = collectives & (across if inter else ~across)
    ops = [c.split(".", 1)[1] for c in checks.loc[part, "check"].unique()]
    if not ops:
        return {}
    op = min(ops, key=lambda o: (PREFERRED_OPS.index(o) if o in PREFERRED_OPS else len(PREFERRED_OPS), o))
    return {f" ({op})": part & checks["check"].eq(f"busbw.{op}")}


def intra_node_busbw(checks) -> dict:
    return _busbw(checks, inter=False)


def inter_node_busbw(checks) -> dict:
    """Collectives across nodes; else the fabric probe's per-node figure."""
    found = _busbw(checks, inter=True)
    if found:
        return found
    fabric = checks["probe"].eq("fabric")
    for op in PREFERRED_OPS:  # the fabric's inter view (the network alone) carries busbw figures
        inter = fabric & checks["check"].eq(f"fabric.inter.{op}")
        if inter.any():
            return {f" (fabric inter, {op})": inter}
    nodes = fabric & checks["check"].eq("fabric.node")
    return {" (fabric)": nodes} if nodes.any() else {}


def _storage(checks, modes: tuple) -> dict:
    for mode in modes:
        for check in (f"storage.{mode}", f"storage.{mode}.buffered"):
            mask = checks["check"].eq(check)
            if mask.any():
                return {f" ({mode}{', buffered' if check.endswith('.buffered') else ''})": mask}
    return {}


def storage_read(checks) -> dict:
    return _storage(checks, ("seqread", "randread"))


def storage_write(checks) -> dict:
    return _storage(checks, ("checkpoint", "seqwrite", "randwrite"))


def _train_devices(check: str) -> int:
    """The device count of a `train` check: `train.<model>.<parallel>.<devices>` (a job), else 1 (alone)."""
    parts = check.split(".")
    return int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else 1


def mfu(checks) -> dict:
    """`mlbench train`: the job on the most devices (else a device alone); its value is the TFLOPS per GPU of
    the training step and its % of spec the MFU."""
    names = sorted(checks.loc[checks["probe"].eq("train"), "check"].dropna().unique())
    if not names:
        return {}
    name = max(names, key=lambda c: (_train_devices(c), c.count(".")))
    parts = name.split(".")
    words = f"{parts[1]}, {parts[2]}, {parts[3]} devices" if len(parts) == 4 else f"{'.'.join(parts[1:])}, alone"
    return {f" ({words})": checks["check"].eq(name)}


HEADLINE_FIGURES = (
    HeadlineFigure("MAMF {suffix} {per}", mamf, per_part=True),
    HeadlineFigure("MAMF {suffix} sustained {per}", mamf_sustained, core=False, per_part=True),
    HeadlineFigure("{memory} bandwidth {per}", hbm, per_part=True),
    HeadlineFigure("intra-node busbw{suffix}", intra_node_busbw),
    HeadlineFigure("inter-node busbw{suffix}", inter_node_busbw),
    HeadlineFigure("storage read{suffix}", storage_read),
    HeadlineFigure("storage write{suffix}", storage_write),
    HeadlineFigure("MFU{suffix} {per}", mfu, core=False),
)


def _on_host_devices(rows) -> bool:
    types = set(rows["device_type"].dropna().astype(str))
    return bool(types) and types <= HOST_DEVICE_TYPES


def _label(figure: HeadlineFigure, suffix: str, rows) -> str:
    host = _on_host_devices(rows)
    text = figure.label.format(
        suffix=suffix, per="per device" if host else "per GPU", memory="memory" if host else "HBM"
    )
    return " ".join(text.split())


def _fleet_rows(checks, rows):
    """The fleet view's rows (`fleet:<check>`, `spread:<check>`) about the checks of `rows`."""
    names = {prefix + c for c in rows["check"].unique() for prefix in FLEET_ROWS}
    return checks[checks["check"].isin(names)]


def _verdicts_by_host(rows) -> dict:
    """host -> `verdicts.overall` of its rows' verdicts (vectorised: the best rank of OVERALL_ORDER)."""
    if rows.empty:
        return {}
    rank = rows["verdict"].map({str(v): i for i, v in enumerate(OVERALL_ORDER)}).fillna(len(OVERALL_ORDER))
    best = rank.groupby(rows["host"].astype(str)).min()
    return {host: OVERALL_ORDER[int(r)] if r < len(OVERALL_ORDER) else Verdict.NA for host, r in best.items()}


def node_lines(label: str, rows, fleet_rows) -> dict:
    """host -> the figure's Line on that node: its lowest measured row (with that row's % of spec), and the
    overall verdict of all its rows and of the fleet view's rows about them."""
    import pandas as pd

    verdicts = _verdicts_by_host(pd.concat([rows, fleet_rows[fleet_rows["host"].isin(set(rows["host"]))]]))
    measured = rows[rows["value"].notna()].assign(value=lambda d: d["value"].astype(float))
    hosts = measured["host"].astype(str)
    low = measured.loc[measured.groupby(hosts)["value"].idxmin().values] if len(measured) else measured
    count = measured.groupby(hosts)["value"].count().to_dict()
    best = measured.groupby(hosts)["value"].max().to_dict()
    said = rows[rows["reason"].fillna("").astype(str).ne("")]
    reasons = said.groupby(said["host"].astype(str))["reason"].first().to_dict()
    lines = {}
    for host in sorted(set(rows["host"].astype(str))):
        lines[host] = Line(label, host, None, "", None, verdicts.get(host, Verdict.NA), str(reasons.get(host, "")))
    for r in low.itertuples(index=False):
        host, at = str(r.host), r.at if isinstance(r.at, str) else ""
        if count[host] > 1:
            where = f"device {r.device}, " if r.device != NODE else ""
            at = f"lowest of {count[host]} ({where}{at}); highest {best[host]:.4g}"
        pct = r.pct_of_spec if r.pct_of_spec == r.pct_of_spec else None  # NaN: no spec
        lines[host] = Line(label, host, float(r.value), str(r.unit or ""), pct, verdicts.get(host, Verdict.NA), at)
    return lines


def nodes_text(count: int) -> str:
    return f"{count} node" + ("" if count == 1 else "s")


def fleet_line(label: str, nodes: list, rows, fleet_rows, fleet_size: int) -> Line:
    """The figure over the fleet: the median of the nodes' figures, the lowest and highest node."""
    verdict = overall(Verdict(v) for v in set(rows["verdict"]) | set(fleet_rows["verdict"]))
    measured = [n for n in nodes if n.value is not None]
    if not measured:
        return Line(
            label,
            "fleet",
            None,
            "",
            None,
            verdict,
            f"no figure on the {nodes_text(len(nodes))} that ran it: {nodes[0].detail}",
        )
    values = [n.value for n in measured]
    pcts = [n.pct_of_spec for n in measured if n.pct_of_spec is not None]
    low = min(measured, key=lambda n: (n.value, n.scope))
    high = max(measured, key=lambda n: (n.value, n.scope))
    low_pct = f" ({low.pct_of_spec:.1f}%)" if low.pct_of_spec is not None else ""
    of = f" of {fleet_size}" if len(measured) < fleet_size else ""
    if len(measured) == 1:
        detail = f"{low.scope} only (1{of} nodes); {low.detail}".rstrip("; ")
    else:
        detail = (
            f"median of {len(measured)}{of} nodes; lowest {low.value:.4g} on {low.scope}{low_pct}, "
            f"highest {high.value:.4g} on {high.scope}"
        )
    return Line(label, "fleet", median(values), measured[0].unit, median(pcts) if pcts else None, verdict, detail)


@dataclass(frozen=True)
class Headline:
    """The headline lines: per figure, the fleet (several nodes) or the one node; and per node and figure."""

    labels: list  # the figures in page order
    hosts: list  # the nodes in name order
    summary: list  # Line per figure: the fleet's line with several nodes, else the node's
    per_node: dict  # (host, label) -> Line
    node_verdicts: dict  # host -> the overall verdict of every check of the node, headline or not


def _by_part(rows, per_part: bool) -> list:
    """[(part name, rows)]: one group per device model when the figure is per part and the rows hold several
    models (a fleet of mixed GPUs), else [("", rows)]."""
    names = rows["device_name"].fillna("").astype(str)
    if not per_part or names.nunique() < 2:
        return [("", rows)]
    return [(name, rows[names == name]) for name in sorted(names.unique())]


def headline(checks, figures=HEADLINE_FIGURES) -> Headline:
    """The headline of a verdicts frame (N/A rows are ignored: not measured by design)."""
    checks = checks[checks["verdict"].ne(Verdict.NA)]
    hosts = sorted(h for h in checks["host"].dropna().astype(str).unique() if h != "*")
    labels, summary, per_node = [], [], {}
    for figure in figures:
        selected = {
            suffix: mask for suffix, mask in (figure.select(checks) if len(checks) else {}).items() if mask.any()
        }
        if not selected and figure.core:
            label = _label(figure, "", checks.iloc[0:0])
            labels.append(label)
            summary.append(
                Line(
                    label,
                    "fleet" if len(hosts) > 1 else (hosts[0] if hosts else ""),
                    None,
                    "",
                    None,
                    None,
                    "not measured in this run",
                )
            )
            continue
        for suffix, mask in selected.items():
            for part_name, rows in _by_part(checks[mask], figure.per_part):
                label = _label(figure, suffix, rows) + (f" on {part_name}" if part_name else "")
                labels.append(label)
                fleet_rows = _fleet_rows(checks, rows)
                nodes = node_lines(label, rows, fleet_rows)
                per_node.update({(host, label): line for host, line in nodes.items()})
                if len(hosts) > 1:
                    summary.append(fleet_line(label, list(nodes.values()), rows, fleet_rows, len(hosts)))
                else:
                    summary.append(next(iter(nodes.values())))
    return Headline(labels, hosts, summary, per_node, _verdicts_by_host(checks))
