"""`mlbench fabric` across 4 and 5 simulated nodes on this machine: gloo, one rank per node, each "node"
named by MLBENCH_HOST, with MLBENCH_FAULTS slowing a node or a link.

Each node is its own launch: a torchrun agent per node meeting at a c10d rendezvous (what a cluster
runs), or, to keep the CPU cost down on a 2-core machine, one rank per node started with the
variables a launcher sets (RANK, WORLD_SIZE, MASTER_ADDR/PORT, LOCAL_RANK, GROUP_RANK), as `srun`
does. Pairs of simulated nodes share two cores with each other, so their busbw varies by up to ~2x
between rounds: these runs set the floor at 35% of the median pair, and a slow node or link is 30 ms
slower per call (10-50x at these sizes).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from conftest import REPO, read_jsonl

from mlbench.fabric.plan import random_pairing
from mlbench.records import validate

pytestmark = pytest.mark.slow

ARGS = ("--quick", "--views", "pairs", "--sizes", "256K", "--threshold", "0.35", "--timeout", "60")
SLOW_MS = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, n: int, *args: str, faults: str = "", torchrun: bool = False, run_id: str = "fab") -> list:
    """Start n simulated nodes (node0..node<n-1>) running `mlbench.fabric args`; return their exit codes and
    rank 0's output (the node holding rank 0 writes the records)."""
    port = free_port()
    base = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
        GLOO_SOCKET_IFNAME="lo",
        MLBENCH_RUN_ID=run_id,
        MLBENCH_FAULTS=faults,
        MLBENCH_PROGRESS="0",
    )
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK"):
        base.pop(name, None)
    procs = []
    for i in range(n):
        env = dict(base, MLBENCH_HOST=f"node{i}")
        if torchrun:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                str(n),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                run_id,
                "--local-addr",
                "127.0.0.1",
                "-m",
                "mlbench.fabric",
                *args,
            ]
        else:
            env.update(
                RANK=str(i),
                WORLD_SIZE=str(n),
                LOCAL_RANK="0",
                LOCAL_WORLD_SIZE="1",
                GROUP_RANK=str(i),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
            cmd = [sys.executable, "-m", "mlbench.fabric", *args]
        procs.append(
            subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=150)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [p.returncode for p in procs], outputs


def findings(tmp_path, run_id: str) -> tuple:
    records = read_jsonl(tmp_path / "results" / run_id / "fabric.jsonl")
    assert records and all(validate(r) == [] for r in records)
    named = [r for r in records if r["params"].get("finding")]
    nodes = sorted(r["params"]["node"] for r in named if r["params"]["finding"] == "node")
    links = sorted("+".join(r["params"]["nodes"]) for r in named if r["params"]["finding"] == "link")
    return nodes, links, records


def test_four_healthy_nodes_under_torchrun_name_nothing_and_the_report_agrees(tmp_path):
    codes, outputs = launch(tmp_path, 4, *ARGS, "--views", "inter,pairs", "--seed", "5", torchrun=True, run_id="ok4")
    assert codes == [0, 0, 0, 0], "\n".join(o[-1500:] for o in outputs)
    nodes, links, records = findings(tmp_path, "ok4")
    assert nodes == [] and links == []
    pairs = [r for r in records if r["params"]["view"] == "pair" and r["status"] == "ok"]
    first = [r for r in pairs if r["params"]["stage"] == "first"]
    assert {r["params"]["seed"] for r in pairs} == {5}
    assert sorted(tuple(sorted((r["params"]["node_a"], r["params"]["node_b"]))) for r in first) == sorted(
        random_pairing([f"node{i}" for i in range(4)], 5).pairs
    )  # the recorded seed replays the pairing
    inter = [r for r in records if r["params"]["view"] == "inter"]
    assert inter and all(r["metrics"]["slowest_host"] in {f"node{i}" for i in range(4)} for r in inter)
    assert "nothing named" in "".join(outputs)
    report = subprocess.run(
        [sys.executable, "-m", "mlbench", "report", str(tmp_path / "results" / "ok4"), "-q", "--no-plots"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]


def test_five_healthy_nodes_name_nothing(tmp_path):
    codes, outputs = launch(tmp_path, 5, *ARGS, "--seed", "6", run_id="ok5")
    nodes, links, records = findings(tmp_path, "ok5")
    assert (nodes, links) == ([], []) and codes == [0] * 5, "\n".join(o[-1500:] for o in outputs)
    byes = {r["params"]["bye"] for r in records if r["params"].get("stage") == "first"}
    retested = {n for r in records if r["params"].get("stage") == "retest" for n in r["params"]["nodes"]}
    assert len(byes) == 1 and byes <= retested  # the node resting in round 1 is paired in round 2


@pytest.mark.parametrize("n, slow, seed", [(4, "node2", 1), (4, "node1", 2), (5, "node3", 3), (5, "node0", 4)])
def test_a_slow_node_is_named_alone(tmp_path, n, slow, seed):
    run_id = f"slow{n}-{seed}"
    codes, outputs = launch(
        tmp_path, n, *ARGS, "--seed", str(seed), faults=f"slow_node={slow}:ms={SLOW_MS}", run_id=run_id
    )
    nodes, links, _ = findings(tmp_path, run_id)
    assert (nodes, links) == ([slow], []), "\n".join(o[-1500:] for o in outputs)
    assert codes[0] == 1 and set(codes[1:]) == {0}  # rank 0 (node0) says it; the other ranks did their part
    assert f"NAMED node {slow}" in outputs[0]


def test_a_slow_link_is_named_and_neither_node_in_full_rounds(tmp_path):
    codes, outputs = launch(
        tmp_path, 5, *ARGS, "--rounds", "full", faults=f"slow_link=node1+node3:ms={SLOW_MS}", run_id="link5"
    )
    nodes, links, _ = findings(tmp_path, "link5")
    assert (nodes, links) == ([], ["node1+node3"]), "\n".join(o[-1500:] for o in outputs)
    assert codes[0] == 1


def test_a_slow_link_paired_in_round_one_is_named_in_quick_rounds(tmp_path):
    a, b = random_pairing([f"node{i}" for i in range(4)], 8).pairs[0]
    codes, outputs = launch(tmp_path, 4, *ARGS, "--seed", "8", faults=f"slow_link={a}+{b}:ms={SLOW_MS}", run_id="link4")
    nodes, links, _ = findings(tmp_path, "link4")
    assert (nodes, links) == ([], [f"{a}+{b}"]), "\n".join(o[-1500:] for o in outputs)
    assert codes[0] == 1


def test_mlbench_run_on_two_nodes_runs_the_fabric_step(tmp_path):
    run = tmp_path / "two"
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    env.pop("MLBENCH_FAULTS", None)
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "two_nodes_run.sh"),
            str(run),
            "--profile",
            "quick",
            "--device",
            "cpu",
            "--only",
            "node,fabric",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    logs = "".join(p.read_text() for p in tmp_path.glob("two.node*.log"))
    assert proc.returncode == 0, proc.stdout + logs[-3000:]
    (fabric,) = run.glob("*/fabric.jsonl")
    pairs = [r for r in read_jsonl(fabric) if r["params"]["view"] == "pair"]
    assert [sorted(r["params"]["nodes"]) for r in pairs] == [["simnode0", "simnode1"]]
    summary = (run / "summary.csv").read_text()
    for check in ("fabric.node", "fabric.nics", "fabric.inter.all_reduce"):
        assert check in summary
    assert (run / "plots" / "fabric.png").exists()


def test_outside_torchrun_one_node_is_skipped_with_reasons(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mlbench.fabric", "--quick", "--out", str(tmp_path / "f.jsonl")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO), MLBENCH_HOST="solo"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_jsonl(tmp_path / "f.jsonl")
    assert {r["params"]["view"] for r in records} == {"inter", "rail", "intra", "pair"}
    assert all(r["status"] == "skipped" and validate(r) == [] for r in records)
    assert "no network between nodes" in records[0]["error"] and "not under torchrun" in proc.stderr
