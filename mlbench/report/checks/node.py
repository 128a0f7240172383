"""Node sanity checks from the acceptance run's `node` records: cores, host memory, disk, GPU state.

Sizing rules: 2-3 data-loader workers per accelerator plus one process, host memory at least the
GPUs' memory, storage planned at 80% of what was sold (at 90% full programs fail). Without an
accelerator the cores and memory are INFO (nothing to size them against); a GPU without temperature
or ECC state (no NVML) is an inventory line, INFO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..verdicts import Verdict
from .judging import Context
from .rows import NODE, CheckRow, Subject, as_number, count_text

CORES_PER_GPU = 3
DISK_WARN_PCT, DISK_FAIL_PCT = 80.0, 90.0
GPU_HOT_C = 85.0
GIB = 2**30


@dataclass(frozen=True)
class Finding:
    """What a node rule makes of one record: the figure, in its unit, where, and the verdict."""

    value: Optional[float]
    unit: str
    at: str
    verdict: Verdict
    reason: str


def cpu_cores(m: dict, params: dict) -> Finding:
    gpus, usable = m.get("gpus") or 0, m.get("usable_cores") or m.get("cores") or 0
    if not gpus:
        return Finding(usable, "cores", "no GPU", Verdict.INFO, f"informational: {usable:.0f} cores, no accelerator")
    per = usable / gpus
    at = f"{usable:.0f} cores, {gpus:.0f} GPUs"
    if per >= CORES_PER_GPU:
        return Finding(
            per, "cores/GPU", at, Verdict.PASS, f"{per:.1f} cores per GPU (>= {CORES_PER_GPU}: 2-3 loader workers + 1)"
        )
    return Finding(
        per,
        "cores/GPU",
        at,
        Verdict.WARN,
        f"{per:.1f} cores per GPU, below {CORES_PER_GPU} (2-3 data-loader workers + 1 per GPU): "
        "data loading may starve the GPUs",
    )


def host_memory(m: dict, params: dict) -> Finding:
    host, gpu = m.get("bytes") or 0, m.get("gpu_memory_bytes") or 0
    at = f"{host / GIB:.0f} GiB host" + (f", {gpu / GIB:.0f} GiB on GPUs" if gpu else "")
    if not gpu:
        return Finding(host / GIB, "GiB", at, Verdict.INFO, "informational: no accelerator memory to compare with")
    ratio = host / gpu
    if ratio >= 1:
        return Finding(ratio, "x GPU memory", at, Verdict.PASS, f"host memory is {ratio:.1f}x the GPUs' memory")
    return Finding(
        ratio,
        "x GPU memory",
        at,
        Verdict.WARN,
        f"host memory is {ratio:.2f}x the GPUs' memory: too little to stage checkpoints, offload or feed loaders",
    )


def disk(m: dict, params: dict) -> Finding:
    used = m.get("used_pct") or 0
    at = (
        f"{params.get('path', '')}: {(m.get('free_bytes') or 0) / GIB:.0f} GiB free of "
        f"{(m.get('total_bytes') or 0) / GIB:.0f} GiB"
    )
    if used >= DISK_FAIL_PCT:
        return Finding(
            used, "% full", at, Verdict.FAIL, f"{used:.0f}% full: at 90% programs fail (plan on 80% of what was sold)"
        )
    if used >= DISK_WARN_PCT:
        return Finding(used, "% full", at, Verdict.WARN, f"{used:.0f}% full: above the 80% to plan on")
    return Finding(used, "% full", at, Verdict.PASS, f"{used:.0f}% full")


def gpu(m: dict, params: dict) -> Finding:
    at = " ".join(str(v) for v in (params.get("pci_bus"), params.get("uuid")) if v)
    temp, errors, ecc = m.get("temperature_c"), m.get("ecc_uncorrected_errors"), m.get("ecc_enabled")
    if errors:
        return Finding(errors, "ECC errors", at, Verdict.FAIL, f"{errors:.0f} uncorrected ECC error(s) since boot")
    if ecc == 0:
        return Finding(temp, "C", at, Verdict.WARN, "ECC is disabled")
    if temp is not None and temp > GPU_HOT_C:
        return Finding(temp, "C", at, Verdict.WARN, f"{temp:.0f} C at rest: check cooling")
    clocks = "no NVML"
    if m.get("max_sm_clock_mhz"):
        clocks = f"SM {m.get('sm_clock_mhz'):.0f}/{m['max_sm_clock_mhz']:.0f} MHz"
    power = f", {m.get('power_w'):.0f}/{m['power_limit_w']:.0f} W" if m.get("power_limit_w") else ""
    if temp is None and ecc is None:
        return Finding(temp, "C", at, Verdict.INFO, f"inventory only (no temperature or ECC state): {clocks}{power}")
    return Finding(temp, "C", at, Verdict.PASS, f"inventory: {clocks}{power}")


def nics(m: dict, params: dict) -> Finding:
    """The node's fabric ports as found: informational here (`fabric.nics` compares them across the fleet);
    a port that is down is a WARN on its own node."""
    count, down = m.get("nic_count") or 0, m.get("nic_down") or 0
    at = str(params.get("descriptor") or params.get("fabric_kind") or "")
    if not count:
        return Finding(0, "ports", at, Verdict.INFO, "no fabric port found (InfiniBand, RoCE, EFA or Ethernet)")
    if down:
        return Finding(
            count, "ports", at, Verdict.WARN, f"{down:.0f} of {count:.0f} port(s) down: {params.get('down_ports', '')}"
        )
    total = m.get("nic_total_gbits")
    return Finding(
        count, "ports", at, Verdict.INFO, f"{count:.0f} port(s) up" + (f", {total:.0f} Gb/s" if total else "")
    )


NODE_RULES: dict[str, Callable[[dict, dict], Finding]] = {
    "cpu_cores": cpu_cores,
    "host_memory": host_memory,
    "disk": disk,
    "gpu": gpu,
    "nics": nics,
}


def judge_node_record(check: str, metrics: dict, params: dict) -> Finding:
    """The rule of `check` on one record's metrics (numbers, None when missing) and params."""
    rule = NODE_RULES.get(check)
    if rule is None:
        return Finding(None, "", "", Verdict.INFO, f"informational: unknown node check {check!r}")
    return rule(metrics, params)


def node_checks(frame, ctx: Context) -> list[CheckRow]:
    """One check per `node` record of the acceptance run."""
    d = frame[(frame["probe"] == "node") & (frame["status"] == "ok")]
    if d.empty:
        return []
    metric_columns = [c for c in d.columns if c.startswith("metrics.")]
    param_columns = [c for c in d.columns if c.startswith("params.")]
    rows = []
    for r in d.to_dict("records"):
        metrics = {c[8:]: as_number(r[c]) for c in metric_columns}
        params = {c[7:]: r[c] for c in param_columns if isinstance(r[c], str) or as_number(r[c]) is not None}
        check = str(params.get("check", ""))
        found = judge_node_record(check, metrics, params)
        device = str(count_text(r["device_index"])) if check == "gpu" else NODE
        subject = Subject(r["host"], device, r["device_type"], r["device_name"])
        rows.append(
            subject.row(
                probe="node",
                check=f"node.{check}",
                value=found.value,
                unit=found.unit,
                at=found.at,
                verdict=found.verdict,
                reason=found.reason,
            )
        )
    return rows
