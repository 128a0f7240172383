"""Capacity estimates: GPUs to train and to serve a model, training time and cost, fed by measured numbers.

Rules of thumb (decimal units: GB = 1e9 bytes, TFLOPS = 1e12 FLOP/s; `params` in billions):

    training GPUs  = ceil(params x 18 x 1.25 / gpu_mem_GB)   mixed precision with AdamW: 18 bytes per parameter
                     (fp32 master weights 4 + bf16 working copy 2 + fp32 gradients 4 + AdamW momentum and
                     variance 4 + 4), plus 25% for activations, buffers and fragmentation
    inference GPUs = ceil(params x 2 x 1.25 / gpu_mem_GB)    half-precision weights (2 bytes per parameter),
                     plus 25% for the KV cache and buffers
    training FLOPs = 6 x params x tokens                      model FLOPs (forward 2, backward 4 per parameter and
                     token); no activation recomputation, no attention term
    training time  = FLOPs / (gpus x rate per GPU)            seconds; days = seconds / 86,400
    cost           = gpus x time in hours x price per GPU-hour

The rate per GPU of an offer (a run directory, or a part of the registry), first that applies:

1. the measured TFLOPS per GPU of `mlbench train` in the run (probe `train`, metric `tflops_per_gpu`, at the
   largest `world_size` measured; its `mfu` is of the datasheet peak), unless `--mfu` is given;
2. the measured MAMF of the run (bf16, the slowest GPU's best: synchronous training waits for it) x MFU;
3. the registry's dense bf16 peak of the run's (or the named) part x MFU;

where MFU is `--mfu`, else the assumed 0.5. With rule 2 the assumed fraction is of the measured MAMF (what the
matmul units of this machine reach), not of the datasheet peak: the estimate follows the machine measured.
Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Optional

from . import specs as specs_registry
from .exitcodes import UsageError
from .mamf.plan import best_record
from .records import iter_jsonl_paths, read_records

TRAIN_BYTES_PER_PARAM = 18
SERVE_BYTES_PER_PARAM = 2
MEMORY_OVERHEAD = Fraction(5, 4)  # x 1.25: activations, KV cache, buffers, fragmentation
FLOPS_PER_PARAM_TOKEN = 6
DEFAULT_MFU = 0.5
TRAIN_DTYPE = "bf16"
SECONDS_PER_DAY = 86_400
COUNT_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_COUNT = re.compile(r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([KMGT]?)\s*$", re.IGNORECASE)


class Rate(StrEnum):
    """Where the rate per GPU of an offer comes from (rules 1-3 of the module docstring)."""

    MEASURED_TRAIN = "measured by mlbench train"
    MAMF_TIMES_MFU = "measured MAMF x MFU"
    PEAK_TIMES_MFU = "datasheet peak x MFU"


def parse_count(text: str, option: str = "--tokens") -> Fraction:
    """`2T`, `1.5T`, `300G`, `2e12`: a positive number with a decimal suffix K M G T (1e3..1e12)."""
    found = _COUNT.match(str(text))
    if not found:
        raise UsageError(f"{option} {text!r}: expected a number with an optional K, M, G or T (1e3..1e12), e.g. 2T")
    value = Fraction(found.group(1)) * COUNT_SUFFIXES[found.group(2).upper()]
    if value <= 0:
        raise UsageError(f"{option} {text!r}: must be above 0")
    return value


def gpus_needed(params_billions: float, bytes_per_param: int, gpu_mem_gb: float) -> int:
    """ceil(params_B x bytes per parameter x 1.25 / GPU memory in GB), exact for decimal inputs."""
    need = Fraction(str(params_billions)) * bytes_per_param * MEMORY_OVERHEAD / Fraction(str(gpu_mem_gb))
    return math.ceil(need)


def training_gpus(params_billions: float, gpu_mem_gb: float) -> int:
    """GPUs that hold a model's training state in mixed precision (18 bytes per parameter, x 1.25)."""
    return gpus_needed(params_billions, TRAIN_BYTES_PER_PARAM, gpu_mem_gb)


def inference_gpus(params_billions: float, gpu_mem_gb: float) -> int:
    """GPUs that hold a model's half-precision weights (2 bytes per parameter, x 1.25)."""
    return gpus_needed(params_billions, SERVE_BYTES_PER_PARAM, gpu_mem_gb)


def training_flops(params_billions: float, tokens: float) -> float:
    """6 x params x tokens: the model FLOPs of training on `tokens` tokens."""
    return FLOPS_PER_PARAM_TOKEN * params_billions * 1e9 * float(tokens)


@dataclass(frozen=True)
class Speed:
    """The rate per GPU an offer trains at, and how it was obtained."""

    tflops_per_gpu: float
    source: Rate
    base_tflops: Optional[float] = None  # the measured MAMF or the datasheet peak the MFU is applied to
    mfu: Optional[float] = None  # the fraction applied to base_tflops, or the measured MFU of mlbench train
    mfu_assumed: bool = False  # the default MFU, not given nor measured

    def describe(self) -> str:
        if self.source == Rate.MEASURED_TRAIN:
            mfu = f", MFU {self.mfu:.1%} of the datasheet peak" if self.mfu else ""
            return f"{self.tflops_per_gpu:.4g} TFLOPS {self.source}{mfu}"
        what = "assumed" if self.mfu_assumed else "given"
        base = "measured MAMF" if self.source == Rate.MAMF_TIMES_MFU else "datasheet bf16 peak"
        return f"{self.mfu:g} ({what} MFU) x {base} {self.base_tflops:.4g} TFLOPS = {self.tflops_per_gpu:.4g} TFLOPS"


@dataclass(frozen=True)
class Offer:
    """What a plan is made for: a run directory (measured) or a part of the registry (datasheet)."""

    name: str
    gpu: str  # the part's name, or the device name the run recorded
    gpu_mem_gb: Optional[float]
    speed: Optional[Speed]
    price_per_gpu_hour: Optional[float] = None
    notes: tuple = ()


@dataclass(frozen=True)
class Request:
    """The question: a model size, optionally a training budget, and the assumptions."""

    params_billions: float
    tokens: Optional[float] = None  # or flops
    flops: Optional[float] = None
    gpus: Optional[int] = None  # the cluster size; default: the training GPUs of each offer
    mfu: Optional[float] = None  # None: measured where a run has it, else DEFAULT_MFU

    @property
    def budget_flops(self) -> Optional[float]:
        if self.flops is not None:
            return float(self.flops)
        if self.tokens is not None:
            return training_flops(self.params_billions, self.tokens)
        return None


@dataclass(frozen=True)
class Plan:
    """The estimate for one offer."""

    offer: Offer
    training_gpus: int
    inference_gpus: int
    gpus: int  # the GPUs training runs on
    training_seconds: Optional[float] = None
    gpu_hours: Optional[float] = None
    cost: Optional[float] = None

    @property
    def training_days(self) -> Optional[float]:
        return None if self.training_seconds is None else self.training_seconds / SECONDS_PER_DAY

    def as_dict(self) -> dict:
        speed = self.offer.speed
        return {
            "name": self.offer.name,
            "gpu": self.offer.gpu,
            "gpu_mem_gb": self.offer.gpu_mem_gb,
            "training_gpus": self.training_gpus,
            "inference_gpus": self.inference_gpus,
            "gpus": self.gpus,
            "tflops_per_gpu": speed.tflops_per_gpu if speed else None,
            "rate_source": speed.source if speed else None,
            "base_tflops": speed.base_tflops if speed else None,
            "mfu": speed.mfu if speed else None,
            "mfu_assumed": speed.mfu_assumed if speed else None,
            "training_seconds": self.training_seconds,
            "training_days": self.training_days,
            "gpu_hours": self.gpu_hours,
            "price_per_gpu_hour": self.offer.price_per_gpu_hour,
            "cost": self.cost,
            "notes": list(self.offer.notes),
        }


def plan(request: Request, offer: Offer) -> Plan:
    """GPU counts, and with a budget the training time, GPU-hours and cost of one offer."""
    if offer.gpu_mem_gb is None:
        raise UsageError(f"{offer.name}: GPU memory unknown ({offer.gpu!r} is not in the registry): give --gpu-mem GB")
    train = training_gpus(request.params_billions, offer.gpu_mem_gb)
    serve = inference_gpus(request.params_billions, offer.gpu_mem_gb)
    gpus = request.gpus or train
    if gpus < train:
        raise UsageError(
            f"--gpus {gpus}: {offer.name} needs at least {train} GPUs of {offer.gpu_mem_gb:g} GB "
            f"to hold the training state of {request.params_billions:g}B parameters"
        )
    budget = request.budget_flops
    if budget is None:
        return Plan(offer, train, serve, gpus)
    if offer.speed is None:
        raise UsageError(
            f"{offer.name}: no speed to estimate the time with (no mamf or train record, no known "
            "part): give --gpu NAME or a run with mlbench mamf"
        )
    seconds = budget / (gpus * offer.speed.tflops_per_gpu * 1e12)
    gpu_hours = gpus * seconds / 3600
    price = offer.price_per_gpu_hour
    return Plan(offer, train, serve, gpus, seconds, gpu_hours, None if price is None else gpu_hours * price)


def ranked(plans: list[Plan], key: str) -> list[Plan]:
    """Plans by `cost` or by `training_seconds`, lowest first; those without the figure last."""
    return sorted(plans, key=lambda p: (getattr(p, key) is None, getattr(p, key) or 0.0, p.offer.name))


# -- offers -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFigures:
    """What a run directory says about its GPUs: their name, the slowest MAMF, mlbench train's rate."""

    device_name: str = ""
    device_type: str = ""
    mamf_tflops: Optional[float] = None  # bf16, the slowest device's best median
    mamf_devices: int = 0
    train_tflops_per_gpu: Optional[float] = None
    train_mfu: Optional[float] = None
    device_memory_gb: Optional[float] = None  # env.json, when the registry does not know the part
    notes: tuple = field(default_factory=tuple)


def read_run(run_dir: str) -> RunFigures:
    """The figures of one run directory (records and env.json); a UsageError when it holds no records."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UsageError(f"--run {run_dir}: not a run directory")
    records = [r for p in iter_jsonl_paths([path]) for r in read_records(p)]
    if not records:
        raise UsageError(f"--run {run_dir}: no mlbench records (.jsonl) in it")
    devices = [r.get("device") or {} for r in records if r.get("probe") in ("mamf", "train", "membw", "burn")]
    names = [d.get("name") or "" for d in devices if d.get("name")]
    device_name = max(set(names), key=names.count) if names else ""
    device_type = next((d.get("type") or "" for d in devices if (d.get("name") or "") == device_name), "")
    mamf, count = slowest_mamf(records)
    tflops, mfu = train_rate(records)
    return RunFigures(device_name, device_type, mamf, count, tflops, mfu, env_memory_gb(path, device_name))


def slowest_mamf(records: list) -> tuple[Optional[float], int]:
    """(the slowest device's best bf16 MAMF in TFLOPS, number of devices) over the run's mamf records."""
    per_device: dict = {}
    for r in records:
        params = r.get("params") or {}
        if r.get("probe") != "mamf" or params.get("dtype") != TRAIN_DTYPE or params.get("mode") == "sustain":
            continue
        device = r.get("device") or {}
        per_device.setdefault((r.get("host"), device.get("index")), []).append(r)
    bests = [best_record(group) for group in per_device.values()]
    values = [float(b["metrics"]["tflops"]) for b in bests if b is not None]
    return (min(values), len(values)) if values else (None, 0)


def train_rate(records: list) -> tuple[Optional[float], Optional[float]]:
    """(median measured TFLOPS per GPU, median MFU or None) of the run's ok `train` records at the largest
    scale measured (`params.world_size`: the whole job's step, communication included, over one GPU's)."""
    ok = [r for r in records if r.get("probe") == "train" and r.get("status") == "ok"]
    ok = [r for r in ok if _positive((r.get("metrics") or {}).get("tflops_per_gpu"))]
    if not ok:
        return None, None
    scale = max(_world_size(r) for r in ok)
    widest = [r["metrics"] for r in ok if _world_size(r) == scale]
    mfus = [float(m["mfu"]) for m in widest if _positive(m.get("mfu"))]
    return (statistics.median(float(m["tflops_per_gpu"]) for m in widest), statistics.median(mfus) if mfus else None)


def _world_size(record: dict) -> int:
    size = (record.get("params") or {}).get("world_size")
    return size if isinstance(size, int) and not isinstance(size, bool) else 1


def env_memory_gb(run_dir: Path, device_name: str) -> Optional[float]:
    """The device's memory in GB (1e9 bytes) as env.json recorded it, or None."""
    try:
        env = json.loads((run_dir / "env.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for device in env.get("devices") or [] if isinstance(env, dict) else []:
        if (
            isinstance(device, dict)
            and device.get("name") == device_name
            and _positive(device.get("total_memory_bytes"))
        ):
            return float(device["total_memory_bytes"]) / 1e9
    return None


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def speed_of(figures: RunFigures, spec, mfu: Optional[float]) -> Optional[Speed]:
    """The rate per GPU of a run (or of a part when `figures` is empty): rules 1-3 of the module docstring."""
    if figures.train_tflops_per_gpu is not None and mfu is None:
        return Speed(figures.train_tflops_per_gpu, Rate.MEASURED_TRAIN, mfu=figures.train_mfu)
    fraction = DEFAULT_MFU if mfu is None else mfu
    if figures.mamf_tflops is not None:
        return Speed(figures.mamf_tflops * fraction, Rate.MAMF_TIMES_MFU, figures.mamf_tflops, fraction, mfu is None)
    peak = spec.peak_tflops(TRAIN_DTYPE) if spec is not None else None
    if peak:
        return Speed(peak * fraction, Rate.PEAK_TIMES_MFU, peak, fraction, mfu is None)
    return None


def run_offer(run_dir: str, registry: list, mfu: Optional[float], gpu_mem_gb: Optional[float]) -> Offer:
    """The offer of a run directory: its part, memory per GPU and rate per GPU."""
    figures = read_run(run_dir)
    spec = specs_registry.lookup(figures.device_name, registry) if figures.device_name else None
    notes = []
    if gpu_mem_gb is None:
        gpu_mem_gb = spec.number("mem_gib") if spec is not None else None
        gpu_mem_gb = gpu_mem_gb or figures.device_memory_gb
    speed = speed_of(figures, spec, mfu)
    if figures.train_tflops_per_gpu is not None and mfu is not None:
        notes.append("--mfu given: the measured rate of mlbench train is not used")
    if speed is not None and speed.source == Rate.MAMF_TIMES_MFU and figures.mamf_devices > 1:
        notes.append(f"MAMF of the slowest of {figures.mamf_devices} GPUs")
    name = Path(run_dir).resolve().name
    return Offer(name, spec.name if spec else figures.device_name or "unknown", gpu_mem_gb, speed, notes=tuple(notes))


def part_offer(name: str, registry: list, mfu: Optional[float], gpu_mem_gb: Optional[float]) -> Offer:
    """The offer of a registry part named by key (`h100-sxm`) or by a device name torch reports."""
    spec = next((s for s in registry if s.key.lower() == name.lower()), None) or specs_registry.lookup(name, registry)
    if spec is None:
        raise UsageError(f"--gpu {name!r}: not a part of the registry (see `mlbench specs`)")
    memory = gpu_mem_gb if gpu_mem_gb is not None else spec.number("mem_gib")
    return Offer(spec.key, spec.name, memory, speed_of(RunFigures(), spec, mfu))


def with_prices(offers: list[Offer], prices: tuple) -> list[Offer]:
    """One price for every offer, or one per offer in order (runs first, then parts)."""
    if not prices:
        return offers
    if len(prices) == 1:
        prices = prices * len(offers)
    if len(prices) != len(offers):
        raise UsageError(
            f"--price given {len(prices)} times for {len(offers)} offers: give one price for all, "
            "or one per --run/--gpu in order"
        )
    return [replace(offer, price_per_gpu_hour=price) for offer, price in zip(offers, prices)]
