"""mlbench's size grammar (docs/reference.md), parsed in one place, and binary-unit formatting.

    size   := INT [K|M|G|T] [i] [B]        (case-insensitive; binary multiples: K = 1024)
    list   := item ("," item)*
    item   := size | size ":" size [":" step]
    step   := "x" FACTOR | "+" size           (default x2: doubling)

A range's MAX is included when the steps land on it. Every error is a `SizeError` whose message
names the offending text, so a CLI can print it as one line.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(I?)(B?)\s*$", re.IGNORECASE)
_MAX_ITEMS = 100_000


class SizeError(ValueError):
    """A size, list or range that does not follow the grammar."""


def parse_size(text: str) -> int:
    """Parse one size (`8`, `64K`, `1MiB`, `8G`) into a number (bytes or elements)."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise SizeError(f"bad size {text!r}: expected an integer with an optional K/M/G/T suffix, e.g. 64K or 1MiB")
    digits, unit, binary_i, _ = match.groups()
    if binary_i and not unit:
        raise SizeError(f"bad size {text!r}: 'i' needs a unit letter before it (KiB, MiB, ...)")
    return int(digits) * _UNITS[unit.upper()]


def _parse_range(text: str) -> list[int]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SizeError(f"bad range {text!r}: expected MIN:MAX, MIN:MAX:xF or MIN:MAX:+S")
    lo, hi = parse_size(parts[0]), parse_size(parts[1])
    if lo <= 0:
        raise SizeError(f"bad range {text!r}: MIN must be positive")
    if hi < lo:
        raise SizeError(f"bad range {text!r}: MAX is smaller than MIN")
    step = parts[2].strip() if len(parts) == 3 else "x2"
    values: list[int] = []
    if step[:1].lower() == "x":
        try:
            factor = float(step[1:])
        except ValueError:
            raise SizeError(f"bad range step {step!r} in {text!r}: expected xF, e.g. x2") from None
        if not factor > 1:
            raise SizeError(f"bad range step {step!r} in {text!r}: the factor must be greater than 1")
        value = float(lo)
        while round(value) <= hi:
            if not values or round(value) != values[-1]:
                values.append(round(value))
            value *= factor
            if len(values) > _MAX_ITEMS:
                break
    elif step[:1] == "+":
        increment = parse_size(step[1:])
        if increment <= 0:
            raise SizeError(f"bad range step {step!r} in {text!r}: the increment must be positive")
        values = list(range(lo, hi + 1, increment))
    else:
        raise SizeError(f"bad range step {step!r} in {text!r}: expected xF or +S")
    if len(values) > _MAX_ITEMS:
        raise SizeError(f"range {text!r} has more than {_MAX_ITEMS} values")
    return values


def parse_sizes(text: str) -> list[int]:
    """Parse a comma list of sizes and ranges into sizes, in the order given, duplicates dropped."""
    if text is None or not str(text).strip():
        raise SizeError("empty size list")
    out: list[int] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            raise SizeError(f"bad size list {text!r}: empty item")
        values = _parse_range(item) if ":" in item else [parse_size(item)]
        for value in values:
            if value <= 0:
                raise SizeError(f"bad size {item!r}: sizes must be positive")
            if value not in out:
                out.append(value)
    return out


def format_bytes(n_bytes: float) -> str:
    """Binary units for printed sizes: 512B, 64KiB, 1.5MiB, 8GiB."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if value == int(value):
                return f"{int(value)}{unit}"
            return f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")
