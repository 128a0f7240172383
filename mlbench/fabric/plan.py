"""Fabric plans: the options, the views, the node layout, the pair rounds and their judgement. No torch here.

Views (each a record set, `params.view`):
- `inter`: all_reduce and all_gather over every rank of every node: the network as a job sees it;
- `rail`: rank i of every node in one group (rail i), all rails at once: one busbw per rail;
- `intra`: each node alone, all its ranks (NVLink/XGMI), all nodes at once;
- `pair`: localisation. Round 1 pairs the nodes at random (seeded, recorded) and every pair runs a
  2-node all_reduce at the same time; a pair below the floor makes both nodes suspects. Round 2
  pairs each suspect (and the node left out when the count is odd) with a node that passed; a node
  that fails again is named, a pair whose nodes both pass with others is a named link.
  `--rounds full` runs every pair once instead (round-robin: N-1 rounds of N/2 pairs, N rounds
  with one node resting when N is odd); there a node failing most of its pairs is named, and a
  failed pair of two unnamed nodes is a named link. A pair about to be named a link is measured
  once more first (`confirm`): named when it fails again, reported as transient when it passes.

The floor of a pair is relative (`threshold` x the fleet's median pair busbw: round 1's pairs in
quick mode, every pair in full mode; the median holds while fewer than half the pairs are slow) and,
where the NICs of both nodes are known and the traffic goes through them (NCCL), absolute
(`threshold` x the expected busbw: the node's advertised NIC bandwidth x the normal efficiency).

Everything here is a pure function of its inputs, so the probe (rank 0) and the reporter make the
same decisions from the same measurements.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable, Iterable, Optional, Sequence

from ..collectives.plan import DTYPES, parse_dtype  # noqa: F401 - DTYPES re-exported for the probe
from ..exitcodes import UsageError
from ..options import ProbeOptions, option
from ..sizes import SizeError, format_bytes, parse_sizes
from ..stats import median


class View(StrEnum):
    """A record set of the fabric probe (`params.view`)."""

    INTER = "inter"
    RAIL = "rail"
    INTRA = "intra"
    PAIR = "pair"


class Rounds(StrEnum):
    """How the pairs are chosen: a random round and a re-test round, or every pair once."""

    QUICK = "quick"
    FULL = "full"


class Finding(StrEnum):
    """What the pair rounds name."""

    NODE = "node"
    LINK = "link"


VIEW_WORDS = {"inter": View.INTER, "rail": View.RAIL, "intra": View.INTRA, "pairs": View.PAIR, "pair": View.PAIR}
DEFAULT_VIEWS = (View.INTER, View.RAIL, View.INTRA, View.PAIR)
VIEW_OPS = ("all_reduce", "all_gather")  # inter, rail and intra
PAIR_OP = "all_reduce"  # the pair rounds: one op at the largest size
DEFAULT_THRESHOLD = 0.7
DEFAULT_EXPECTED_EFF = 0.8  # what a healthy fabric reaches of its advertised NIC bandwidth


@dataclass(frozen=True)
class FabricOptions(ProbeOptions):
    views: Optional[str] = option(
        "--views", metavar="VIEWS", help="Comma list of inter,rail,intra,pairs [default: all four]."
    )
    rounds: str = option(
        "--rounds",
        default="quick",
        type=("quick", "full"),
        show_default=True,
        help="Pair rounds: quick (random pairs, then suspects re-paired with good nodes) or full (every pair once).",
    )
    sizes: Optional[str] = option(
        "--sizes",
        metavar="SIZES",
        help="Payload sizes S of the inter/rail/intra views; the pairs use the largest "
        "[default: 1M,16M,256M,1G on GPUs, 64K,1M,16M on the CPU, 64K,256K with --quick].",
    )
    dtype: str = option("--dtype", default="fp32", show_default=True, help="fp32, bf16 or fp16.")
    timeout_s: float = option(
        "--timeout",
        default=300.0,
        type=float,
        show_default=True,
        help="Seconds without progress after which every surviving rank gives up (exit 3).",
    )
    seed: Optional[int] = option(
        "--seed", type=int, help="Seed of the round-1 pairing [default: drawn by rank 0 and recorded]."
    )
    threshold: float = option(
        "--threshold",
        default=DEFAULT_THRESHOLD,
        type=float,
        show_default=True,
        help="A pair fails below this fraction of the fleet's median pair busbw (and of the expected busbw "
        "where the NICs are known).",
    )
    specs: Optional[str] = option(
        "--specs", metavar="FILE", help="CSV of extra or overriding fabric rows (by key) for the absolute floor."
    )
    backend: str = option(
        "--backend", default="auto", show_default=True, help="auto (NCCL/RCCL on GPUs, gloo on the CPU), nccl, gloo."
    )


def parse_views(text: Optional[str]) -> tuple:
    if text is None:
        return DEFAULT_VIEWS
    words = [w.strip().lower() for w in text.split(",")]
    unknown = [w for w in words if w not in VIEW_WORDS]
    if not any(words) or unknown:
        raise UsageError(f"bad --views {text!r}: expected a comma list of inter,rail,intra,pairs")
    chosen = {VIEW_WORDS[w] for w in words}
    return tuple(v for v in DEFAULT_VIEWS if v in chosen)


def default_sizes(device_type: str, quick: bool) -> list:
    if quick:
        return parse_sizes("64K,256K")
    if device_type == "cpu":
        return parse_sizes("64K,1M,16M")
    return parse_sizes("1M,16M,256M,1G")


@dataclass(frozen=True)
class FabricPlan:
    views: tuple
    sizes: tuple  # the inter/rail/intra sweep
    dtype: object  # collectives.plan.DType
    rounds: Rounds
    threshold: float
    timeout_s: float
    seed: Optional[int]
    quick: bool

    @property
    def pair_bytes(self) -> int:
        return max(self.sizes)

    def describe(self) -> str:
        sizes = ",".join(format_bytes(s) for s in self.sizes)
        return (
            f"views {','.join(self.views)}; {self.dtype.name} {sizes}; pairs {PAIR_OP} "
            f"{format_bytes(self.pair_bytes)}, rounds {self.rounds}, floor {self.threshold:g} x the median pair; "
            f"timeout {self.timeout_s:g}s"
        )


def make_plan(device_type: str, options: FabricOptions) -> FabricPlan:
    """Validate the options and build the plan; every bad input is a UsageError (exit 2)."""
    o = options
    views = parse_views(o.views)
    dtype = parse_dtype(o.dtype)
    if o.rounds not in tuple(Rounds):
        raise UsageError(f"bad --rounds {o.rounds!r}: choose quick or full")
    if o.backend not in ("auto", "nccl", "gloo"):
        raise UsageError(f"bad --backend {o.backend!r}: choose auto, nccl or gloo")
    if not o.timeout_s or o.timeout_s < 1 or not math.isfinite(o.timeout_s):
        raise UsageError(f"--timeout must be at least 1 second, got {o.timeout_s}")
    if not 0 < o.threshold < 1:
        raise UsageError(f"--threshold must be a fraction between 0 and 1, got {o.threshold}")
    if o.seed is not None and o.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {o.seed}")
    if o.sizes is None:
        sizes = default_sizes(device_type, o.quick)
    else:
        try:
            sizes = parse_sizes(o.sizes)
        except SizeError as exc:
            raise UsageError(f"bad --sizes {o.sizes!r}: {exc}") from None
    if min(sizes) < 16:
        raise UsageError(f"--sizes: {format_bytes(min(sizes))} is below 16 B, too small to split between ranks")
    return FabricPlan(
        views, tuple(sizes), dtype, Rounds(o.rounds), float(o.threshold), float(o.timeout_s), o.seed, o.quick
    )


# --- the node layout ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """Which rank runs on which node. Nodes are named by `MLBENCH_HOST` or the host name; two launches
    on one host (torchrun's node rank differs) become `host#0`, `host#1`."""

    node_of_rank: tuple  # node name per global rank

    @property
    def nodes(self) -> tuple:
        """Node names in the order of their first rank."""
        return tuple(dict.fromkeys(self.node_of_rank))

    def ranks_of(self, node: str) -> list:
        return [r for r, n in enumerate(self.node_of_rank) if n == node]

    def local_index(self, rank: int) -> int:
        node = self.node_of_rank[rank]
        return self.ranks_of(node).index(rank)

    @property
    def ranks_per_node(self) -> Optional[int]:
        """The ranks of every node, when all nodes have the same number; else None."""
        counts = {len(self.ranks_of(n)) for n in self.nodes}
        return counts.pop() if len(counts) == 1 else None

    def rails(self) -> list:
        """Rank lists of rail i (the i-th rank of every node), for i below the smallest node's rank count."""
        per_node = [self.ranks_of(n) for n in self.nodes]
        return [[ranks[i] for ranks in per_node] for i in range(min(len(r) for r in per_node))]

    def node_groups(self) -> list:
        return [self.ranks_of(n) for n in self.nodes]

    def pair_ranks(self, a: str, b: str) -> list:
        return sorted(self.ranks_of(a) + self.ranks_of(b))


def topology(keys: Sequence[tuple]) -> Topology:
    """The layout from every rank's (host, torchrun node rank or None), in rank order."""
    groups: dict = {}
    for host, group in keys:
        groups.setdefault(host, [])
        if group not in groups[host]:
            groups[host].append(group)
    names = [f"{host}#{group}" if len(groups[host]) > 1 else str(host) for host, group in keys]
    return Topology(tuple(names))


# --- pairings ------------------------------------------------------------------------------------

Pair = tuple  # (node a, node b), a < b


def pair_of(a: str, b: str) -> Pair:
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class Pairing:
    """One round: pairs that run at the same time, and the node that rests (odd counts)."""

    pairs: tuple
    bye: Optional[str] = None


def random_pairing(nodes: Sequence[str], seed: int) -> Pairing:
    """Round 1: the nodes shuffled with `seed` and paired in order; an odd one out rests."""
    order = sorted(nodes)
    random.Random(seed).shuffle(order)
    pairs = tuple(pair_of(order[i], order[i + 1]) for i in range(0, len(order) - 1, 2))
    return Pairing(pairs, order[-1] if len(order) % 2 else None)


def round_robin(nodes: Sequence[str]) -> list:
    """Every pair exactly once (the circle method): N-1 rounds of N/2 pairs; with N odd, N rounds of
    (N-1)/2 pairs and one node resting in each."""
    order = sorted(nodes)
    rest = None
    if len(order) % 2:
        rest = object()
        order.append(rest)
    n = len(order)
    rounds = []
    for _ in range(n - 1):
        pairs, bye = [], None
        for i in range(n // 2):
            a, b = order[i], order[n - 1 - i]
            if a is rest or b is rest:
                bye = b if a is rest else a
            else:
                pairs.append(pair_of(a, b))
        rounds.append(Pairing(tuple(pairs), bye))
        order = [order[0], order[-1]] + order[1:-1]  # rotate all but the first
    return rounds


def retest_pairings(suspects: Sequence[str], passed: Sequence[str], seed: int, untested: Sequence[str] = ()) -> list:
    """Round 2: each suspect (and each node that rested in round 1) with a node of `passed`, each passed
    node once per batch; as many batches (run one after another) as needed when they outnumber the
    passed nodes. A node that rested has no failure yet, so it gets a second, different partner when
    there is one: like a suspect, it is named only on a second failure."""
    if not (suspects or untested) or not passed:
        return []
    helpers = sorted(passed)
    random.Random(seed + 1).shuffle(helpers)

    def batches(nodes: list, shift: int) -> list:
        turn = shift % len(helpers)
        partners = helpers[turn:] + helpers[:turn]
        return [
            Pairing(tuple(pair_of(s, h) for s, h in zip(nodes[start : start + len(partners)], partners)))
            for start in range(0, len(nodes), len(partners))
        ]

    first = sorted(suspects) + sorted(untested)
    out = batches(first, 0)
    if untested and len(helpers) > 1:
        # node i of `untested` met helpers[(len(suspects) + i) % L] above: one step further is another
        out += batches(sorted(untested), len(suspects) + 1)
    return out


# --- judging pairs -------------------------------------------------------------------------------


class Stage(StrEnum):
    """Why a pair was measured (`params.stage`)."""

    FIRST = "first"  # quick round 1: random pairs
    RETEST = "retest"  # quick round 2: a suspect (or the resting node) with a node that passed
    ROBIN = "robin"  # full: every pair once
    CONFIRM = "confirm"  # a pair that failed only together, measured again before it is named


@dataclass(frozen=True)
class PairResult:
    """One 2-node measurement: its stage and round number, nodes and busbw (NaN: it failed)."""

    stage: Stage
    round: int
    a: str
    b: str
    busbw_gbps: float

    @property
    def pair(self) -> Pair:
        return pair_of(self.a, self.b)


def reference_stage(rounds: Rounds) -> Stage:
    return Stage.ROBIN if rounds == Rounds.FULL else Stage.FIRST


def reference_gbps(results: Iterable[PairResult], rounds: Rounds) -> float:
    """The fleet's median pair busbw: round 1's pairs (quick) or every pair (full); NaN without any."""
    stage = reference_stage(rounds)
    values = [r.busbw_gbps for r in results if r.stage == stage and math.isfinite(r.busbw_gbps)]
    return median(values) if values else math.nan


@dataclass(frozen=True)
class Floor:
    """Below `gbps` a pair fails; `why` says which floor it is."""

    gbps: float
    why: str


def pair_floor(
    a: str,
    b: str,
    reference: float,
    threshold: float,
    expected_of: Callable[[str], Optional[float]] = lambda node: None,
) -> Floor:
    """The higher of the relative floor (threshold x the fleet median) and, where both nodes' expected
    busbw is known, the absolute one (threshold x the lower of the two)."""
    relative = Floor(
        threshold * reference if math.isfinite(reference) else 0.0,
        f"{threshold:.0%} of the fleet's median pair {reference:.4g} GB/s",
    )
    expected = [expected_of(a), expected_of(b)]
    if all(e for e in expected):
        absolute = Floor(
            threshold * min(expected),
            f"{threshold:.0%} of the expected {min(expected):.4g} GB/s (NIC spec x normal efficiency)",
        )
        if absolute.gbps > relative.gbps:
            return absolute
    return relative


@dataclass(frozen=True)
class Judged:
    result: PairResult
    floor: Floor
    failed: bool


def judge(
    results: Sequence[PairResult],
    rounds: Rounds,
    threshold: float,
    expected_of: Callable[[str], Optional[float]] = lambda node: None,
) -> tuple:
    """(reference GB/s, [Judged]) for every result."""
    reference = reference_gbps(results, rounds)
    judged = []
    for r in results:
        floor = pair_floor(r.a, r.b, reference, threshold, expected_of)
        judged.append(Judged(r, floor, not math.isfinite(r.busbw_gbps) or r.busbw_gbps < floor.gbps))
    return reference, judged


@dataclass(frozen=True)
class Round1:
    """What round 1 leaves for round 2: nodes to re-test (suspects, and the resting node) and good partners."""

    suspects: tuple
    untested: tuple
    passed: tuple


def after_round_one(judged: Sequence[Judged], nodes: Sequence[str]) -> Round1:
    first = [j for j in judged if j.result.stage == Stage.FIRST]
    suspects = sorted({n for j in first if j.failed for n in j.result.pair})
    passed = sorted({n for j in first if not j.failed for n in j.result.pair} - set(suspects))
    untested = sorted(set(nodes) - set(suspects) - set(passed))
    return Round1(tuple(suspects), tuple(untested), tuple(passed))


@dataclass(frozen=True)
class Findings:
    """Named nodes and links with the reason in words; what stays unproven.

    `candidates`: pairs that failed only together and still wait for their confirmation (named as
    links when it never comes); `transient`: such pairs that passed when measured again (not named).
    """

    nodes: dict = field(default_factory=dict)  # node -> why
    links: dict = field(default_factory=dict)  # pair -> why
    suspects: dict = field(default_factory=dict)  # node -> why (failed once, never re-tested)
    transient: dict = field(default_factory=dict)  # pair -> why
    candidates: tuple = ()  # pairs to confirm
    reference_gbps: float = math.nan

    @property
    def named(self) -> bool:
        return bool(self.nodes or self.links)


def _words(j: Judged) -> str:
    return f"{j.result.a}+{j.result.b} {j.result.busbw_gbps:.4g} GB/s ({j.result.stage} round {j.result.round})"


def _worst(judged: list) -> Judged:
    return min(judged, key=lambda j: j.result.busbw_gbps if math.isfinite(j.result.busbw_gbps) else -1)


def localise(
    results: Sequence[PairResult],
    nodes: Sequence[str],
    rounds: Rounds,
    threshold: float,
    expected_of: Callable[[str], Optional[float]] = lambda node: None,
) -> Findings:
    """Name the slow nodes and links from the pair results (see the module docstring)."""
    reference, judged = judge(results, rounds, threshold, expected_of)
    if rounds == Rounds.FULL:
        named, suspects, failed_alone = _nodes_full(judged)
    else:
        named, suspects, failed_alone = _nodes_quick(judged, nodes)
    confirms: dict = {}
    for j in judged:
        if j.result.stage == Stage.CONFIRM:
            confirms.setdefault(j.result.pair, []).append(j)
    links, transient, candidates = {}, {}, []
    for j in failed_alone:
        again = confirms.get(j.result.pair)
        first = f"slow only together: {_words(j)} < {j.floor.gbps:.4g} GB/s ({j.floor.why})"
        if again is None:
            candidates.append(j.result.pair)
            links[j.result.pair] = f"{first}; not measured again"
        elif any(c.failed for c in again):
            links[j.result.pair] = f"{first}; again {_worst(again).result.busbw_gbps:.4g} GB/s when measured again"
        else:
            transient[j.result.pair] = (
                f"{first}; passed when measured again ({_worst(again).result.busbw_gbps:.4g} GB/s)"
            )
    return Findings(named, links, suspects, transient, tuple(candidates), reference)


def _nodes_quick(judged: list, nodes: Sequence[str]) -> tuple:
    """(named nodes, suspects, round-1 failures whose nodes both passed their re-tests)."""
    first = after_round_one(judged, nodes)
    retests: dict = {}
    for j in judged:
        if j.result.stage == Stage.RETEST:
            for node in j.result.pair:
                if node in first.suspects or node in first.untested:
                    retests.setdefault(node, []).append(j)
    named, suspects = {}, {}
    for node in first.suspects + first.untested:
        tests = retests.get(node, [])
        failed = [j for j in tests if j.failed]
        if node in first.untested and failed and len(failed) < len(tests):
            suspects[node] = f"rested in round 1, then failed once and passed once in round 2 ({_words(failed[0])})"
            continue
        if failed:
            worst = _worst(failed)
            again = "fails again" if node in first.suspects else "fails"
            named[node] = (
                f"{again} with a node that passed: {_words(worst)} < {worst.floor.gbps:.4g} GB/s ({worst.floor.why})"
            )
        elif not tests and node in first.suspects:
            first_fail = next(j for j in judged if j.result.stage == Stage.FIRST and j.failed and node in j.result.pair)
            if first.passed:
                suspects[node] = f"failed in round 1 ({_words(first_fail)}), not re-tested"
            else:
                named[node] = (
                    f"failed in round 1 ({_words(first_fail)}) and no pair passed to compare with: "
                    f"below {first_fail.floor.gbps:.4g} GB/s ({first_fail.floor.why})"
                )
    alone = [
        j
        for j in judged
        if j.result.stage == Stage.FIRST
        and j.failed
        and all(n not in named and n not in suspects and retests.get(n) for n in j.result.pair)
    ]
    return named, suspects, alone


def _nodes_full(judged: list) -> tuple:
    """(named nodes: most of their pairs fail, {}, failed pairs of two unnamed nodes)."""
    per_node: dict = {}
    robin = [j for j in judged if j.result.stage == Stage.ROBIN]
    for j in robin:
        for node in j.result.pair:
            per_node.setdefault(node, []).append(j)
    named = {}
    for node, tests in sorted(per_node.items()):
        failed = [j for j in tests if j.failed]
        if len(failed) * 2 > len(tests):
            worst = _worst(failed)
            named[node] = (
                f"{len(failed)} of its {len(tests)} pairs below the floor; worst {_words(worst)} "
                f"< {worst.floor.gbps:.4g} GB/s ({worst.floor.why})"
            )
    alone = [j for j in robin if j.failed and not set(j.result.pair) & set(named)]
    return named, {}, alone


def disjoint_batches(pairs: Sequence[Pair]) -> list:
    """Pairings whose pairs share no node (greedy, in order): what can be measured at the same time."""
    batches: list = []
    for pair in pairs:
        for batch in batches:
            if not set(pair) & {n for p in batch for n in p}:
                batch.append(pair)
                break
        else:
            batches.append([pair])
    return [Pairing(tuple(batch)) for batch in batches]


# --- what it costs: rounds, parallel pairs and wall time ----------------------------------------

ROUND_SETUP_S = 2.0  # per round: communicators of the round's groups (one split) and their first connections
PAIR_MEASURE_S = 0.5  # one pair at the default GPU size (1 GiB all_reduce: warm-up, 10 samples, check)
VIEWS_S = 30.0  # inter, rail and intra at the default sizes, at any node count (bandwidth-bound)


@dataclass(frozen=True)
class Cost:
    rounds: int  # rounds run one after another
    parallel_pairs: int  # pairs measured at the same time in one round
    pair_tests: int  # pairs measured in all
    wall_s: float


def round_s() -> float:
    return ROUND_SETUP_S + PAIR_MEASURE_S


def cost(nodes: int, rounds: Rounds, suspects: int = 2) -> Cost:
    """The pair rounds at `nodes` nodes: quick (round 1, then `suspects` re-tested in one batch while
    they are fewer than the passed nodes) or full (round-robin), views included."""
    if rounds == Rounds.FULL:
        r = nodes - 1 if nodes % 2 == 0 else nodes
        return Cost(r, nodes // 2, nodes * (nodes - 1) // 2, VIEWS_S + r * round_s())
    retest = min(suspects, nodes)
    batches = 1 if retest else 0
    return Cost(1 + batches, nodes // 2, nodes // 2 + retest, VIEWS_S + (1 + batches) * round_s())


def exhaustive_sequential(nodes: int) -> Cost:
    """Every pair, one at a time (a 2-node nccl-tests run per pair)."""
    tests = nodes * (nodes - 1) // 2
    return Cost(tests, 1, tests, tests * round_s())


def bisection(nodes: int, slow_nodes: int = 1) -> Cost:
    """Halving: a collective over each half at once, recurse into the slow half; log2(N) rounds per slow
    node, each round's collective spanning N/2^k nodes; names nodes, never a link."""
    depth = max(1, math.ceil(math.log2(max(2, nodes))))
    r = depth * max(1, slow_nodes)
    return Cost(r, 2, 2 * r, r * round_s())


# --- what a node's NICs should carry (the fabric registry, `mlbench.specs.load_fabric`) -------------


class IntraPath(StrEnum):
    """How ranks of one node reach each other in a view: their own links (NVLink, shared memory), or
    only the network (NCCL with P2P and SHM disabled), or a host transport (gloo: no NIC spec applies)."""

    SHORTCUTS = "shortcuts"
    NETWORK = "network"
    HOST = "host"


def intra_node_path(backend: str, environ) -> IntraPath:
    if backend != "nccl":
        return IntraPath.HOST
    if environ.get("NCCL_P2P_DISABLE") == "1" and environ.get("NCCL_SHM_DISABLE") == "1":
        return IntraPath.NETWORK
    return IntraPath.SHORTCUTS


@dataclass(frozen=True)
class NodeFabric:
    """A node's fabric as the registry sees it: the row matched by its NIC descriptor and the per-node
    GB/s (per direction) it was bought with."""

    descriptor: str
    spec_key: Optional[str]
    spec_name: Optional[str]
    node_gbps: Optional[float]
    expected_eff: float

    @property
    def expected_gbps(self) -> Optional[float]:
        return self.node_gbps * self.expected_eff if self.node_gbps else None


def node_fabric(
    descriptor: str,
    fleet_ports: Optional[int],
    registry: list,
    port_gbits: Optional[float] = None,
    expected_eff: Optional[float] = None,
) -> NodeFabric:
    """The registry row of `descriptor` and the node's advertised GB/s: the row's `node_gbps`, else the
    fleet's usual port count x the port rate (the row's, else the one found) / 8."""
    from ..specs import lookup_fabric

    spec = lookup_fabric(descriptor, registry)
    if spec is None:
        return NodeFabric(descriptor, None, None, None, expected_eff or DEFAULT_EXPECTED_EFF)
    node_gbps = spec.number("node_gbps")
    rate = spec.number("port_gbits") or port_gbits
    if not node_gbps and rate and fleet_ports:
        node_gbps = fleet_ports * rate / 8
    eff = expected_eff or spec.number("busbw_expected_eff") or DEFAULT_EXPECTED_EFF
    return NodeFabric(descriptor, spec.key, spec.name, node_gbps, eff)


def nic_share(view: View, path: IntraPath, ranks_per_node: Optional[int]) -> Optional[float]:
    """What part of a node's NIC bandwidth one rank's busbw stands for in a view (None: no NIC figure).

    A ring across nodes whose ranks reach each other over NVLink crosses each node once per channel,
    one NIC each: busbw ~ the node's NIC total (inter, pair). A rail (one rank per node) has its own
    NIC, and so has every rank when the node's own links are disabled: busbw ~ total / ranks per node.
    """
    if path == IntraPath.HOST or view == View.INTRA:
        return None
    if view == View.RAIL or path == IntraPath.NETWORK:
        return 1.0 / ranks_per_node if ranks_per_node else None
    return 1.0
