"""Probe options: one frozen object per probe, the single source of its command line.

A probe declares its options once, as a frozen dataclass whose fields carry their flags:

    @dataclass(frozen=True)
    class MembwOptions(ProbeOptions):
        ops: Optional[str] = option("--ops", metavar="OPS", help="...")
        rotate: bool = option("--rotate/--no-rotate", default=True, help="...")

From that one declaration come the click options (`click_params`), the object built from a
command line (`MembwOptions(**values)`), and the way back to a command line (`to_argv`), which
`mlbench run`'s plan and a torchrun re-launch use. An option added to the class is parsed,
planned and forwarded without another edit. Values stay as the user wrote them (size lists as
text); the probe's plan parses and validates them.

No click at import time: plans import their options class, and plans are torch- and click-free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Optional


def option(
    flags: str,
    *,
    default: Any = None,
    help: str,
    metavar: Optional[str] = None,
    type: Any = None,
    flag: bool = False,
    envvar: Optional[str] = None,
    show_default: bool = False,
    forward: bool = True,
) -> Any:
    """A dataclass field that is also a command-line option.

    `flags` is `--name` or `--on/--off` (a boolean switch); `flag=True` makes `--name` a bare flag;
    `type` is a click-free description: `float`, `int`, `("min", 1)` for an int >= 1, or a tuple
    of choices. `forward=False` keeps the option out of `to_argv` (launcher-only options).
    """
    metadata = {
        "flags": flags,
        "help": help,
        "metavar": metavar,
        "type": type,
        "flag": flag,
        "envvar": envvar,
        "show_default": show_default,
        "forward": forward,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ProbeOptions:
    """The options every probe takes."""

    device: str = option(
        "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (ROCm too), xpu, xpu:N or mps."
    )
    out: Optional[str] = option(
        "--out",
        metavar="PATH",
        help="JSON Lines file records are appended to (default results/<run-id>/<probe>.jsonl).",
    )
    quick: bool = option(
        "--quick", default=False, flag=True, help="A small plan that finishes in seconds on a 2-core CPU."
    )
    run_id: Optional[str] = option(
        "--run-id",
        envvar="MLBENCH_RUN_ID",
        help="Run id (default: time-host-random); names the results/<run-id>/ directory.",
    )

    def replace(self, **changes) -> "ProbeOptions":
        return dataclasses.replace(self, **changes)

    def to_argv(self) -> list:
        """The command line that builds this same object (defaults left out, launcher-only options too)."""
        argv = []
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if not meta.get("forward", True) or value == f.default:
                continue
            flags = meta["flags"]
            if "/" in flags:
                on, off = flags.split("/")
                argv.append(on if value else off)
            elif meta["flag"]:
                if value:
                    argv.append(flags)
            elif value is not None:
                argv += [flags, _text(value)]
        return argv


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)


def click_params(options_class: type) -> list:
    """click.Option objects for every field of `options_class`, in declaration order."""
    import click

    params = []
    for f in fields(options_class):
        meta = f.metadata
        if "flags" not in meta:
            continue
        kwargs = {"help": meta["help"], "show_default": meta["show_default"]}
        if meta["envvar"]:
            kwargs["envvar"] = meta["envvar"]
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if meta["flag"]:
            kwargs["is_flag"] = True
        kind = meta["type"]
        if isinstance(kind, tuple) and kind and kind[0] == "min":
            kwargs["type"] = click.IntRange(min=kind[1])
        elif isinstance(kind, tuple):
            kwargs["type"] = click.Choice(kind)
        elif kind is not None:
            kwargs["type"] = kind
        params.append(click.Option([meta["flags"], f.name], default=f.default, **kwargs))
    return params
