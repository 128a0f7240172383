"""Every probe's options, declared once: each one given survives `to_argv` and the probe's own click parse,
so `mlbench run`'s plan and a torchrun re-launch forward any option, including one added later."""

import dataclasses
import importlib

import pytest
from conftest import parse_options

from mlbench import harness
from mlbench.cli import COMMANDS


def probe_definitions():
    found = []
    for target in COMMANDS.values():
        module = importlib.import_module(target.split(":")[0])
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, harness.Probe) and value is not harness.Probe:
                if value.__module__ == module.__name__:
                    found.append(value)
    return found


def not_default(field):
    """A value for `field` that differs from its default and that its click type accepts."""
    meta, default = field.metadata, field.default
    kind = meta.get("type")
    if meta.get("flag") or "/" in meta["flags"]:
        return not default
    if isinstance(kind, tuple) and kind and kind[0] == "min":
        return (default or kind[1]) + 2
    if isinstance(kind, tuple):
        return next(choice for choice in kind if choice != default)
    if kind is float:
        return (default or 0.0) + 1.5
    if kind is int:
        return (default or 0) + 3
    return f"{default or 'x'}-changed"


DEFINITIONS = probe_definitions()


def test_every_probe_command_is_found():
    assert {d.name for d in DEFINITIONS} >= {"mamf", "membw", "collectives", "diskio", "fabric", "burn", "train"}


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_every_forwarded_option_round_trips(definition):
    from mlbench.harness import command

    fields = [f for f in dataclasses.fields(definition.options) if "flags" in f.metadata]
    forwarded = [f for f in fields if f.metadata.get("forward", True)]
    given = definition.options(**{f.name: not_default(f) for f in forwarded})
    argv = given.to_argv()
    assert parse_options(command(definition), definition.options, argv) == given
    for f in forwarded:  # each option appears under its own flag
        assert any(flag in argv for flag in f.metadata["flags"].split("/")), f.name
    for f in fields:
        if not f.metadata.get("forward", True):  # launcher-only options stay with the launcher
            changed = definition.options(**{f.name: not_default(f)})
            assert changed.to_argv() == [], f.name
    assert definition.options().to_argv() == []
