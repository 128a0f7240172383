"""Overhead of the training probe: `mlbench train`'s step time vs a bare loop of the same model and optimizer,
and the analytic FLOP count vs torch's FLOP counter.

1. Step time. Ours: the probe's own path (`Trainer.point`: model, AdamW, task, warm-up, the timing loop
   with an event pair per step, the stop check, the progress call, the loss kept on the device), one
   process. The bare loop: the same model (`build_model`), the same AdamW settings and the same task,
   written as a plain loop timed with perf_counter (synchronized on an accelerator). Rounds alternate which
   one goes first; each builds its model afresh. Per round the ratio of the two median step times; gated on
   the median of the rounds' ratios within 3% either way (slower is overhead; faster would mean we time
   less than the step). A round pairs two runs a second apart, so load that comes and goes between rounds
   cancels; the medians and the fastest steps over all rounds are printed too.
2. FLOPs. One forward and backward pass of each preset under `torch.utils.flop_counter.FlopCounterMode`
   (on the meta device: shapes only, so the 1b and 8b-class models cost nothing; attention on the math
   backend, whose matmuls the counter sees) against `flops_per_token x tokens`. Gated on exact agreement.

    .venv/bin/python benchmarks/bench_train.py [--device cpu] [--preset tiny] [--rounds 21] [--steps 20]

Exit 0 when both targets are met, 1 otherwise. Other processes' load on a small shared machine moves single
rounds by tens of percent: run it on an idle one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 0.03
WARMUP = 5


def bare_loop_s(plan, device, precision, steps: int) -> list:
    """Per-step seconds of a plain training loop of the same model, optimizer and task."""
    import torch

    from mlbench.train.model import PermutationTask, loss_of
    from mlbench.train.plan import Parallel
    from mlbench.train.probe import AUTOCAST_DTYPES, build_model, make_optimizer

    torch_device = device.torch_device
    model = build_model(plan.shape, torch_device)
    optimizer = make_optimizer(model, plan.preset.lr, torch_device, Parallel.NONE)
    task = PermutationTask(plan.shape.vocab, plan.shape.seq_len, torch_device, data_seed=1000)
    dtype = AUTOCAST_DTYPES.get(precision.name)
    times = []
    for i in range(WARMUP + steps):
        device.synchronize()
        start = time.perf_counter()
        with torch.autocast(torch_device.type, dtype=dtype, enabled=precision.autocast):
            loss = loss_of(model, task.batch(plan.micro_batch))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        device.synchronize()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return times


def step_time(device_spec: str, preset: str, rounds: int, steps: int) -> bool:
    from dataclasses import replace

    from mlbench.collectives.dist import setup
    from mlbench.train.plan import TrainOptions, make_plan
    from mlbench.train.probe import Identity, Trainer, precision_for

    ctx = setup(device_spec, "auto", 300.0)
    plan = make_plan(ctx.device.type, TrainOptions(preset=preset, steps=steps, warmup=WARMUP))
    precision = precision_for(ctx.device, plan.dtype)
    plan = replace(plan, dtype=precision.name)
    info = ctx.device.info
    identity = Identity(("bench",), (info.index or 0,), (info.name,), ("bench",))
    print(
        f"step time: preset {preset} ({plan.shape.describe()}), micro-batch {plan.micro_batch}, {precision.name} "
        f"on {info.name}; {rounds} alternated rounds of {WARMUP} warm-up + {steps} timed steps each"
    )
    ours_all, bare_all, ratios = [], [], []
    for i in range(rounds):

        def ours():
            (result,) = Trainer(ctx, plan, precision, identity, None, None).point(1)
            assert result.ok, result.error
            return [t / 1e3 for t in result.raw["step_ms"]]

        def bare():
            return bare_loop_s(plan, ctx.device, precision, steps)

        first, second = (ours, bare) if i % 2 == 0 else (bare, ours)
        a, b = first(), second()
        o, r = (a, b) if i % 2 == 0 else (b, a)
        ours_all += o
        bare_all += r
        ratios.append(statistics.median(o) / statistics.median(r))
        print(
            f"  round {i + 1}: mlbench {statistics.median(o) * 1e3:8.3f} ms   bare loop "
            f"{statistics.median(r) * 1e3:8.3f} ms   ratio {ratios[-1]:.3f}"
        )
    ctx.close()
    ours_med, bare_med = statistics.median(ours_all), statistics.median(bare_all)
    print(
        f"median of all steps: mlbench {ours_med * 1e3:.3f} ms, bare loop {bare_med * 1e3:.3f} ms, "
        f"ratio {ours_med / bare_med:.3f}"
    )
    print(
        f"fastest step:        mlbench {min(ours_all) * 1e3:.3f} ms, bare loop {min(bare_all) * 1e3:.3f} ms, "
        f"ratio {min(ours_all) / min(bare_all):.3f}"
    )
    ratio = statistics.median(ratios)
    met = abs(ratio - 1) <= TOLERANCE
    print(
        f"target: the median of the rounds' ratios within {TOLERANCE:.0%} either way: {ratio:.3f} "
        f"{'PASS' if met else 'FAIL'}"
    )
    return met


def flop_agreement() -> bool:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from mlbench.train.model import Transformer, loss_of
    from mlbench.train.plan import TrainOptions, make_plan

    print("FLOPs of one forward and backward pass: torch's counter vs flops_per_token x tokens")
    met = True
    for preset, layers in (("tiny", None), ("1b", None), ("8b", "2")):
        plan = make_plan("cuda", TrainOptions(preset=preset, layers=layers))
        shape, batch = plan.shape, plan.micro_batch
        with torch.device("meta"):
            model = Transformer(shape)
            tokens = torch.randint(0, shape.vocab, (batch, shape.seq_len + 1))
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            loss_of(model, tokens).backward()
        counted, ours = counter.get_total_flops(), shape.flops_per_token * batch * shape.seq_len
        met &= counted == ours
        print(
            f"  {preset:5s} {shape.layers:3d} layers: counter {counted:.6e}, analytic {ours:.6e}, "
            f"ratio {counted / ours:.9f}"
        )
    print(f"target: equal: {'PASS' if met else 'FAIL'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    flops_ok = flop_agreement()
    steps_ok = step_time(args.device, args.preset, args.rounds, args.steps)
    return 0 if flops_ok and steps_ok else 1


if __name__ == "__main__":
    sys.exit(main())
