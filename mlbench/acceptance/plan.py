"""The acceptance run's plan: profiles -> steps, each step one or more probe processes. No torch here.

A step runs its processes at the same time (one per GPU for mamf and membw, so the report sees the
slowest GPU and the spread inside the node: the silicon lottery), then the next step starts.
Each process is a probe's own CLI (`python -m mlbench.<probe> ...`) writing its own `.jsonl`, so
a failing probe cannot take the run down and an interrupted step can be re-run on `--resume`. Its
command line comes from the probe's options object (`to_argv`), the same class its CLI parses.

Profiles (times are estimates for one 8-GPU node; a CPU node takes seconds for `quick`):
- quick: ~2 minutes. MAMF's quick sweep, membw's quick sizes, collectives' quick sizes, storage for
  a few seconds per mode.
- standard: ~15 minutes. MAMF's default search then its best shape sustained for 60 s on every GPU
  at once, membw's default sweep, collectives up to a large payload with all ops, storage at the
  usual block sizes.
- every profile: a reference training step with weak scaling (quick: a few steps; standard: about a
  minute; full: the 8B-class preset under FSDP, across nodes in a cluster).
- full: hours. A 10-minute thermal soak before an exhaustive MAMF sweep whose best shape is then
  sustained for 10 minutes, the widest sweeps, longer storage tests, and a burn-in (30 minutes on
  GPUs; `--burn DURATION` sets its length, and adds it to any profile).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..burn.plan import BurnOptions, parse_duration
from ..collectives.plan import CollectivesOptions
from ..diskio.plan import DiskioOptions
from ..exitcodes import UsageError
from ..fabric.plan import FabricOptions, Rounds, cost
from ..mamf.plan import MamfOptions
from ..membw.plan import MembwOptions
from ..options import ProbeOptions
from ..train.plan import TrainOptions

PROBES = ("node", "mamf", "membw", "collectives", "diskio", "train", "fabric", "burn")
OPT_IN = ("burn",)  # run only when asked for: named in --only, or the full profile / --burn
DEFAULT_BURN = {"gpu": "30m", "cpu": "60s"}  # the full profile's burn-in
SUSTAIN_S = {"standard": 60.0, "full": 600.0}  # MAMF's best shape back to back on every GPU at once
PROFILES = ("quick", "standard", "full")


@dataclass(frozen=True)
class NodeLayout:
    """What the plan needs to know about this node (and the cluster, under torchrun)."""

    host: str
    device_type: str  # "cuda", "xpu", "mps" or "cpu"
    devices: int  # accelerators on this node (0 on a CPU node)
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def cluster(self) -> bool:
        return self.nodes > 1


@dataclass(frozen=True)
class Process:
    """One probe process: `python -m <module> <args>`, writing `out` (relative to the run directory)."""

    module: str
    args: tuple
    out: Optional[str]


@dataclass(frozen=True)
class Step:
    name: str
    processes: tuple
    estimate_s: float
    what: str
    node_local: bool = True  # False: one cluster-wide job (collectives)
    concurrent: bool = True  # False: the processes run one after another

    def outputs(self) -> list:
        """Record files this step writes, relative to the run directory."""
        return [p.out for p in self.processes if p.out]


@dataclass(frozen=True)
class AcceptancePlan:
    profile: str
    steps: tuple
    node: NodeLayout
    io_dir: str
    run_id: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "AcceptancePlan":
        doc = json.loads(text)
        steps = tuple(
            Step(
                s["name"],
                tuple(Process(p["module"], tuple(p["args"]), p["out"]) for p in s["processes"]),
                s["estimate_s"],
                s["what"],
                s.get("node_local", True),
                s.get("concurrent", True),
            )
            for s in doc["steps"]
        )
        return cls(doc["profile"], steps, NodeLayout(**doc["node"]), doc["io_dir"], doc["run_id"])

    def estimate_s(self) -> float:
        return sum(step.estimate_s for step in self.steps)

    def node_dir(self, run_dir) -> Path:
        """Where this node keeps plan.json, state.json and logs/: the run directory, or (in a cluster) its
        host's subdirectory."""
        return Path(run_dir) / self.node.host if self.node.cluster else Path(run_dir)


def select(only: Optional[str], skip: Optional[str], with_burn: bool = False) -> list:
    """The probes to run from --only / --skip (comma lists); bad names are a usage error. The burn-in
    runs when --only names it, or with `with_burn` (the full profile, --burn) unless --skip names it."""

    def names(text, flag):
        chosen = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in chosen if n not in PROBES]
        if bad or not chosen:
            raise UsageError(f"bad {flag} {text!r}: choose from {', '.join(PROBES)}")
        return chosen

    if only is not None and skip is not None:
        raise UsageError("give --only or --skip, not both")
    if only is not None:
        wanted = names(only, "--only")
        return [p for p in PROBES if p in wanted]
    skipped = names(skip, "--skip") if skip is not None else []
    return [p for p in PROBES if p not in skipped and (p not in OPT_IN or with_burn)]


def _device_name(node: NodeLayout, index: int) -> str:
    if node.device_type == "cpu":
        return "cpu"
    return f"{node.device_type}:{index}" if node.device_type in ("cuda", "xpu") else node.device_type


def _per_device(node: NodeLayout, module: str, probe: str, options: ProbeOptions) -> tuple:
    """One process per accelerator (cuda:i), or a single one on a CPU node; each its own records file."""
    prefix = f"{node.host}/" if node.cluster else ""
    if node.devices <= 1:
        outs = [(0, f"{prefix}{probe}.jsonl")]
    else:
        outs = [(i, f"{prefix}{probe}-gpu{i}.jsonl") for i in range(node.devices)]
    return tuple(
        Process(module, tuple(options.replace(device=_device_name(node, i), out=out).to_argv()), out) for i, out in outs
    )


def _across_nodes(node: NodeLayout, module: str, ranks_per_node: int, port_offset: int, options, out: str) -> Process:
    """One torchrun over every node of the cluster (c10d rendezvous on the head node, its own port per step)."""
    launcher = (
        "--nnodes", str(node.nodes), "--node-rank", str(node.node_rank), "--nproc-per-node", str(ranks_per_node),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{node.master_addr}:{node.master_port + port_offset}",
        "--rdzv-id", module.replace(".", "-"), "-m", module,
    )  # fmt: skip
    return Process("torch.distributed.run", (*launcher, *options.to_argv()), out)


def _collectives(node: NodeLayout, profile: str) -> Process:
    gpu = node.device_type == "cuda"
    ranks_per_node = max(1, node.devices) if gpu else (2 if not node.cluster else 1)
    all_ops = "all_reduce,all_gather,reduce_scatter,broadcast,all_to_all,sendrecv"
    # in a cluster each node names its own copy: whichever node hosts the job's rank 0 writes it
    out = f"{node.host}/collectives.jsonl" if node.cluster else "collectives.jsonl"
    options = {
        "quick": CollectivesOptions(quick=True),
        "standard": CollectivesOptions(sizes="8:4G" if gpu else "8:64M", ops=all_ops),
        "full": CollectivesOptions(sizes="8:8G" if gpu else "8:256M", ops=all_ops),
    }[profile].replace(timeout_s=300.0 if gpu else 120.0, out=out)
    if node.cluster:
        return _across_nodes(node, "mlbench.collectives", ranks_per_node, 1, options, out)
    return Process("mlbench.collectives", ("--nproc-per-node", str(ranks_per_node), *options.to_argv()), out)


def _fabric(node: NodeLayout, profile: str) -> Process:
    """The fabric across every node (one torchrun over the cluster): views, then the pair rounds
    (every pair once in the full profile)."""
    gpu = node.device_type == "cuda"
    options = {
        "quick": FabricOptions(quick=True),
        "standard": FabricOptions(),
        "full": FabricOptions(rounds=Rounds.FULL.value),
    }[profile].replace(timeout_s=300.0 if gpu else 120.0, out=f"{node.host}/fabric.jsonl")
    return _across_nodes(node, "mlbench.fabric", max(1, node.devices) if gpu else 1, 3, options, options.out)


def _train(node: NodeLayout, profile: str) -> Process:
    """The training step: quick steps, about a minute (standard), the 8B-class preset under FSDP (full)."""
    gpu = node.device_type == "cuda"
    ranks_per_node = max(1, node.devices) if gpu else (2 if not node.cluster else 1)
    out = f"{node.host}/train.jsonl" if node.cluster else "train.jsonl"
    options = {
        "quick": TrainOptions(quick=True, scaling=not gpu),  # GPUs: all of them at once only
        "standard": TrainOptions(duration_s=10.0),  # per scaling point: ~1 minute on 8 GPUs (1, 2, 4, 8)
        "full": TrainOptions(preset="8b" if gpu else None, parallel="fsdp", duration_s=60.0),
    }[profile].replace(device="auto" if gpu else "cpu", timeout_s=600.0 if gpu else 120.0, out=out)
    if node.cluster:
        return _across_nodes(node, "mlbench.train", ranks_per_node, 2, options, out)
    return Process("mlbench.train", ("--nproc-per-node", str(ranks_per_node), *options.to_argv()), out)


def _mamf(profile: str, gpu: bool) -> MamfOptions:
    if profile == "quick":
        return MamfOptions(quick=True)
    if profile == "standard":
        return MamfOptions(sustain_s=SUSTAIN_S[profile])
    # full: a thermal soak, then the whole grid, then its best shape sustained
    dims = "1K:20K:+1K" if gpu else "256:2048:+256"
    return MamfOptions(
        search=False, m=dims, n=dims, k=dims, warmup_s=600.0 if gpu else 60.0, sustain_s=SUSTAIN_S[profile]
    )


def _diskio(profile: str, io_dir: str, out: str) -> DiskioOptions:
    options = {
        "quick": DiskioOptions(quick=True),
        "standard": DiskioOptions(duration_s=10.0),
        "full": DiskioOptions(block_sizes="4K,64K,1M,16M", jobs="1,4,16", duration_s=60.0),
    }[profile]
    return options.replace(directory=io_dir, out=out)


def build(
    profile: str, node: NodeLayout, io_dir: str, run_id: str, probes: Sequence[str], burn: Optional[str] = None
) -> AcceptancePlan:
    """The steps of `profile` for `probes`; `burn` is the burn-in's duration (default DEFAULT_BURN)."""
    if profile not in PROFILES:
        raise UsageError(f"bad --profile {profile!r}: choose from {', '.join(PROFILES)}")
    gpu = node.device_type != "cpu"
    quick = profile == "quick"
    prefix = f"{node.host}/" if node.cluster else ""
    steps = []
    if "node" in probes:
        out = f"{prefix}node.jsonl"
        steps.append(
            Step(
                "node",
                (Process("mlbench.acceptance.nodecheck", ("--io-dir", io_dir, "--out", out), out),),
                2,
                "node sanity: cores, host memory and disk per GPU, GPU inventory",
            )
        )
    if "mamf" in probes:
        estimate = {"quick": 30 if gpu else 5, "standard": 240 if gpu else 60, "full": 6 * 3600 if gpu else 900}[
            profile
        ]
        estimate += SUSTAIN_S.get(profile, 0)
        steps.append(
            Step(
                "mamf",
                _per_device(node, "mlbench.mamf", "mamf", _mamf(profile, gpu)),
                estimate,
                "matmul TFLOPS (bf16)"
                + (", every GPU at once" if node.devices > 1 else f" on the {node.device_type}")
                + (f", best shape sustained {SUSTAIN_S[profile]:g} s" if profile in SUSTAIN_S else ""),
            )
        )
    if "membw" in probes:
        estimate = {"quick": 20 if gpu else 5, "standard": 90 if gpu else 40, "full": 300}[profile]
        if node.devices <= 1:
            steps.append(
                Step(
                    "membw",
                    _per_device(node, "mlbench.membw", "membw", MembwOptions(quick=quick)),
                    estimate,
                    "memory bandwidth: copy/read/write/triad" + (", host<->device" if gpu else ""),
                )
            )
        else:
            # device memory on every GPU at once (the spread inside the node); the links one GPU at a
            # time, since GPUs behind one PCIe switch or NVSwitch would share what they measure
            device_ops = MembwOptions(quick=quick, ops="copy,read,write,triad")
            steps.append(
                Step(
                    "membw",
                    _per_device(node, "mlbench.membw", "membw", device_ops),
                    estimate,
                    "device memory bandwidth: copy/read/write/triad, every GPU at once",
                )
            )
            links = _per_device(node, "mlbench.membw", "membw-links", MembwOptions(quick=quick, ops="h2d,d2h"))
            if node.device_type == "cuda":
                p2p = MembwOptions(
                    quick=quick, ops="p2p", device=f"{node.device_type}:0", out=f"{prefix}membw-p2p.jsonl"
                )
                links += (Process("mlbench.membw", tuple(p2p.to_argv()), p2p.out),)
            # p2p runs at its large size in every profile: about a quarter second a pair and direction
            pairs = node.devices * (node.devices - 1) * 2
            link_s = {"quick": 5 * node.devices + pairs // 4, "standard": 20 * node.devices + pairs // 2, "full": 600}[
                profile
            ]
            steps.append(
                Step(
                    "membw-links",
                    links,
                    link_s,
                    "host<->device per GPU, then the peer-to-peer matrix, one at a time",
                    concurrent=False,
                )
            )
    if "collectives" in probes:
        estimate = {"quick": 30 if gpu else 15, "standard": 300 if gpu else 90, "full": 1800}[profile]
        steps.append(
            Step(
                "collectives",
                (_collectives(node, profile),),
                estimate,
                "collectives across " + ("all nodes" if node.cluster else "the local ranks"),
                node_local=False,
            )
        )
    if "diskio" in probes:
        estimate = {"quick": 20, "standard": 240, "full": 1800}[profile]
        options = _diskio(profile, io_dir, f"{prefix}diskio.jsonl")
        steps.append(
            Step(
                "diskio",
                (Process("mlbench.diskio", tuple(options.to_argv()), options.out),),
                estimate,
                f"storage on {io_dir}: O_DIRECT sequential and random IO",
            )
        )
    if "fabric" in probes and node.cluster:  # more than one node: the network between them
        rounds = Rounds.FULL if profile == "full" else Rounds.QUICK
        estimate = cost(node.nodes, rounds).wall_s if gpu else 20 + 2 * cost(node.nodes, rounds).rounds
        steps.append(
            Step(
                "fabric",
                (_fabric(node, profile),),
                estimate,
                f"the network between the {node.nodes} nodes: inter, rail and intra views, "
                f"{'every pair' if rounds == Rounds.FULL else 'pair rounds'} naming a slow node or link",
                node_local=False,
            )
        )
    if "train" in probes:
        estimate = {"quick": 10 if gpu else 20, "standard": 90 if gpu else 40, "full": 900 if gpu else 200}[profile]
        steps.append(
            Step(
                "train",
                (_train(node, profile),),
                estimate,
                "reference training step, weak scaling from 1 device to "
                + ("all nodes (FSDP)" if node.cluster else "all local ones"),
                node_local=False,
            )
        )
    if "burn" in probes:
        duration = burn or DEFAULT_BURN["gpu" if gpu else "cpu"]
        options = BurnOptions(duration=duration, quick=quick)
        steps.append(
            Step(
                "burn",
                _per_device(node, "mlbench.burn", "burn", options),
                parse_duration(duration) + 30,
                f"burn-in for {duration}: matmuls compared bit for bit, memory patterns, error counters"
                + (", every GPU at once" if node.devices > 1 else f" on the {node.device_type}"),
            )
        )
    return AcceptancePlan(profile, tuple(steps), node, io_dir, run_id)


def describe(plan: AcceptancePlan) -> str:
    """The plan as a person reads it (`--dry-run`)."""
    node = plan.node
    where = f"{node.nodes} nodes (this is node {node.node_rank}, {node.host})" if node.cluster else node.host
    devices = f"{node.devices} x {node.device_type}" if node.devices else "CPU only"
    lines = [
        f"mlbench run --profile {plan.profile}: run {plan.run_id} on {where}, {devices}; "
        f"about {_minutes(plan.estimate_s())} in all"
    ]
    for number, step in enumerate(plan.steps, 1):
        lines.append(f"  {number}. {step.name:12s} ~{_minutes(step.estimate_s):>7s}  {step.what}")
        for process in step.processes:
            lines.append(f"       python -m {process.module} {' '.join(process.args)}")
    lines.append("  then: mlbench report on the run directory (verdicts, tables, plots)")
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
