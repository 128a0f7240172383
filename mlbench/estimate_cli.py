"""`mlbench estimate`: GPUs to train and serve a model, training time and cost, from measured runs or datasheets.

The arithmetic and its conventions are `mlbench.estimate` (and docs/estimate.md); this is its click layer:
options in, a table or a JSON object out. Pure Python (no torch, no pandas). Bad input is one line, exit 2.
"""

from __future__ import annotations

import json
import math
from typing import Optional

import click

from . import estimate as est
from .cli import Command
from .exitcodes import UsageError


def check_inputs(
    params: float, gpu_mem: Optional[float], mfu: Optional[float], prices: tuple, gpus: Optional[int]
) -> None:
    """Every number in range, else a UsageError naming the option."""
    if not (math.isfinite(params) and params > 0):
        raise UsageError(f"--params {params:g}: the model size in billions of parameters must be above 0")
    if gpu_mem is not None and not (math.isfinite(gpu_mem) and gpu_mem > 0):
        raise UsageError(f"--gpu-mem {gpu_mem:g}: the memory of one GPU in GB must be above 0")
    if mfu is not None and not 0 < mfu <= 1:
        raise UsageError(f"--mfu {mfu:g}: a fraction in (0, 1], e.g. 0.5")
    for price in prices:
        if not (math.isfinite(price) and price >= 0):
            raise UsageError(f"--price {price:g}: a price per GPU-hour is 0 or more")
    if gpus is not None and gpus < 1:
        raise UsageError(f"--gpus {gpus}: at least 1")


def make_offers(runs: tuple, parts: tuple, specs_files: tuple, mfu, gpu_mem, prices: tuple) -> list:
    """The offers to compare: each run directory, then each named part, with their prices."""
    registry = None
    if runs or parts:
        from . import specs as specs_registry

        try:
            registry = specs_registry.load(specs_files)
        except specs_registry.SpecsError as exc:
            raise UsageError(str(exc)) from None
    offers = [est.run_offer(run, registry, mfu, gpu_mem) for run in runs]
    offers += [est.part_offer(part, registry, mfu, gpu_mem) for part in parts]
    if not offers:
        if gpu_mem is None:
            raise UsageError("--gpu-mem GB is needed (or --run DIR / --gpu NAME of a part the registry knows)")
        if prices:
            raise UsageError("--price needs an offer with a speed: --run DIR or --gpu NAME")
        offers = [est.Offer("", "", gpu_mem, None)]
    return est.with_prices(offers, prices)


def fmt(value: Optional[float], digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"


def text_report(request: est.Request, plans: list) -> str:
    """The human-readable estimate: the model, the rules of thumb, one row per offer, the rankings."""
    lines = [f"Model: {request.params_billions:g}B parameters."]
    budget = request.budget_flops
    if budget is not None:
        tokens = f"{float(request.tokens):.4g} tokens x 6 x params = " if request.flops is None else ""
        lines.append(f"Training budget: {tokens}{budget:.4g} FLOPs.")
    lines.append(
        "GPUs: training in mixed precision = ceil(params x 18 bytes x 1.25 / GPU GB); serving in half "
        "precision = ceil(params x 2 bytes x 1.25 / GPU GB)."
    )
    header = ["offer", "GPU", "GB", "train GPUs", "serve GPUs"]
    if budget is not None:
        header += ["GPUs used", "TFLOPS/GPU", "days", "GPU-hours", "cost"]
    rows = []
    for p in plans:
        row = [
            p.offer.name or "-",
            p.offer.gpu or "-",
            fmt(p.offer.gpu_mem_gb),
            str(p.training_gpus),
            str(p.inference_gpus),
        ]
        if budget is not None:
            row += [
                str(p.gpus),
                fmt(p.offer.speed.tflops_per_gpu),
                fmt(p.training_days),
                fmt(p.gpu_hours),
                fmt(p.cost) if p.cost is not None else "no --price",
            ]
        rows.append(row)
    lines += ["", *table(header, rows)]
    if budget is not None:
        lines.append("")
        for p in plans:
            said = f"{p.offer.name}: " if p.offer.name else ""
            lines.append(
                f"{said}rate {p.offer.speed.describe()}; {p.training_seconds:.4g} s on {p.gpus} GPUs."
                + "".join(f" {note}." for note in p.offer.notes)
            )
        if any(p.offer.speed.mfu_assumed for p in plans):
            lines.append(
                f"MFU {est.DEFAULT_MFU:g} is assumed, not measured: --mfu sets it, a run with "
                "mlbench train measures it."
            )
        if len(plans) > 1:
            lines.append(
                "Ranked by time: " + ", ".join(p.offer.name for p in est.ranked(plans, "training_seconds")) + "."
            )
            if all(p.cost is not None for p in plans):
                lines.append("Ranked by cost: " + ", ".join(p.offer.name for p in est.ranked(plans, "cost")) + ".")
    return "\n".join(lines) + "\n"


def table(header: list, rows: list) -> list:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *rows]]


def json_report(request: est.Request, plans: list) -> dict:
    """The estimate as one object: the first offer by cost (by time without prices) at the top level, each in
    `offers`, and the rankings."""
    by_time = est.ranked(plans, "training_seconds")
    by_cost = est.ranked(plans, "cost")
    top = (by_cost if all(p.cost is not None for p in plans) else by_time)[0]
    out = {
        "params_billions": request.params_billions,
        "tokens": None if request.tokens is None else float(request.tokens),
        "training_flops": request.budget_flops,
        "bytes_per_param_training": est.TRAIN_BYTES_PER_PARAM,
        "bytes_per_param_inference": est.SERVE_BYTES_PER_PARAM,
        "memory_overhead": float(est.MEMORY_OVERHEAD),
    }
    out.update({k: v for k, v in top.as_dict().items() if k not in ("name", "notes")})
    out["offers"] = [p.as_dict() for p in plans]
    if request.budget_flops is not None:
        out["ranked_by_time"] = [p.offer.name for p in by_time]
        out["ranked_by_cost"] = [p.offer.name for p in by_cost] if all(p.cost is not None for p in plans) else None
    return out


@click.command(cls=Command, name="estimate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--params",
    "params",
    type=float,
    required=True,
    metavar="BILLIONS",
    help="Model size in billions of parameters, e.g. 80.",
)
@click.option(
    "--gpu-mem",
    "gpu_mem",
    type=float,
    default=None,
    metavar="GB",
    help="Memory of one GPU in GB (default: the registry's figure for the run's or the named part).",
)
@click.option(
    "--tokens",
    default=None,
    metavar="N",
    help="Training tokens (K M G T = 1e3..1e12, e.g. 2T): asks for time and cost (6 x params x tokens).",
)
@click.option("--flops", default=None, metavar="N", help="A training budget in FLOPs instead of --tokens (e.g. 1e24).")
@click.option(
    "--run",
    "runs",
    multiple=True,
    metavar="DIR",
    help="A run directory whose measured MAMF or mlbench train rate sets the speed; repeat for offers.",
)
@click.option(
    "--gpu",
    "parts",
    multiple=True,
    metavar="NAME",
    help="A registry part (key such as h100-sxm, or a device name): datasheet peak x MFU; repeatable.",
)
@click.option(
    "--price",
    "prices",
    type=float,
    multiple=True,
    metavar="PER_GPU_HOUR",
    help="Price per GPU-hour: once for all offers, or once per offer in order (runs, then parts).",
)
@click.option(
    "--mfu",
    type=float,
    default=None,
    metavar="FRACTION",
    help=f"Model FLOPs utilisation to assume (default: measured by mlbench train, else {est.DEFAULT_MFU}).",
)
@click.option(
    "--gpus",
    type=int,
    default=None,
    metavar="N",
    help="GPUs to train on (default: the fewest that hold the training state).",
)
@click.option("--specs", "specs_files", multiple=True, metavar="FILE", help="CSV of extra or overriding spec rows.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def command(params, gpu_mem, tokens, flops, runs, parts, prices, mfu, gpus, specs_files, as_json):
    """GPUs needed to train and to serve a model, and the training time and cost.

    The rules of thumb (18 bytes per parameter to train in mixed precision, 2 to serve in half precision,
    x 1.25 headroom; 6 x params x tokens FLOPs) fed by measured numbers: each --run DIR is an offer whose
    measured mlbench train rate or MAMF sets the speed. Several offers are ranked by time and by cost.
    """
    check_inputs(params, gpu_mem, mfu, prices, gpus)
    if tokens is not None and flops is not None:
        raise UsageError("give --tokens or --flops, not both")
    request = est.Request(
        params,
        tokens=est.parse_count(tokens) if tokens is not None else None,
        flops=float(est.parse_count(flops, "--flops")) if flops is not None else None,
        gpus=gpus,
        mfu=mfu,
    )
    if request.budget_flops is not None and not (runs or parts):
        raise UsageError("a training budget needs a speed: --run DIR (measured) or --gpu NAME (datasheet peak x MFU)")
    offers = make_offers(runs, parts, specs_files, mfu, gpu_mem, prices)
    plans = [est.plan(request, offer) for offer in offers]
    if as_json:
        click.echo(json.dumps(json_report(request, plans), indent=2))
    else:
        click.echo(text_report(request, plans), nl=False)
    return 0
