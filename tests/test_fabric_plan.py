"""The fabric plan: options, node layout, pairings (seeded, round-robin, re-tests) and the localisation rules."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from mlbench.exitcodes import UsageError
from mlbench.fabric.plan import (
    DEFAULT_VIEWS,
    FabricOptions,
    IntraPath,
    PairResult,
    Rounds,
    Stage,
    View,
    after_round_one,
    bisection,
    cost,
    disjoint_batches,
    exhaustive_sequential,
    intra_node_path,
    judge,
    localise,
    make_plan,
    nic_share,
    node_fabric,
    pair_floor,
    pair_of,
    random_pairing,
    reference_gbps,
    retest_pairings,
    round_robin,
    topology,
)


def nodes(n: int) -> list:
    return [f"n{i:02d}" for i in range(n)]


# --- options and plan ------------------------------------------------------------------------------


def test_views_and_defaults():
    plan = make_plan("cpu", FabricOptions())
    assert plan.views == DEFAULT_VIEWS and plan.rounds == Rounds.QUICK and plan.threshold == 0.7
    assert plan.sizes == (64 << 10, 1 << 20, 16 << 20) and plan.pair_bytes == 16 << 20
    assert make_plan("cuda", FabricOptions()).pair_bytes == 1 << 30
    assert make_plan("cpu", FabricOptions(quick=True)).sizes == (64 << 10, 256 << 10)
    assert make_plan("cpu", FabricOptions(views="pairs,inter")).views == (View.INTER, View.PAIR)


@pytest.mark.parametrize(
    "options",
    [
        FabricOptions(views="inter,bogus"),
        FabricOptions(views=""),
        FabricOptions(rounds="some"),
        FabricOptions(threshold=1.0),
        FabricOptions(threshold=0.0),
        FabricOptions(sizes="8"),
        FabricOptions(sizes="1Q"),
        FabricOptions(timeout_s=0.5),
        FabricOptions(seed=-1),
        FabricOptions(backend="mpi"),
        FabricOptions(dtype="int3"),
    ],
)
def test_bad_options_are_usage_errors(options):
    with pytest.raises(UsageError):
        make_plan("cpu", options)


def test_options_round_trip_through_the_command_line():
    from mlbench.fabric.cli import command

    given = FabricOptions(
        device="cpu",
        out="f.jsonl",
        quick=True,
        run_id="r",
        views="pairs",
        rounds="full",
        sizes="1M",
        dtype="bf16",
        timeout_s=60.0,
        seed=7,
        threshold=0.5,
        specs="x.csv",
        backend="gloo",
    )
    assert FabricOptions(**command.make_context("fabric", given.to_argv()).params) == given


# --- node layout ------------------------------------------------------------------------------------


def test_topology_names_nodes_and_rails():
    topo = topology([("a", "0"), ("a", "0"), ("b", "1"), ("b", "1")])
    assert topo.nodes == ("a", "b") and topo.ranks_per_node == 2
    assert topo.rails() == [[0, 2], [1, 3]] and topo.node_groups() == [[0, 1], [2, 3]]
    assert topo.pair_ranks("b", "a") == [0, 1, 2, 3] and topo.local_index(3) == 1


def test_two_launches_on_one_host_are_two_nodes():
    topo = topology([("h", "0"), ("h", "1"), ("h", "0"), ("h", "1")])
    assert topo.nodes == ("h#0", "h#1") and topo.ranks_of("h#1") == [1, 3]


def test_uneven_nodes_have_no_ranks_per_node():
    topo = topology([("a", "0"), ("a", "0"), ("b", "1")])
    assert topo.ranks_per_node is None and topo.rails() == [[0, 2]]


# --- pairings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 5, 16, 17])
def test_random_pairing_covers_every_node_once_and_depends_on_the_seed(n):
    pairing = random_pairing(nodes(n), seed=3)
    seen = [x for pair in pairing.pairs for x in pair] + ([pairing.bye] if pairing.bye else [])
    assert sorted(seen) == nodes(n) and (pairing.bye is None) == (n % 2 == 0)
    assert random_pairing(list(reversed(nodes(n))), seed=3) == pairing  # the order given does not matter
    if n >= 4:
        assert len({random_pairing(nodes(n), seed).pairs for seed in range(20)}) > 1


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9])
def test_round_robin_runs_every_pair_exactly_once(n):
    rounds = round_robin(nodes(n))
    assert len(rounds) == (n - 1 if n % 2 == 0 else n)
    every = [pair for r in rounds for pair in r.pairs]
    assert sorted(every) == sorted(pair_of(a, b) for a, b in itertools.combinations(nodes(n), 2))
    for r in rounds:
        busy = [x for pair in r.pairs for x in pair]
        assert len(busy) == len(set(busy)) and len(r.pairs) == n // 2  # a node in one pair per round
        assert (r.bye is not None) == (n % 2 == 1)


def test_retest_pairs_each_suspect_with_a_passed_node_in_batches():
    batches = retest_pairings(["s1", "s2", "s3"], ["p1", "p2"], seed=1)
    assert len(batches) == 2 and [len(b.pairs) for b in batches] == [2, 1]
    for batch in batches:
        helpers = [x for pair in batch.pairs for x in pair if x.startswith("p")]
        assert len(helpers) == len(set(helpers)) == len(batch.pairs)
    assert sorted(x for b in batches for pair in b.pairs for x in pair if x.startswith("s")) == ["s1", "s2", "s3"]
    assert retest_pairings(["s"], [], seed=1) == [] and retest_pairings([], ["p"], seed=1) == []


def test_disjoint_batches():
    batches = disjoint_batches([("a", "b"), ("a", "c"), ("c", "d"), ("e", "f")])
    assert [b.pairs for b in batches] == [(("a", "b"), ("c", "d"), ("e", "f")), (("a", "c"),)]


# --- floors ----------------------------------------------------------------------------------------------


def test_reference_is_round_one_median_in_quick_and_every_pair_in_full():
    results = [
        PairResult(Stage.FIRST, 1, "a", "b", 10.0),
        PairResult(Stage.FIRST, 1, "c", "d", 20.0),
        PairResult(Stage.FIRST, 1, "e", "f", 40.0),
        PairResult(Stage.RETEST, 2, "a", "c", 1.0),
    ]
    assert reference_gbps(results, Rounds.QUICK) == 20.0
    assert math.isnan(reference_gbps(results, Rounds.FULL))  # no round-robin pair
    robin = [PairResult(Stage.ROBIN, 1, "a", "b", v) for v in (4.0, 8.0, math.nan, 6.0)]
    assert reference_gbps(robin, Rounds.FULL) == 6.0


def test_pair_floor_relative_then_absolute_where_both_nics_are_known():
    relative = pair_floor("a", "b", 100.0, 0.7)
    assert relative.gbps == pytest.approx(70.0) and "median pair" in relative.why
    expected = {"a": 320.0, "b": 300.0}.get
    absolute = pair_floor("a", "b", 100.0, 0.7, expected)
    assert absolute.gbps == pytest.approx(210.0) and "expected 300 GB/s" in absolute.why
    assert pair_floor("a", "x", 100.0, 0.7, expected).gbps == pytest.approx(70.0)  # x unknown: relative only


# --- localisation --------------------------------------------------------------------------------------


def simulate(
    names: list, seed: int, rounds: Rounds, slow_nodes=(), slow_links=(), noise=0.1, base=100.0, threshold=0.7
) -> object:
    """The pair rounds the probe runs, on a fabric where pairs touching a slow node or on a slow link run
    at a fifth of the speed (and every pair within +-noise), judged as the probe judges them."""
    rng = random.Random(seed * 7919 + 1)

    def measure(stage, number, a, b):
        slow = a in slow_nodes or b in slow_nodes or pair_of(a, b) in slow_links
        return PairResult(stage, number, a, b, base * (0.2 if slow else 1.0) * (1 + rng.uniform(-noise, noise)))

    results = []
    if rounds == Rounds.FULL:
        for number, pairing in enumerate(round_robin(names), 1):
            results += [measure(Stage.ROBIN, number, a, b) for a, b in pairing.pairs]
        last = number
    else:
        results += [measure(Stage.FIRST, 1, a, b) for a, b in random_pairing(names, seed).pairs]
        _, judged = judge(results, rounds, threshold)
        state = after_round_one(judged, names)
        for pairing in retest_pairings(state.suspects, state.passed, seed, state.untested):
            results += [measure(Stage.RETEST, 2, a, b) for a, b in pairing.pairs]
        last = 2
    for pairing in disjoint_batches(localise(results, names, rounds, threshold).candidates):
        results += [measure(Stage.CONFIRM, last + 1, a, b) for a, b in pairing.pairs]
    return localise(results, names, rounds, threshold)


@pytest.mark.parametrize("rounds", list(Rounds))
@pytest.mark.parametrize("n", [2, 4, 5, 16, 33])
def test_a_healthy_fabric_names_nothing(n, rounds):
    for seed in range(10):
        found = simulate(nodes(n), seed, rounds)
        assert not found.named and not found.suspects and not found.transient, (seed, found)


@pytest.mark.parametrize("rounds", list(Rounds))
@pytest.mark.parametrize("n", [4, 5, 16, 33])
def test_a_slow_node_is_named_alone_whatever_the_pairing(n, rounds):
    for seed in range(10):
        slow = nodes(n)[seed % n]
        found = simulate(nodes(n), seed, rounds, slow_nodes={slow})
        assert list(found.nodes) == [slow] and not found.links, (seed, found)


def test_two_slow_nodes_are_both_named():
    for seed in range(10):
        found = simulate(nodes(16), seed, Rounds.QUICK, slow_nodes={"n03", "n11"})
        assert sorted(found.nodes) == ["n03", "n11"] and not found.links


@pytest.mark.parametrize("n", [4, 5, 9])
def test_a_slow_link_is_named_and_neither_node_in_full_rounds(n):
    for seed in range(5):
        link = pair_of(nodes(n)[1], nodes(n)[-1])
        found = simulate(nodes(n), seed, Rounds.FULL, slow_links={link})
        assert list(found.links) == [link] and not found.nodes, (seed, found)


@pytest.mark.parametrize("n", [4, 5, 16])
def test_a_slow_link_paired_in_round_one_is_named_in_quick_rounds(n):
    for seed in range(10):
        link = random_pairing(nodes(n), seed).pairs[0]
        found = simulate(nodes(n), seed, Rounds.QUICK, slow_links={link})
        assert list(found.links) == [link] and not found.nodes, (seed, found)


def test_a_pair_slow_once_is_transient_not_named():
    results = [
        PairResult(Stage.FIRST, 1, "a", "b", 10.0),
        PairResult(Stage.FIRST, 1, "c", "d", 100.0),
        PairResult(Stage.FIRST, 1, "e", "f", 100.0),
        PairResult(Stage.RETEST, 2, "a", "c", 100.0),
        PairResult(Stage.RETEST, 2, "b", "d", 100.0),
        PairResult(Stage.CONFIRM, 3, "a", "b", 95.0),
    ]
    found = localise(results, ["a", "b", "c", "d", "e", "f"], Rounds.QUICK, 0.7)
    assert not found.named and list(found.transient) == [("a", "b")] and found.candidates == ()
    without_confirm = localise(results[:-1], ["a", "b", "c", "d", "e", "f"], Rounds.QUICK, 0.7)
    assert list(without_confirm.links) == [("a", "b")] and "not measured again" in without_confirm.links[("a", "b")]


def test_the_node_resting_in_round_one_is_tested_in_round_two():
    names = ["a", "b", "c"]
    first = [PairResult(Stage.FIRST, 1, "a", "b", 100.0)]
    state = after_round_one(judge(first, Rounds.QUICK, 0.7)[1], names)
    assert state.untested == ("c",) and state.passed == ("a", "b") and state.suspects == ()
    slow = localise(first + [PairResult(Stage.RETEST, 2, "a", "c", 20.0)], names, Rounds.QUICK, 0.7)
    assert list(slow.nodes) == ["c"] and slow.nodes["c"].startswith("fails with a node that passed")
    fine = localise(first + [PairResult(Stage.RETEST, 2, "a", "c", 90.0)], names, Rounds.QUICK, 0.7)
    assert not fine.named


def test_absolute_floor_names_every_node_when_no_pair_passes():
    expected = dict.fromkeys("abcd", 300.0).get
    results = [PairResult(Stage.FIRST, 1, "a", "b", 100.0), PairResult(Stage.FIRST, 1, "c", "d", 110.0)]
    found = localise(results, list("abcd"), Rounds.QUICK, 0.7, expected)
    assert sorted(found.nodes) == list("abcd") and "no pair passed" in found.nodes["a"]


# --- NIC figures and cost ------------------------------------------------------------------------------


def test_node_fabric_from_the_registry():
    from mlbench import specs

    registry = specs.load_fabric()
    ib = node_fabric("infiniband 8x400G mlx5_core", 8, registry)
    assert (ib.spec_key, ib.node_gbps, ib.expected_gbps) == ("quantum-2", 400.0, pytest.approx(320.0))
    generic = node_fabric("roce 4x200G mlx5_core", 4, registry)
    assert (generic.spec_key, generic.node_gbps) == ("roce-200", 100.0)  # 4 ports x 200 Gb/s / 8
    assert node_fabric("ethernet 1x25G ixgbe", 1, registry).node_gbps is None


def test_nic_share_per_view_and_path():
    assert nic_share(View.PAIR, IntraPath.SHORTCUTS, 8) == 1.0
    assert nic_share(View.RAIL, IntraPath.SHORTCUTS, 8) == 1 / 8
    assert nic_share(View.INTER, IntraPath.NETWORK, 8) == 1 / 8
    assert nic_share(View.PAIR, IntraPath.HOST, 1) is None and nic_share(View.INTRA, IntraPath.SHORTCUTS, 8) is None
    assert intra_node_path("gloo", {}) == IntraPath.HOST
    assert intra_node_path("nccl", {"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1"}) == IntraPath.NETWORK
    assert intra_node_path("nccl", {"NCCL_P2P_DISABLE": "1"}) == IntraPath.SHORTCUTS


def test_cost_model():
    quick, full = cost(1024, Rounds.QUICK), cost(1024, Rounds.FULL)
    assert (
        (quick.rounds, quick.parallel_pairs) == (2, 512) and full.rounds == 1023 and full.pair_tests == 1024 * 1023 // 2
    )
    assert cost(5, Rounds.FULL).rounds == 5 and quick.wall_s < full.wall_s < exhaustive_sequential(1024).wall_s
    assert bisection(1024).rounds == 10 and bisection(4096, slow_nodes=3).rounds == 36


@pytest.mark.parametrize("args", [["--views", "bogus"], ["--threshold", "2"], ["--sizes", "1Q"], ["--rounds", "x"]])
def test_bad_usage_is_one_line_and_nothing_written(tmp_path, args):
    from conftest import run_module

    proc = run_module("mlbench", "fabric", *args, "--out", str(tmp_path / "f.jsonl"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_a_node_that_rested_gets_two_different_partners_and_needs_two_failures():
    batches = retest_pairings(["s1"], ["p1", "p2", "p3"], seed=4, untested=["r"])
    partners = [next(x for x in pair if x != "r") for b in batches for pair in b.pairs if "r" in pair]
    assert len(partners) == 2 and len(set(partners)) == 2  # two different passed nodes, in separate batches
    for batch in batches:
        busy = [x for pair in batch.pairs for x in pair]
        assert len(busy) == len(set(busy))
    # one passed node only: one test is all there is
    assert [len(b.pairs) for b in retest_pairings([], ["p1"], seed=4, untested=["r"])] == [1]


def test_one_dip_of_the_node_that_rested_names_nothing():
    """5 nodes: the one resting in round 1 is re-tested with two partners; one bad measurement of it
    (noise on a shared machine) makes it a suspect, not a named node."""
    names = nodes(5)
    results = [PairResult(Stage.FIRST, 1, a, b, 10.0) for a, b in random_pairing(names, 3).pairs]
    _, judged = judge(results, Rounds.QUICK, 0.7)
    state = after_round_one(judged, names)
    (rested,) = state.untested
    retests = retest_pairings(state.suspects, state.passed, 3, state.untested)
    first, second = [pair for b in retests for pair in b.pairs if rested in pair]
    dip = [PairResult(Stage.RETEST, 2, *first, 3.0), PairResult(Stage.RETEST, 2, *second, 10.0)]
    found = localise(results + dip, names, Rounds.QUICK, 0.7)
    assert not found.named and rested in found.suspects
    both = [PairResult(Stage.RETEST, 2, *first, 3.0), PairResult(Stage.RETEST, 2, *second, 3.0)]
    assert list(localise(results + both, names, Rounds.QUICK, 0.7).nodes) == [rested]
