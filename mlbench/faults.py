"""Fault injection and fakes for tests: `MLBENCH_FAULTS`, documented in docs/reference.md, off unless set.

`MLBENCH_FAULTS` is a comma list of:
- `slow_node=NAME:ms=N`: every collective call of the ranks on node NAME is delayed by N ms;
- `slow_link=NAME1+NAME2:ms=N`: the same, only in groups that hold both nodes;
- `corrupt=INDEX:after=K`: burn-in, device INDEX flips one bit of its result from iteration K on;
- `telemetry=FILE`: replay FILE as the telemetry of device 0 instead of any real backend.

Nodes are named by `MLBENCH_HOST` when set (several simulated nodes on one machine), else the host
name (`mlbench.records.hostname`). A malformed value is a usage error (exit 2), never ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .exitcodes import UsageError

ENV = "MLBENCH_FAULTS"


@dataclass(frozen=True)
class Faults:
    slow_nodes: dict = field(default_factory=dict)  # node name -> delay ms
    slow_links: dict = field(default_factory=dict)  # frozenset({a, b}) -> delay ms
    corrupt: dict = field(default_factory=dict)  # device index -> first corrupted iteration
    telemetry_file: Optional[str] = None

    def __bool__(self) -> bool:
        return bool(self.slow_nodes or self.slow_links or self.corrupt or self.telemetry_file)

    def collective_delay_ms(self, node: str, group_nodes: Iterable[str]) -> float:
        """How long a collective call of a rank on `node`, in a group spanning `group_nodes`, is delayed."""
        nodes = set(group_nodes)
        delay = self.slow_nodes.get(node, 0.0) if node in nodes or not nodes else 0.0
        for link, ms in self.slow_links.items():
            if node in link and link <= nodes:
                delay = max(delay, ms)
        return float(delay)

    def corrupt_after(self, device_index: int) -> Optional[int]:
        """The iteration from which device `device_index` flips a bit of its result (None: never)."""
        return self.corrupt.get(device_index)


def _number(text: str, what: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{ENV}: bad {what} {text!r} in {item!r}") from None
    if value < 0:
        raise UsageError(f"{ENV}: {what} must be >= 0 in {item!r}")
    return value


def _keyed(value: str, key: str, item: str) -> tuple:
    """`NAME:key=N` -> (NAME, N)."""
    name, sep, rest = value.partition(":")
    k, eq, number = rest.partition("=")
    if not name or not sep or k != key or not eq:
        raise UsageError(f"{ENV}: expected ...=NAME:{key}=N in {item!r}")
    return name, _number(number, key, item)


def parse(text: Optional[str]) -> Faults:
    """The faults a `MLBENCH_FAULTS` value asks for (empty text: none)."""
    slow_nodes, slow_links, corrupt, telemetry = {}, {}, {}, None
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        kind, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"{ENV}: expected KIND=VALUE, got {item!r}")
        if kind == "slow_node":
            name, ms = _keyed(value, "ms", item)
            slow_nodes[name] = ms
        elif kind == "slow_link":
            names, ms = _keyed(value, "ms", item)
            pair = names.split("+")
            if len(pair) != 2 or not all(pair) or pair[0] == pair[1]:
                raise UsageError(f"{ENV}: slow_link needs two different nodes NAME1+NAME2, got {names!r}")
            slow_links[frozenset(pair)] = ms
        elif kind == "corrupt":
            index, after = _keyed(value, "after", item)
            if not index.isdigit():
                raise UsageError(f"{ENV}: corrupt needs a device index, got {index!r}")
            corrupt[int(index)] = int(after)
        elif kind == "telemetry":
            if not value:
                raise UsageError(f"{ENV}: telemetry needs a file")
            telemetry = value
        else:
            raise UsageError(f"{ENV}: unknown fault {kind!r} (slow_node, slow_link, corrupt, telemetry)")
    return Faults(slow_nodes, slow_links, corrupt, telemetry)


def current(environ=None) -> Faults:
    """The faults of this process's environment."""
    return parse((environ if environ is not None else os.environ).get(ENV))
