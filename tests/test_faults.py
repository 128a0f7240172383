"""MLBENCH_FAULTS: the documented grammar, and what each fault asks for."""

import pytest

from mlbench.exitcodes import UsageError
from mlbench.faults import Faults, current, parse


def test_empty_means_no_fault():
    assert not parse(None) and not parse("") and not current({})


def test_each_kind_parses():
    faults = parse("slow_node=n3:ms=50, slow_link=n1+n4:ms=20,corrupt=1:after=3,telemetry=/tmp/t.jsonl")
    assert faults.slow_nodes == {"n3": 50.0}
    assert faults.slow_links == {frozenset({"n1", "n4"}): 20.0}
    assert faults.corrupt_after(1) == 3 and faults.corrupt_after(0) is None
    assert faults.telemetry_file == "/tmp/t.jsonl"


def test_collective_delays_by_node_and_by_link():
    faults = parse("slow_node=n3:ms=50,slow_link=n1+n4:ms=20")
    assert faults.collective_delay_ms("n3", ["n1", "n3"]) == 50
    assert faults.collective_delay_ms("n1", ["n1", "n3"]) == 0  # a slow node delays only its own ranks
    assert faults.collective_delay_ms("n1", ["n1", "n4"]) == 20
    assert faults.collective_delay_ms("n4", ["n1", "n2", "n4"]) == 20
    assert faults.collective_delay_ms("n1", ["n1", "n2"]) == 0  # the link needs both ends in the group
    assert faults.collective_delay_ms("n2", ["n1", "n4", "n2"]) == 0


@pytest.mark.parametrize(
    "bad",
    [
        "slow_node",
        "slow_node=n1",
        "slow_node=n1:ms=x",
        "slow_node=n1:ms=-1",
        "slow_link=n1:ms=5",
        "slow_link=n1+n1:ms=5",
        "corrupt=a:after=1",
        "telemetry=",
        "nope=1",
        "slow_node=n1:s=5",
    ],
)
def test_bad_values_are_usage_errors(bad):
    with pytest.raises(UsageError, match="MLBENCH_FAULTS"):
        parse(bad)


def test_faults_object_defaults_to_none():
    assert Faults().collective_delay_ms("a", ["a"]) == 0
