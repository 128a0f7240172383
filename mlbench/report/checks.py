"""From the tidy records frame to one row per check (per node and device), each with its verdict.

One function per probe; each picks the figure that answers "does the hardware deliver", finds the
advertised figure in the spec registry and applies `verdicts`:

- mamf: per device and dtype, the best median TFLOPS (among a search's confirm-phase records when
  there are some, else among all ok records) against the dense peak; % of the published MAMF too.
- membw: per device, the best `gbps` (read + written, like the HBM spec) over the device-local ops
  (copy, read, write, triad...) and sizes against `hbm_tbps`; h2d/d2h (`gbps_copied`, bytes once)
  against `host_link_gbps`; p2p against `link_gbps` (per direction).
- collectives: per job (host, run, world size, backend) and op, the peak busbw over sizes (per size
  the slowest rank's, the better of in/out-of-place), the smallest size reaching half of it, the
  latency at the smallest size, and the wrong-element count; busbw against `link_gbps` within a node
  (NVLS/SHARP may exceed it: not suspect); across nodes the NIC is not in the registry: informational.
- diskio: per host, mode and direct/buffered: best GB/s (with IOPS, p99 latency); no spec, so
  informational unless a floor is set (`storage.<mode>`); buffered-only results WARN (page cache).

A device or host whose probe has no ok record is INCOMPLETE; so is a probe that others ran but it
did not (mamf and membw per device, diskio per host; collectives only when required).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from .. import specs as specs_registry
from ..sizes import format_bytes
from .verdicts import (FAIL, HOST_DEVICE_TYPES, INCOMPLETE, PASS, WARN, Thresholds, judge_efficiency,
                       judge_minimum, judge_without_spec, pct)

COLUMNS = ("host", "device", "device_type", "device_name", "spec", "probe", "check", "value", "unit", "at",
           "spec_value", "pct_of_spec", "expected_pct", "reference", "pct_of_reference", "verdict", "reason",
           "half_peak_bytes", "small_latency_us", "errors", "iops", "lat_us_p99", "direct")
NODE = "node"  # the `device` of a node-level check (collectives, storage)
PER_DEVICE_PROBES = ("mamf", "membw")
NO_RECORD = {"why": "no record"}


@dataclass
class Context:
    """The registry, the thresholds, and a memo of device name -> Spec (or None)."""

    registry: list
    thresholds: Thresholds
    _specs: dict = field(default_factory=dict)

    def spec(self, device_name: str) -> Optional[specs_registry.Spec]:
        if device_name not in self._specs:
            self._specs[device_name] = specs_registry.lookup(device_name, self.registry)
        return self._specs[device_name]


def row(**values) -> dict:
    out = dict.fromkeys(COLUMNS)
    out.update(values)
    return out


def _count(value) -> str:
    """An integer-valued number without '.0' (pandas turns int columns with gaps into floats)."""
    number = _num(value)
    return str(int(number)) if number is not None and number == int(number) else str(value)


def _num(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def efficiency_row(ctx: Context, *, host, device, device_type, device_name, probe, check, value, unit, at,
                   family, spec_value, registry_eff, flags="", above_line_rate_ok=False, reference=None, **extra) -> dict:
    """A check of a measured figure against a spec figure, verdict and reason included."""
    spec = ctx.spec(device_name)
    if spec_value:
        expected = ctx.thresholds.expected(family, registry_eff)
        verdict, reason = judge_efficiency(value, spec_value, expected, ctx.thresholds, unit, above_line_rate_ok)
        expected_pct = 100 * expected
    else:
        verdict, reason = judge_without_spec(device_type, device_name)
        if spec is not None:
            verdict, reason = PASS, f"informational: {spec.name} has no {check} figure in the registry"
        expected_pct = None
    judged = bool(spec_value)
    if "noisy" in flags and verdict == PASS and judged:
        verdict, reason = WARN, f"{reason}; noisy samples (large spread): rerun on an idle device"
    if "noisy" in flags and not judged:
        reason = f"{reason}; noisy samples (large spread)"
    if "above_spec_peak" in flags and verdict == PASS:
        verdict, reason = WARN, f"{reason}; a sample ran faster than the advertised peak: suspect timing or spec"
    verdict, reason = judge_minimum(verdict, reason, check, value, unit, ctx.thresholds)
    return row(host=host, device=str(device), device_type=device_type, device_name=device_name,
               spec=spec.key if spec else "", probe=probe, check=check, value=value, unit=unit, at=at,
               spec_value=spec_value, pct_of_spec=pct(value, spec_value), expected_pct=expected_pct,
               reference=reference, pct_of_reference=pct(value, reference), verdict=verdict, reason=reason, **extra)


def incomplete_row(host, device, device_type, device_name, probe, check, why, only_skipped=False, error="") -> dict:
    """INCOMPLETE, except a check only skipped on a host device (cpu): not applicable there, PASS."""
    if only_skipped and device_type in HOST_DEVICE_TYPES:
        return row(host=host, device=str(device), device_type=device_type, device_name=device_name, probe=probe,
                   check=check, verdict=PASS, reason=f"not applicable on {device_type}: {error or why}")
    return row(host=host, device=str(device), device_type=device_type, device_name=device_name, probe=probe,
               check=check, verdict=INCOMPLETE, reason=why)


def _reasons(d, keys) -> dict:
    """key -> {why, only_skipped, error}: why it has no ok record, from the non-ok rows only."""
    bad = d[d["status"] != "ok"]
    if bad.empty:
        return {}
    words: dict = {}
    for key, n in bad.groupby(keys + ["status"], sort=True, dropna=False).size().items():
        words.setdefault(key[:-1], []).append(f"{n} {key[-1]}")
    first = bad.groupby(keys, sort=False, dropna=False)["error"].first()
    out = {}
    for key, error in first.items():
        error = str(error)[:160] if isinstance(error, str) and error else ""
        said = words.get(key, [])
        text = f"no successful measurement ({', '.join(said)})" + (f": {error}" if error else "")
        out[key] = dict(why=text, only_skipped=all(w.endswith(" skipped") for w in said), error=error)
    return out


def mamf_checks(frame, ctx: Context) -> list[dict]:
    d = frame[frame["probe"] == "mamf"]
    if d.empty:
        return []
    keys = ["host", "device_index", "device_type", "device_name", "params.dtype"]
    ok = d[d["status"] == "ok"]
    if "params.phase" in ok and len(ok):
        confirm = ok["params.phase"].eq("confirm")
        has_confirm = confirm.groupby([ok[k] for k in keys]).transform("any")
        ok = ok[confirm | ~has_confirm]
    best = ok.loc[ok.groupby(keys, sort=False)["metrics.tflops"].idxmax()] if len(ok) else ok
    best_by_key = {tuple(r[:5]): r for r in best[keys + ["metrics.tflops", "params.m", "params.n", "params.k", "flags"]].itertuples(index=False, name=None)}
    wrong = set(map(tuple, d.loc[d["flags"].str.contains("check_failed", na=False), keys].itertuples(index=False, name=None)))
    reasons = _reasons(d, keys)
    rows = []
    for key in d.groupby(keys, sort=True, dropna=False).size().index:
        host, index, dtype_, name, dtype = key
        check = f"mamf.{dtype}"
        if key in wrong:
            rows.append(row(host=host, device=str(index), device_type=dtype_, device_name=name, probe="mamf",
                            check=check, verdict=FAIL, reason="a matmul result did not match the float64 reference (check_failed)"))
            continue
        found = best_by_key.get(key)
        if found is None:
            rows.append(incomplete_row(host, index, dtype_, name, "mamf", check, **reasons.get(key, NO_RECORD)))
            continue
        tflops, m, n, k, flags = found[5:]
        spec = ctx.spec(name)
        rows.append(efficiency_row(
            ctx, host=host, device=index, device_type=dtype_, device_name=name, probe="mamf", check=check,
            value=float(tflops), unit="TFLOPS", at=f"{int(m)}x{int(n)}x{int(k)}", family="mamf",
            spec_value=spec.peak_tflops(dtype) if spec else None,
            registry_eff=spec.mamf_expected_eff(dtype) if spec else None,
            reference=spec.mamf_reference(dtype) if spec else None, flags=flags))
    return rows


def membw_family(op: str) -> str:
    """hbm (device-local ops), h2d, d2h or p2p."""
    op = str(op).lower()
    if op.startswith("h2d"):
        return "h2d"
    if op.startswith("d2h"):
        return "d2h"
    if "p2p" in op or "peer" in op:
        return "p2p"
    return "hbm"


def _large_buffers_only(ok, keys):
    """For device memory (hbm), the peak comes from buffers too large for any cache when the run has them.

    membw marks a point `cache_resident` when it ran without rotation, and uses one buffer set
    (`sets == 1`) once a set alone is several times the last-level cache: those are the large points.
    A small buffer rotated through the cache can still beat memory on a CPU with a large L3.
    """
    if "params.sets" not in ok or ok.empty:
        return ok
    resident = ok["params.cache_resident"].eq(True) if "params.cache_resident" in ok else False
    large = ok["params.sets"].eq(1) & ~resident & ok["family"].eq("hbm")
    groups_with_large = set(map(tuple, ok.loc[large, keys].itertuples(index=False, name=None)))
    import pandas as pd

    in_such_group = [tuple(k) in groups_with_large for k in ok[keys].itertuples(index=False, name=None)]
    drop = ok["family"].eq("hbm") & ~large & pd.Series(in_such_group, index=ok.index)
    return ok[~drop]


def membw_checks(frame, ctx: Context) -> list[dict]:
    d = frame[frame["probe"] == "membw"].copy()
    if d.empty:
        return []
    ops = d["params.op"].astype(str)
    d["family"] = ops.map({op: membw_family(op) for op in ops.unique()})
    copied = d["metrics.gbps_copied"] if "metrics.gbps_copied" in d else None
    d["value"] = d["metrics.gbps"] if copied is None else copied.where(d["family"].ne("hbm") & copied.notna(), d["metrics.gbps"])
    keys = ["host", "device_index", "device_type", "device_name", "family"]
    ok = d[(d["status"] == "ok") & d["value"].notna()]
    ok = _large_buffers_only(ok, keys)
    best = ok.loc[ok.groupby(keys, sort=False)["value"].idxmax()] if len(ok) else ok
    best_by_key = {tuple(r[:5]): r[5:] for r in best[keys + ["value", "params.op", "params.bytes", "flags"]].itertuples(index=False, name=None)}
    reasons = _reasons(d, keys)
    rows = []
    for key in d.groupby(keys, sort=True, dropna=False).size().index:
        host, index, dtype_, name, family = key
        found = best_by_key.get(key)
        if found is None:
            rows.append(incomplete_row(host, index, dtype_, name, "membw", family, **reasons.get(key, NO_RECORD)))
            continue
        value, op, size, flags = found
        spec = ctx.spec(name)
        if spec is None:
            spec_value = registry_eff = None
        elif family == "hbm":
            tbps = spec.number("hbm_tbps")
            spec_value, registry_eff = (tbps * 1000 if tbps else None), spec.expected_eff("hbm")
        elif family in ("h2d", "d2h"):
            spec_value, registry_eff = spec.number("host_link_gbps"), spec.expected_eff("h2d")
        else:
            spec_value, registry_eff = spec.number("link_gbps"), spec.expected_eff("p2p")
        rows.append(efficiency_row(
            ctx, host=host, device=index, device_type=dtype_, device_name=name, probe="membw", check=family,
            value=float(value), unit="GB/s", at=f"{op} {format_bytes(size) if _num(size) else size}",
            family="h2d" if family == "d2h" else family, spec_value=spec_value, registry_eff=registry_eff, flags=flags))
    return rows


def _inter_node(d):
    """Per row: does its collective span several nodes? (params nodes or nnodes, local_world_size; else
    whether records of its run and world size come from several hosts)."""
    import pandas as pd

    hosts = d.groupby(["run_id", "params.world_size"], dropna=False)["host"].transform("nunique") > 1
    for column in ("params.nnodes", "params.nodes"):
        if column in d:
            nodes = pd.to_numeric(d[column], errors="coerce")
            hosts = nodes.gt(1).where(nodes.notna(), hosts)
    if "params.local_world_size" in d:
        lws = d["params.local_world_size"]
        hosts = lws.lt(d["params.world_size"]).where(lws.notna(), hosts)
    return hosts


def collectives_checks(frame, ctx: Context) -> list[dict]:
    d = frame[frame["probe"] == "collectives"].copy()
    if d.empty:
        return []
    d["inter_node"] = _inter_node(d)
    keys = ["host", "run_id", "params.world_size", "params.backend", "params.op"]
    d["latency_mode"] = d["params.mode"].eq("latency") if "params.mode" in d else False
    ok = d[d["status"] == "ok"]
    tp = ok[~ok["latency_mode"]]
    per_size = (tp.groupby(keys + ["params.bytes", "params.in_place"], dropna=False)["metrics.busbw_gbps"].min()
                .groupby(level=list(range(len(keys) + 1)), dropna=False).max().rename("busbw").reset_index())
    per_size["peak"] = per_size.groupby(keys, dropna=False)["busbw"].transform("max")
    at_peak = per_size.loc[per_size.groupby(keys, dropna=False)["busbw"].idxmax()].set_index(keys)["params.bytes"]
    half = per_size[per_size["busbw"] >= per_size["peak"] / 2].groupby(keys, dropna=False)["params.bytes"].min()
    lat_rows = ok[ok["latency_mode"]] if ok["latency_mode"].any() else ok
    smallest = lat_rows[lat_rows["params.bytes"] == lat_rows.groupby(keys, dropna=False)["params.bytes"].transform("min")]
    small_lat = smallest.groupby(keys, dropna=False).agg(small_bytes=("params.bytes", "min"), small_us=("metrics.time_us", "min"))
    errors = d.groupby(keys, dropna=False)["metrics.errors"].sum(min_count=1).to_dict() if "metrics.errors" in d else {}
    peaks = per_size.groupby(keys, dropna=False)["busbw"].max().to_dict()
    at_peak, half = at_peak.to_dict(), half.to_dict()
    small_us = small_lat["small_us"].to_dict()
    info = d.groupby(keys, sort=True, dropna=False).agg(
        device_name=("device_name", "first"), device_type=("device_type", "first"), inter=("inter_node", "any"))
    reasons = _reasons(d, keys)
    rows = []
    for key, name, dtype_, inter in info.itertuples(index=True, name=None):
        host, _run, world, backend, op = key
        check = f"busbw.{op}"
        wrong = _num(errors.get(key))
        if key not in peaks:
            rows.append(incomplete_row(host, NODE, dtype_, name, "collectives", check, **reasons.get(key, NO_RECORD)))
            continue
        peak = float(peaks[key])
        extra = dict(half_peak_bytes=_num(half.get(key)), errors=wrong,
                     small_latency_us=_num(small_us.get(key)))
        at = f"{format_bytes(at_peak[key])}, {_count(world)} ranks, {backend}"
        spec = ctx.spec(name)
        if int(world) < 2:
            r = row(host=host, device=NODE, device_type=dtype_, device_name=name, probe="collectives", check=check,
                    value=peak, unit="GB/s", at=at, verdict=PASS, reason="informational: 1 rank, no bus traffic", **extra)
        elif inter:
            r = row(host=host, device=NODE, device_type=dtype_, device_name=name, probe="collectives", check=check,
                    value=peak, unit="GB/s", at=at + ", across nodes", verdict=PASS,
                    reason="informational: spans nodes; the inter-node NIC is not in the registry", **extra)
            r["verdict"], r["reason"] = judge_minimum(r["verdict"], r["reason"], check, peak, "GB/s", ctx.thresholds)
        else:
            r = efficiency_row(ctx, host=host, device=NODE, device_type=dtype_, device_name=name, probe="collectives",
                               check=check, value=peak, unit="GB/s", at=at, family="busbw",
                               spec_value=spec.number("link_gbps") if spec else None,
                               registry_eff=spec.expected_eff("busbw") if spec else None, above_line_rate_ok=True, **extra)
        if wrong:
            r["verdict"], r["reason"] = FAIL, f"{int(wrong)} wrong element(s): the collective returned bad data; {r['reason']}"
        rows.append(r)
    return rows


def diskio_checks(frame, ctx: Context) -> list[dict]:
    d = frame[frame["probe"] == "diskio"].copy()
    if d.empty:
        return []
    d["direct"] = d["params.direct"].fillna(True).astype(bool)
    keys = ["host", "params.mode", "direct"]
    ok = d[(d["status"] == "ok") & d["metrics.gbps"].notna()]
    best = ok.loc[ok.groupby(keys, sort=False)["metrics.gbps"].idxmax()] if len(ok) else ok
    cols = ["metrics.gbps", "params.block_size", "params.jobs", "metrics.lat_us_p99", "flags", "device_type", "device_name"]
    best_by_key = {tuple(r[:3]): r[3:] for r in best[keys + cols].itertuples(index=False, name=None)}
    iops = ok.groupby(keys)["metrics.iops"].max()
    direct_modes = set(zip(ok.loc[ok["direct"], "host"], ok.loc[ok["direct"], "params.mode"]))
    info = d.groupby(keys, sort=True, dropna=False).agg(device_name=("device_name", "first"), device_type=("device_type", "first"))
    reasons = _reasons(d, keys)
    rows = []
    for key, first_name, first_type in info.itertuples(index=True, name=None):
        host, mode, direct = key
        check = f"storage.{mode}" + ("" if direct else ".buffered")
        found = best_by_key.get(key)
        if found is None:
            rows.append(incomplete_row(host, NODE, first_type, first_name, "diskio", check, **reasons.get(key, NO_RECORD)))
            continue
        gbps, block, jobs, p99, flags, dtype_, name = found
        verdict, reason = PASS, "informational: no storage spec (set a floor with --min " + check + "=GBPS)"
        if not direct and (host, mode) not in direct_modes:
            verdict, reason = WARN, "buffered IO only: the page cache may make it look faster than the storage"
        verdict, reason = judge_minimum(verdict, reason, check, float(gbps), "GB/s", ctx.thresholds)
        rows.append(row(host=host, device=NODE, device_type=dtype_, device_name=name, probe="diskio", check=check,
                        value=float(gbps), unit="GB/s", at=f"bs {format_bytes(block) if _num(block) else block}, {_count(jobs)} job(s)",
                        verdict=verdict, reason=reason, iops=_num(iops.get(key)), lat_us_p99=_num(p99), direct=bool(direct)))
    return rows


# Node sizing rules (the seed deck): 2-3 data-loader workers per accelerator plus one process,
# host memory at least the GPUs' memory, storage planned at 80% of what was sold (90% full fails).
CORES_PER_GPU = 3
DISK_WARN_PCT, DISK_FAIL_PCT = 80.0, 90.0
GPU_HOT_C = 85.0


def _node_rule(check: str, m: dict, params: dict) -> tuple:
    """(value, unit, at, verdict, reason) for one node record's facts."""
    num = lambda key: _num(m.get(key))  # noqa: E731
    if check == "cpu_cores":
        gpus, usable = num("gpus") or 0, num("usable_cores") or num("cores") or 0
        if not gpus:
            return usable, "cores", "no GPU", PASS, f"informational: {usable:.0f} cores, no accelerator"
        per = usable / gpus
        if per >= CORES_PER_GPU:
            return per, "cores/GPU", f"{usable:.0f} cores, {gpus:.0f} GPUs", PASS, f"{per:.1f} cores per GPU (>= {CORES_PER_GPU}: 2-3 loader workers + 1)"
        return per, "cores/GPU", f"{usable:.0f} cores, {gpus:.0f} GPUs", WARN, (
            f"{per:.1f} cores per GPU, below {CORES_PER_GPU} (2-3 data-loader workers + 1 per GPU): data loading may starve the GPUs")
    if check == "host_memory":
        host, gpu = num("bytes") or 0, num("gpu_memory_bytes") or 0
        at = f"{host / 2**30:.0f} GiB host" + (f", {gpu / 2**30:.0f} GiB on GPUs" if gpu else "")
        if not gpu:
            return host / 2**30, "GiB", at, PASS, "informational: no accelerator memory to compare with"
        ratio = host / gpu
        if ratio >= 1:
            return ratio, "x GPU memory", at, PASS, f"host memory is {ratio:.1f}x the GPUs' memory"
        return ratio, "x GPU memory", at, WARN, (f"host memory is {ratio:.2f}x the GPUs' memory: too little to stage "
                                                  "checkpoints, offload or feed loaders")
    if check == "disk":
        used = num("used_pct") or 0
        at = f"{params.get('path', '')}: {(num('free_bytes') or 0) / 2**30:.0f} GiB free of {(num('total_bytes') or 0) / 2**30:.0f} GiB"
        if used >= DISK_FAIL_PCT:
            return used, "% full", at, FAIL, f"{used:.0f}% full: at 90% programs fail (plan on 80% of what was sold)"
        if used >= DISK_WARN_PCT:
            return used, "% full", at, WARN, f"{used:.0f}% full: above the 80% to plan on"
        return used, "% full", at, PASS, f"{used:.0f}% full"
    if check == "gpu":
        at = " ".join(str(v) for v in (params.get("pci_bus"), params.get("uuid")) if v)
        temp, errors, ecc = num("temperature_c"), num("ecc_uncorrected_errors"), num("ecc_enabled")
        if errors:
            return errors, "ECC errors", at, FAIL, f"{errors:.0f} uncorrected ECC error(s) since boot"
        if ecc == 0:
            return temp, "C", at, WARN, "ECC is disabled"
        if temp is not None and temp > GPU_HOT_C:
            return temp, "C", at, WARN, f"{temp:.0f} C at rest: check cooling"
        clocks = f"SM {num('sm_clock_mhz'):.0f}/{num('max_sm_clock_mhz'):.0f} MHz" if num("max_sm_clock_mhz") else "no NVML"
        return temp, "C", at, PASS, f"inventory: {clocks}" + (f", {num('power_w'):.0f}/{num('power_limit_w'):.0f} W" if num("power_limit_w") else "")
    return None, "", "", PASS, f"informational: unknown node check {check!r}"


def node_checks(frame, ctx: Context) -> list[dict]:
    """Node sanity from the acceptance run's `node` records: cores, host memory, disk per GPU, GPU state."""
    d = frame[(frame["probe"] == "node") & (frame["status"] == "ok")]
    if d.empty:
        return []
    metric_columns = [c for c in d.columns if c.startswith("metrics.")]
    param_columns = [c for c in d.columns if c.startswith("params.")]
    rows = []
    for r in d.to_dict("records"):
        metrics = {c[8:]: r[c] for c in metric_columns}
        params = {c[7:]: r[c] for c in param_columns if isinstance(r[c], str) or _num(r[c]) is not None}
        check = str(params.get("check", ""))
        value, unit, at, verdict, reason = _node_rule(check, metrics, params)
        device = r["device_index"] if check == "gpu" else NODE
        rows.append(row(host=r["host"], device=str(_count(device)) if device != NODE else NODE, device_type=r["device_type"],
                        device_name=r["device_name"], probe="node", check=f"node.{check}", value=value, unit=unit,
                        at=at, verdict=verdict, reason=reason))
    return rows


def missing_checks(frame, ctx: Context) -> list[dict]:
    """INCOMPLETE rows for probes a device or host did not run while others (or `require`) did."""
    rows = []
    present = set(frame["probe"].unique())
    for probe in ctx.thresholds.require:
        if probe not in present:
            rows.append(incomplete_row("*", NODE, "", "", probe, probe, f"required probe {probe!r} has no records"))
    columns = ["host", "device_index", "device_type", "device_name"]
    ran = {probe: set(frame.loc[frame["probe"] == probe, columns].drop_duplicates().itertuples(index=False, name=None))
           for probe in PER_DEVICE_PROBES if probe in present}
    every = sorted(set().union(*ran.values())) if ran else []
    for probe, have in ran.items():
        for host, index, dtype_, name in every:
            if (host, index, dtype_, name) not in have:
                rows.append(incomplete_row(host, index, dtype_, name, probe, probe, f"{probe} did not run on this device"))
    hosts = set(frame["host"].unique())
    for probe in ("diskio", "collectives"):
        if probe in present and (probe == "diskio" or probe in ctx.thresholds.require):
            have = set(frame.loc[frame["probe"] == probe, "host"].unique())
            rows += [incomplete_row(h, NODE, "", "", probe, probe, f"{probe} did not run on this node") for h in sorted(hosts - have)]
    return rows


CHECKERS = (node_checks, mamf_checks, membw_checks, collectives_checks, diskio_checks, missing_checks)


def all_checks(frame, ctx: Context) -> list[dict]:
    rows = []
    for checker in CHECKERS:
        rows += checker(frame, ctx)
    return rows
