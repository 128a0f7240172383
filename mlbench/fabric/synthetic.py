"""Synthetic fabric records: what `mlbench fabric` writes for a fleet of N nodes with chosen slow nodes and
links, without running it (the report's tests and benchmark). No torch here.

The pair rounds follow the probe's own schedule and decisions (`fabric.plan`): round 1 pairs the nodes
with the seed, round 2 re-pairs the suspects with nodes that passed, pairs that failed only together
are measured again. A pair touching a slow node or on a slow link runs at `slow_factor` of `pair_gbps`;
every figure is spread by +-`noise`. With `nic_descriptor`, each node also gets the `node` record of
its NICs (`check: nics`, as `mlbench.acceptance.nodecheck` writes it), `down` nodes with a port down.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

from ..records import make_record
from .plan import (
    PAIR_OP,
    PairResult,
    Rounds,
    Stage,
    after_round_one,
    disjoint_batches,
    judge,
    localise,
    pair_of,
    random_pairing,
    retest_pairings,
    round_robin,
)

DEVICE = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "index": 0}


@dataclass(frozen=True)
class FabricFleet:
    nodes: int
    slow_nodes: tuple = ()
    slow_links: tuple = ()  # pairs of node names
    rounds: Rounds = Rounds.QUICK
    seed: int = 1
    backend: str = "nccl"
    ranks_per_node: int = 8
    pair_gbps: float = 360.0
    inter_gbps: float = 350.0
    slow_factor: float = 0.3
    noise: float = 0.05
    threshold: float = 0.7
    pair_bytes: int = 1 << 30
    nic_descriptor: Optional[str] = "infiniband 8x400G mlx5_core"
    down: tuple = ()  # nodes with one fabric port down
    run_id: str = "synthetic-fabric"
    names: list = field(default_factory=list)

    def node_names(self) -> list:
        return self.names or [f"node{i:04d}" for i in range(self.nodes)]


def _record(fleet: FabricFleet, params: dict, metrics: dict, status: str = "ok", error=None, flags=()) -> dict:
    record = make_record(
        "fabric",
        fleet.run_id,
        DEVICE,
        params,
        metrics,
        status=status,
        error=error,
        world_size=fleet.nodes * fleet.ranks_per_node,
        flags=list(flags),
    )
    record["host"] = fleet.node_names()[0]
    return record


def _common(fleet: FabricFleet, view: str, nodes: list, ranks: int) -> dict:
    return {
        "view": view,
        "op": PAIR_OP,
        "bytes": fleet.pair_bytes,
        "nodes": nodes,
        "group_size": ranks,
        "dtype": "fp32",
        "backend": fleet.backend,
        "in_place": True,
        "fleet_nodes": fleet.nodes,
        "ranks_per_node": fleet.ranks_per_node,
        "intra_node_path": "shortcuts" if fleet.backend == "nccl" else "host",
        "threshold": fleet.threshold,
        "rounds": fleet.rounds.value,
        "seed": fleet.seed,
    }


def _metrics(gbps: float, s_bytes: int, ranks: int, slowest: str) -> dict:
    factor = 2 * (ranks - 1) / ranks
    time_us = s_bytes / (gbps / factor) / 1e3 if gbps > 0 else float("inf")
    return {
        "busbw_gbps": gbps,
        "algbw_gbps": gbps / factor,
        "time_us": time_us,
        "errors": 0,
        "slowest_rank": 0,
        "slowest_host": slowest,
    }


def records(fleet: FabricFleet) -> list:
    """Every record of the run: inter view, pair rounds (with the probe's decisions), NIC node records."""
    rng = random.Random(fleet.seed)
    names = fleet.node_names()
    slow_links = {pair_of(a, b) for a, b in fleet.slow_links}
    out = []
    for size in (1 << 20, 16 << 20, 256 << 20, fleet.pair_bytes):
        scale = min(1.0, size / fleet.pair_bytes * 8)
        ranks = fleet.nodes * fleet.ranks_per_node
        gbps = fleet.inter_gbps * scale * (fleet.slow_factor if fleet.slow_nodes else 1.0)
        slowest = fleet.slow_nodes[0] if fleet.slow_nodes else rng.choice(names)
        out.append(
            _record(
                fleet,
                {**_common(fleet, "inter", names, ranks), "bytes": size},
                _metrics(gbps * (1 + rng.uniform(-fleet.noise, fleet.noise)), size, ranks, slowest),
            )
        )
    results: list = []

    def measure(stage: Stage, number: int, batch: int, pairing) -> None:
        for a, b in pairing.pairs:
            slow = a in fleet.slow_nodes or b in fleet.slow_nodes or pair_of(a, b) in slow_links
            gbps = fleet.pair_gbps * (fleet.slow_factor if slow else 1.0) * (1 + rng.uniform(-fleet.noise, fleet.noise))
            results.append(PairResult(stage, number, a, b, gbps))
            ranks = 2 * fleet.ranks_per_node
            params = {
                **_common(fleet, "pair", [a, b], ranks),
                "node_a": a,
                "node_b": b,
                "stage": stage.value,
                "round": number,
                "batch": batch,
                "bye": pairing.bye,
            }
            out.append(
                _record(fleet, params, _metrics(gbps, fleet.pair_bytes, ranks, b if b in fleet.slow_nodes else a))
            )

    if fleet.rounds == Rounds.FULL:
        schedule = round_robin(names)
        for number, pairing in enumerate(schedule, 1):
            measure(Stage.ROBIN, number, 0, pairing)
        last = len(schedule)
    else:
        measure(Stage.FIRST, 1, 0, random_pairing(names, fleet.seed))
        state = after_round_one(judge(results, fleet.rounds, fleet.threshold)[1], names)
        for batch, pairing in enumerate(retest_pairings(state.suspects, state.passed, fleet.seed, state.untested)):
            measure(Stage.RETEST, 2, batch, pairing)
        last = 2
    candidates = localise(results, names, fleet.rounds, fleet.threshold).candidates
    for batch, pairing in enumerate(disjoint_batches(candidates)):
        measure(Stage.CONFIRM, last + 1, batch, pairing)
    found = localise(results, names, fleet.rounds, fleet.threshold)
    for node, why in sorted(found.nodes.items()):
        params = {**_common(fleet, "pair", [node], fleet.ranks_per_node), "finding": "node", "node": node}
        out.append(_record(fleet, params, {}, status="error", error=f"slow node {node}: {why}"))
    if fleet.nic_descriptor:
        out += nic_records(fleet)
    return out


def nic_records(fleet: FabricFleet) -> list:
    """The `node` record of each node's NICs (`check: nics`)."""
    kind, shape, driver = fleet.nic_descriptor.split(" ")
    count, rate = shape.rstrip("G").split("x")
    out = []
    for name in fleet.node_names():
        down = 1 if name in fleet.down else 0
        params = {
            "check": "nics",
            "fabric_kind": kind,
            "descriptor": fleet.nic_descriptor,
            "driver": driver,
            "down_ports": f"mlx5_{int(count) - 1}:1" if down else "",
            "nics": [],
        }
        metrics = {
            "nic_count": int(count),
            "nic_active": int(count) - down,
            "nic_down": down,
            "nic_rate_gbits": float(rate),
            "nic_total_gbits": (int(count) - down) * float(rate),
            "nic_total_gbps": (int(count) - down) * float(rate) / 8,
            "ports": int(count),
        }
        record = make_record("node", fleet.run_id, {"type": "node", "name": name, "index": None}, params, metrics)
        record["host"] = name
        out.append(record)
    return out


def write(fleet: FabricFleet, run_dir) -> None:
    """The run's records as the probe and the node check write them: fabric.jsonl and <node>/node.jsonl."""
    import json
    from pathlib import Path

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    all_records = records(fleet)
    with open(run_dir / "fabric.jsonl", "w", encoding="utf-8") as f:
        for r in all_records:
            if r["probe"] == "fabric":
                f.write(json.dumps(r) + "\n")
    nodes = [r for r in all_records if r["probe"] == "node"]
    if nodes:
        with open(run_dir / "node.jsonl", "w", encoding="utf-8") as f:
            for r in nodes:
                f.write(json.dumps(r) + "\n")
