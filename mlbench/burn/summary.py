"""What a burn-in says at the end, from its records (one device's, or every GPU's after a fan-out). No torch."""

from __future__ import annotations

from ..records import Status
from ..stats import median
from .exchange import device_label
from .plan import format_duration, odd_ones, slow_ones


def by_device(records: list) -> dict:
    """device label -> its burn records, in order."""
    out: dict = {}
    for record in records:
        if record.get("probe", "burn") == "burn":
            out.setdefault(device_label(record["host"], record["device"]), []).append(record)
    return out


def median_tflops(records: list):
    values = [r["metrics"]["tflops"] for r in records if r["status"] != Status.SKIPPED and r["metrics"].get("tflops")]
    return median(values) if values else None


def device_line(label: str, records: list) -> str:
    """`node01 cuda:0: 10 interval(s), 4200 iterations, 612 TFLOPS (median), 0 mismatches, ...`."""
    metrics = [r["metrics"] for r in records]
    iterations = sum(m.get("iterations") or 0 for m in metrics)
    mismatches = sum(m.get("mismatches") or 0 for m in metrics)
    pattern_passes = sum(1 for m in metrics if m.get("pattern_bytes"))
    pattern_errors = sum(m.get("pattern_errors") or 0 for m in metrics)
    growth = sum(m.get("counter_growth") or 0 for m in metrics)
    tflops = median_tflops(records)
    failed = sum(1 for r in records if r["status"] == Status.ERROR)
    parts = [
        f"{len(records)} interval(s)",
        f"{iterations} iterations",
        f"{tflops:.4g} TFLOPS (median)" if tflops else "no TFLOPS",
        f"{mismatches} mismatching element(s)",
    ]
    if pattern_passes:
        size = max(m.get("pattern_bytes") or 0 for m in metrics)
        parts.append(f"{pattern_passes} pattern pass(es) over {size / 2**30:.3g} GiB, {pattern_errors} bad word(s)")
    parts.append(f"error-counter growth {growth}")
    verdict = "FAILED" if failed else "clean"
    return f"{label}: {verdict}: " + ", ".join(parts)


def cross_device_lines(groups: dict) -> list:
    """Lines naming GPUs whose first result differs from their siblings', and GPUs much slower than them.

    Siblings: same device model, dtype, shape and library (the digest is only comparable then)."""
    lines = []
    families: dict = {}
    for label, records in groups.items():
        last = records[-1]
        key = (
            last["device"].get("name"),
            last["params"].get("dtype"),
            last["params"].get("m"),
            last["params"].get("n"),
            last["params"].get("k"),
            last["params"].get("library"),
        )
        families.setdefault(key, {})[label] = records
    for key, members in families.items():
        digests = {label: recs[-1]["metrics"].get("result_sha256") for label, recs in members.items()}
        digests = {label: digest for label, digest in digests.items() if digest}
        for label, odd in sorted(odd_ones(digests).items()):
            how = (
                "no majority: cannot tell which is wrong" if odd.ambiguous else f"{odd.majority} GPU(s) agree otherwise"
            )
            lines.append(f"{label}: its results differ bit for bit from the other {key[0]} GPU(s) ({how})")
        slow = slow_ones({label: median_tflops(recs) for label, recs in members.items()})
        for label, below in sorted(slow.items()):
            lines.append(
                f"{label}: {100 * below:.0f}% slower than the median of the other {key[0]} GPU(s) under the same load"
            )
    return lines


def summary_text(records: list, duration_s: float) -> str:
    groups = by_device(records)
    if not groups:
        return "nothing measured"
    lines = [f"burn-in of {format_duration(duration_s)} on {len(groups)} device(s):"]
    lines += [f"  {device_line(label, recs)}" for label, recs in groups.items()]
    lines += [f"  {line}" for line in cross_device_lines(groups)]
    return "\n".join(lines)
