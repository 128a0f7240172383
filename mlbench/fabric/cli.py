"""`mlbench fabric` / `torchrun --nnodes N --nproc-per-node G -m mlbench.fabric`: the probe for the shared loop.

Options, views, pairings and their judgement: `plan.py`; groups and measuring: `probe.py`; the
process group and the watchdog are the collectives probe's (`mlbench.collectives.dist`). torch is
imported only when the probe starts. Rank 0 writes the records, says what the pair rounds named
and exits 1 when a node or link is named.
"""

from __future__ import annotations

import contextlib
import os
import secrets

from .. import harness
from ..exitcodes import UsageError
from ..sizes import format_bytes
from .plan import FabricOptions, View, make_plan


class Fabric(harness.Probe):
    """The network between nodes: inter, rail and intra views; pair rounds that name a slow node or link.

    One launch over the whole allocation: torchrun --nnodes N --nproc-per-node G -m mlbench.fabric
    (NCCL on GPUs, gloo on CPUs). busbw follows nccl-tests; a sample's time is the slowest rank's, and
    the slowest rank's node is recorded. The pair rounds pair the nodes at random (seeded, recorded),
    re-pair suspects with nodes that passed, and name a node that fails again or a pair that fails only
    together (exit 1). --rounds full measures every pair once instead.
    """

    name = "fabric"
    options = FabricOptions
    help = __doc__

    def validate(self, options: FabricOptions) -> None:
        """The plan's options and the --specs file, without torch (the device is resolved when the ranks start)."""
        make_plan("cpu", options)
        fabric_registry(options)

    def check_out(self, options: FabricOptions) -> None:
        from ..collectives.launch import under_torchrun

        if not under_torchrun():  # under torchrun rank 0 checks it in `start` and every rank learns the answer
            super().check_out(options)

    @contextlib.contextmanager
    def start(self, options: FabricOptions, stop):
        from ..collectives.cli import agree_on_run
        from ..collectives.dist import setup
        from ..collectives.launch import under_torchrun
        from ..records import hostname
        from .probe import FabricProbe, FabricWatchdog

        rank = os.environ.get("RANK", "0")
        watchdog = FabricWatchdog(options.timeout_s, f"rank {rank} on {hostname()}")
        if under_torchrun():
            watchdog.start()
        ctx = None
        try:
            watchdog.doing("process-group set-up")
            ctx = setup(options.device, options.backend, options.timeout_s)
            plan = make_plan(ctx.device.type, options)
            run_id = agree_on_run(ctx, options)
            watchdog.doing("node layout and NIC discovery")
            topo, nics_by_node = layout(ctx)
            seed = ctx.broadcast_object(plan.seed if plan.seed is not None else secrets.randbelow(2**31))
            from .plan import intra_node_path

            path = intra_node_path(ctx.backend, os.environ)
            expected_of, fabric_of = expectations(options, nics_by_node, topo, path, View.PAIR)
            probe = FabricProbe(ctx, topo, plan, seed, path, expected_of, watchdog.doing)
            results = _guarded(probe, watchdog, stop)
            yield harness.Run(
                ctx.device.info.record(),
                f"{len(topo.nodes)} node(s) x {topo.ranks_per_node or 'uneven'} rank(s), {ctx.backend_version}, "
                f"{ctx.device.info.name}; {plan.describe()}; seed {seed}",
                results,
                summary=lambda records, interrupted: summary_text(records, probe, fabric_of),
                progress_text=progress_text,
                notes=notes(ctx, topo, plan, path, fabric_of),
                noun="measurement(s)",
                rank=ctx.rank,
                world_size=ctx.world_size,
                writes=ctx.rank == 0,
                run_id=run_id,
            )
        finally:
            watchdog.doing("process-group teardown")
            try:
                if ctx is not None:
                    ctx.close()
            finally:
                watchdog.stop()


def fabric_registry(options: FabricOptions) -> list:
    from .. import specs

    try:
        return specs.load_fabric([options.specs] if options.specs else [])
    except specs.SpecsError as exc:
        raise UsageError(str(exc)) from None


def layout(ctx):
    """(Topology, {node: NIC summary params and metrics}) from every rank's host, torchrun node rank and,
    for the first rank of each node, its NICs."""
    import torch.distributed as dist

    from .. import nics
    from ..records import hostname
    from .plan import topology

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    found = None
    if local_rank == 0:
        try:
            params, metrics = nics.node_record()
            found = {
                "descriptor": params["descriptor"],
                "ports": metrics["nic_count"],
                "active": metrics["nic_active"],
                "rate_gbits": metrics["nic_rate_gbits"],
            }
        except Exception:  # noqa: BLE001 - no NIC facts is no reason to stop measuring the network
            found = None
    mine = (hostname(), os.environ.get("GROUP_RANK"), local_rank, found)
    everyone = [None] * ctx.world_size
    dist.all_gather_object(everyone, mine)
    topo = topology([(host, group) for host, group, _, _ in everyone])
    by_node = {}
    for rank, (_, _, _, summary) in enumerate(everyone):
        if summary is not None and topo.node_of_rank[rank] not in by_node:
            by_node[topo.node_of_rank[rank]] = summary
    return topo, by_node


def expectations(options: FabricOptions, nics_by_node: dict, topo, path, view):
    """(node -> expected pair busbw GB/s or None, node -> NodeFabric) from the NICs found and the registry."""
    from collections import Counter

    from .plan import nic_share, node_fabric

    registry = fabric_registry(options)
    ports = Counter(s["ports"] for s in nics_by_node.values() if s.get("ports"))
    fleet_ports = ports.most_common(1)[0][0] if ports else None
    fabric = {
        node: node_fabric(s["descriptor"], fleet_ports, registry, s.get("rate_gbits"))
        for node, s in nics_by_node.items()
    }
    share = nic_share(view, path, topo.ranks_per_node)

    def expected_of(node: str):
        f = fabric.get(node)
        return f.expected_gbps * share if f is not None and f.expected_gbps and share else None

    return expected_of, fabric


def _guarded(probe, watchdog, stop):
    """The probe's results; a collective that fails because a peer died ends this rank with one line."""
    from ..collectives.dist import guard_peers

    return guard_peers(probe.results(), probe.ctx, watchdog, stop)


def notes(ctx, topo, plan, path, fabric_of) -> list:
    lines = []
    if ctx.single_process:
        lines.append(
            "not under torchrun: one node, one rank; run `torchrun --nnodes N --nproc-per-node G "
            "-m mlbench.fabric` over the allocation"
        )
    if ctx.backend == "nccl" and View.INTER in plan.views:
        lines.append(
            "inter view with the nodes' own links "
            + (
                "disabled (NCCL_P2P_DISABLE=1, NCCL_SHM_DISABLE=1): the network alone"
                if path.value == "network"
                else "in use (NVLink/shared memory inside a node); for the network alone run with NCCL_P2P_DISABLE=1 "
                "NCCL_SHM_DISABLE=1 and --views inter,rail,pairs (NCCL reads them once per process)"
            )
        )
    known = sorted({f"{f.spec_name} ({f.node_gbps:g} GB/s per node)" for f in fabric_of.values() if f.node_gbps})
    if known and ctx.backend == "nccl":
        lines.append(f"fabric: {'; '.join(known)}")
    elif fabric_of:
        descriptors = sorted({f.descriptor for f in fabric_of.values()})
        lines.append(
            f"NICs: {'; '.join(descriptors[:3])}"
            + (
                " (no NIC floor over gloo)"
                if ctx.backend != "nccl"
                else " (not in the fabric registry: relative floor only)"
            )
        )
    return lines


def progress_text(record: dict) -> str:
    p = record["params"]
    if record["status"] != "ok":
        return f"{p.get('view')}: {record['status']}"
    where = (
        p.get("node")
        or (f"rail {p['rail']}" if "rail" in p else "")
        or (f"{p.get('node_a')}+{p.get('node_b')}" if "node_a" in p else "all nodes")
    )
    return f"{p['view']} {p['op']} {format_bytes(p['bytes'])} {where}: {record['metrics']['busbw_gbps']:.3g} GB/s"


def summary_text(records: list, probe, fabric_of: dict) -> str:
    """Per view the peak busbw (and the slowest group), then what the pair rounds named."""
    from ..stats import median

    ok = [r for r in records if r["status"] == "ok"]
    lines = []
    for view in (View.INTER, View.RAIL, View.INTRA):
        mine = [r for r in ok if r["params"]["view"] == view.value]
        for op in sorted({r["params"]["op"] for r in mine}):
            best: dict = {}
            for r in mine:
                if r["params"]["op"] != op:
                    continue
                key = r["params"].get("rail", r["params"].get("node", "all"))
                if (
                    r["metrics"]["busbw_gbps"]
                    >= best.get(key, {"metrics": {"busbw_gbps": -1}})["metrics"]["busbw_gbps"]
                ):
                    best[key] = r
            values = sorted(best.values(), key=lambda r: r["metrics"]["busbw_gbps"])
            low = values[0]
            label = {View.INTER: "", View.RAIL: "rail ", View.INTRA: ""}[view]
            lines.append(
                f"{view.value:5s} {op:10s} peak busbw {median([r['metrics']['busbw_gbps'] for r in values]):.4g}"
                f" GB/s (median of {len(values)}); lowest {low['metrics']['busbw_gbps']:.4g} GB/s at "
                f"{label}{low['params'].get('rail', low['params'].get('node', 'all nodes'))}, "
                f"slowest rank on {low['metrics']['slowest_host']}"
            )
    pairs = [r for r in ok if r["params"]["view"] == View.PAIR.value]
    if pairs and probe.findings is not None:
        first = [r for r in pairs if r["params"]["round"] == 1]
        gbps = [r["metrics"]["busbw_gbps"] for r in pairs]
        rounds = probe.plan.rounds.value
        lines.append(
            f"pairs {rounds}: {len(pairs)} pair test(s) ({len(first)} in round 1, seed {probe.seed}), "
            f"busbw {min(gbps):.4g}..{max(gbps):.4g} GB/s, median pair {probe.findings.reference_gbps:.4g}, "
            f"floor {probe.plan.threshold:.0%} of it"
        )
    findings = probe.findings
    if findings is not None:
        for node, why in sorted(findings.nodes.items()):
            lines.append(f"NAMED node {node}: {why}")
        for (a, b), why in sorted(findings.links.items()):
            lines.append(f"NAMED link {a}+{b}: {why}")
        for node, why in sorted(findings.suspects.items()):
            lines.append(f"suspect {node}: {why}")
        if not findings.named:
            lines.append("nothing named: every node and link within the floor")
    return "\n".join(lines)


command = harness.command(Fabric)
