"""Measuring one matmul shape, honestly (returns `Result`s; never prints).

Per shape: random-normal A (m, k) and B created (n, k) then transposed (the usual layout), the
result written into a preallocated C (nothing for the backend to elide); a spot check of a 64 x 64
block of C against float64 on the same (already rounded) inputs; then the shared timing loop with
the device's cache flushed before every timed call, outside the timed span.
Whether tf32 is in effect is not taken from settings: a float32 probe matmul shows it (`tf32_effective`).
TFLOPS = 2*m*n*k / t / 1e12 (the usual convention): `tflops` from the median time,
`tflops_mean` from the mean, `tflops_max` from the fastest sample.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..device import Device, is_rocm
from ..records import Result
from ..stats import median, rate_metrics, summarize, time_metrics
from ..timing import TimingPlan, estimate_call_s, time_call
from .plan import (
    SUSTAIN_MODE,
    DType,
    Kernel,
    MamfPlan,
    SearchSettings,
    SearchState,
    Shape,
    best_record,
    search,
    sweep_shapes,
    tflops,
)

METHOD = (
    "mlbench-mamf/1: A(m,k) @ B(n,k)^T into preallocated C, random normal inputs, cache flush before each "
    "timed call, median of samples"
)
SUSTAIN_METHOD = (
    "mlbench-mamf-sustain/1: one shape back to back, no cache flush; TFLOPS per window of back-to-back "
    "matmuls timed with device events; sustained = median of the windows after the first"
)
CHECK_BLOCK = 64
TF32_PROBE_SIZE = 256
TF32_PROBE_VALUE = 1.0 + 2.0**-12  # exact in float32 (23-bit mantissa); tf32 (10 bits) rounds it to 1.0


def timing_plan(device_type: str, quick: bool, phase: str = "full") -> TimingPlan:
    """Repetitions per shape: the search's short plan for coarse/refine, the full one otherwise."""
    if device_type == "cpu":
        if quick or phase != "full":
            return TimingPlan(warmup=0, budget_ms=20, min_reps=3, max_reps=10)
        return TimingPlan(warmup=1, budget_ms=100, min_reps=5, max_reps=30)
    if quick or phase != "full":
        return TimingPlan(warmup_ms=20, budget_ms=50, min_reps=10, max_reps=50, max_warmup=20)
    return TimingPlan(warmup_ms=100, budget_ms=300, min_reps=50, max_reps=100, max_warmup=50)


def unsupported_reason(dtype: DType, device: Device) -> Optional[str]:
    """Why this dtype cannot be measured on this device (None when it can)."""
    if dtype.kernel is Kernel.SCALED_MM:
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return f"fp8 needs torch._scaled_mm (torch >= 2.5); this is torch {torch.__version__}"
        capability = device.capability()
        if capability is not None:
            major, minor = capability
            if (major, minor) < (8, 9):
                return (
                    f"fp8 needs compute capability >= 8.9 (Ada/Hopper or newer); {device.info.name} is {major}.{minor}"
                )
        if device.type not in ("cuda", "cpu"):
            return f"fp8 through torch._scaled_mm is not supported on {device.type}"
    if dtype.kernel is Kernel.INT_MM and not hasattr(torch, "_int_mm"):
        return f"int8 needs torch._int_mm; this is torch {torch.__version__}"
    if dtype.kernel is Kernel.INT_MM and device.type not in ("cuda", "cpu"):
        return f"int8 through torch._int_mm is not supported on {device.type}"
    if dtype.allow_tf32 and device.type != "cuda":
        return "tf32 is a CUDA tensor-core mode: this device has no TF32 matmul (measure fp32 instead)"
    if dtype.allow_tf32 and tf32_effective(device, allow_tf32=True) is False:
        hint = " (hipBLASLt uses tf32 only with HIPBLASLT_ALLOW_TF32=1)" if is_rocm() else ""
        return (
            f"tf32 is not in effect here: a float32 matmul with tf32 allowed gave the exact float32 result{hint}; "
            "the figure would be mislabelled (measure fp32 instead)"
        )
    return None


def tf32_probe_expected(k: int = TF32_PROBE_SIZE) -> tuple:
    """(float32, tf32) value of every element of the probe product: TF32_PROBE_VALUE summed k times exactly,
    or k times the value rounded to tf32 (1.0)."""
    return k * TF32_PROBE_VALUE, float(k)


def tf32_decision(values, exact: float, rounded: float) -> Optional[bool]:
    """True when every value is the tf32-rounded result, False when every one is the exact float32 result,
    None when the values are neither (no finding)."""
    values = list(values)
    tolerance = abs(exact - rounded) / 4
    if values and all(abs(v - rounded) <= tolerance for v in values):
        return True
    if values and all(abs(v - exact) <= tolerance for v in values):
        return False
    return None


def tf32_effective(device: Device, allow_tf32: bool) -> Optional[bool]:
    """Whether float32 matmuls on `device` round their inputs to tf32 when allow_tf32 is set so, from what
    the library does: one probe matmul (the measured layout) whose exact result needs more than tf32's
    10-bit mantissa. None when the probe could not run or its result is neither."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    n = TF32_PROBE_SIZE
    try:
        a = torch.full((n, n), TF32_PROBE_VALUE, dtype=torch.float32, device=device.torch_device)
        b = torch.ones(n, n, dtype=torch.float32, device=device.torch_device).t()
        c = torch.empty(n, n, dtype=torch.float32, device=device.torch_device)
        torch.mm(a, b, out=c)
        values = (float(c.min()), float(c.max()))
    except Exception:  # noqa: BLE001 - no finding rather than no measurement
        return None
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return tf32_decision(values, *tf32_probe_expected(n))


def _fp8_dtype(device: Device):
    arch = str(device.info.extra.get("gcnArchName", ""))
    if is_rocm() and "gfx94" in arch:
        return torch.float8_e4m3fnuz
    return torch.float8_e4m3fn


@dataclass
class Operands:
    a: "torch.Tensor"
    b: "torch.Tensor"
    c: "torch.Tensor"
    call: Callable[[], object]


def make_operands(shape: Shape, dtype: DType, device: Device, seed: int = 0, fast_accum: bool = False) -> Operands:
    """Random operands (never zeros) and the one call that is timed."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    target = device.torch_device

    def normal(rows: int, cols: int) -> "torch.Tensor":
        # draw on the device when it can (fast); the CPU generator keeps CPU runs reproducible
        if device.type == "cpu":
            return torch.randn(rows, cols, generator=generator, dtype=torch.float32)
        return torch.randn(rows, cols, device=target, dtype=torch.float32)

    if dtype.kernel is Kernel.INT_MM:
        a = torch.randint(-8, 8, (shape.m, shape.k), generator=generator, dtype=torch.int8).to(target)
        b = torch.randint(-8, 8, (shape.n, shape.k), generator=generator, dtype=torch.int8).to(target).t()
        c = torch.empty(shape.m, shape.n, dtype=torch.int32, device=target)
        return Operands(a, b, c, lambda: torch._int_mm(a, b, out=c))
    if dtype.kernel is Kernel.SCALED_MM:
        fp8 = _fp8_dtype(device)
        a = normal(shape.m, shape.k).to(target).to(fp8)
        b = normal(shape.n, shape.k).to(target).to(fp8).t()
        c = torch.empty(shape.m, shape.n, dtype=torch.bfloat16, device=target)
        one = torch.tensor(1.0, device=target)
        return Operands(
            a,
            b,
            c,
            lambda: torch._scaled_mm(
                a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=fast_accum, out=c
            ),
        )
    torch_dtype = getattr(torch, dtype.torch_name)
    a = normal(shape.m, shape.k).to(target).to(torch_dtype)
    b = normal(shape.n, shape.k).to(target).to(torch_dtype).t()
    c = torch.empty(shape.m, shape.n, dtype=torch_dtype, device=target)
    return Operands(a, b, c, lambda: torch.mm(a, b, out=c))


def spot_check(ops: Operands, dtype: DType) -> float:
    """Max |C - ref| / rms(ref) on a 64 x 64 block, ref in float64 from the same inputs (0 = exact)."""
    rows = min(CHECK_BLOCK, ops.c.shape[0])
    cols = min(CHECK_BLOCK, ops.c.shape[1])
    a = ops.a[:rows].to(torch.float64 if dtype.kernel is not Kernel.INT_MM else torch.int64).cpu()
    b = ops.b[:, :cols].to(torch.float64 if dtype.kernel is not Kernel.INT_MM else torch.int64).cpu()
    ref = (a @ b).to(torch.float64)
    got = ops.c[:rows, :cols].to(torch.float64).cpu()
    rms = float(ref.pow(2).mean().sqrt())
    err = float((got - ref).abs().max())
    if dtype.kernel is Kernel.INT_MM:
        return err  # exact arithmetic: any difference is an error
    return err / rms if rms > 0 else err


def spot_check_problem(shape: Shape, check_err: float, dtype: DType) -> Optional[str]:
    """Why a shape's spot check failed (max |C - ref| / rms(ref) above the dtype's tolerance), or None."""
    if math.isfinite(check_err) and check_err <= dtype.check_tolerance:
        return None
    return f"spot check failed at {shape}: max |C-ref|/rms(ref) = {check_err:.3g} > {dtype.check_tolerance:g}"


class MatmulProbe:
    """Measures shapes of one dtype on one device; `peak_tflops` (if known) flags impossible results."""

    def __init__(
        self,
        device: Device,
        dtype: DType,
        quick: bool = False,
        peak_tflops: Optional[float] = None,
        flush: bool = True,
        fast_accum: bool = False,
    ):
        self.device = device
        self.dtype = dtype
        self.fast_accum = fast_accum and dtype.kernel is Kernel.SCALED_MM
        self.quick = quick
        self.peak_tflops = peak_tflops
        self.flush = flush
        self.seed = 0
        self.tf32_effective = None  # float32 dtypes: found on entering
        self._device_context = None

    def __enter__(self) -> "MatmulProbe":
        # allocations and libraries without an explicit device land on the current one: make it this one
        self._device_context = self.device.as_current()
        self._device_context.__enter__()
        self._tf32_saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.dtype.allow_tf32
        if self.dtype.torch_name == "float32":
            self.tf32_effective = tf32_effective(self.device, self.dtype.allow_tf32)
        return self

    def __exit__(self, *exc) -> None:
        torch.backends.cuda.matmul.allow_tf32 = self._tf32_saved
        if self._device_context is not None:
            self._device_context.__exit__(*exc)

    def params(self, shape: Shape, **extra) -> dict:
        params = {"m": shape.m, "n": shape.n, "k": shape.k, "dtype": self.dtype.name, **extra}
        if self.dtype.kernel is Kernel.SCALED_MM:
            params["fast_accum"] = self.fast_accum
        if self.dtype.torch_name == "float32":
            params["tf32_effective"] = self.tf32_effective
        return params

    def fits(self, shape: Shape) -> Optional[str]:
        """Why the operands would not fit in free memory (None when they should)."""
        if self.dtype.kernel in (Kernel.INT_MM, Kernel.SCALED_MM):
            element = 1
        else:
            element = torch.tensor([], dtype=getattr(torch, self.dtype.torch_name)).element_size()
        out_element = {Kernel.INT_MM: 4, Kernel.SCALED_MM: 2}.get(self.dtype.kernel, element)
        need = (shape.m * shape.k + shape.n * shape.k) * element + shape.m * shape.n * out_element
        free = self.device.free_memory_bytes()
        if free is not None and need > 0.9 * free:
            return f"out of memory: {shape} needs {need / 2**30:.1f} GiB of operands, {free / 2**30:.1f} GiB free"
        return None

    def warm_up(self, shape: Shape, seconds: float) -> int:
        """Run one shape back to back for `seconds` (clocks and power up before the sweep); returns calls."""
        if seconds <= 0 or self.fits(shape):
            return 0
        ops = make_operands(shape, self.dtype, self.device, seed=1, fast_accum=self.fast_accum)
        calls = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(8):
                ops.call()
            self.device.synchronize()
            calls += 8
        del ops
        return calls

    def measure(self, shape: Shape, short: bool = False, **extra_params) -> Result:
        """One shape; `short` uses the search's quick timing plan (coarse and refine phases)."""
        params = self.params(shape, **extra_params)
        why = self.fits(shape)
        if why:
            return Result.skipped(params, why)
        self.seed += 1
        ops = None
        try:
            ops = make_operands(shape, self.dtype, self.device, seed=self.seed, fast_accum=self.fast_accum)
            ops.call()
            self.device.synchronize()
            check_err = spot_check(ops, self.dtype)
            plan = timing_plan(self.device.type, self.quick, "short" if short else "full")
            timing = time_call(ops.call, self.device, plan, prepare=self.device.flush_cache if self.flush else None)
        except Exception as exc:  # noqa: BLE001 - classify, never crash the sweep on one shape
            if self.device.is_oom(exc):
                return Result.skipped(params, f"out of memory at {shape}: {str(exc).splitlines()[0][:200]}")
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            return Result.failed(params, f"{type(exc).__name__} at {shape}: {first}")
        finally:
            del ops
            if self.device.type != "cpu":
                self.device.empty_cache()
        return self._result(shape, params, timing, check_err)

    def _result(self, shape: Shape, params: dict, timing, check_err: float) -> Result:
        stats = summarize(timing.samples_s)
        metrics = {
            **rate_metrics("tflops", lambda t: tflops(shape, t), stats),
            **time_metrics(stats, "ms"),
            "reps": timing.reps,
            "warmup": timing.warmup,
            "flops": shape.flops,
            "check_rel_err": check_err,
        }
        params.update(
            timer=timing.timer,
            flush_bytes=self.device.flush_bytes() if self.flush else 0,
            **self.device.info.llc_params(),
            method=METHOD,
        )
        flags = []
        if stats.noisy:
            flags.append("noisy")
        if self.peak_tflops:
            metrics["pct_of_peak"] = 100.0 * metrics["tflops"] / self.peak_tflops
            if metrics["tflops_max"] > self.peak_tflops:
                flags.append("above_spec_peak")
        raw = {"time_ms": [s * 1e3 for s in timing.samples_s]}
        problem = spot_check_problem(shape, check_err, self.dtype)
        if problem:
            return Result.check_failed(params, metrics, problem, flags, raw)
        return Result(params=params, metrics=metrics, flags=flags, raw=raw)

    def sustain(
        self,
        shape: Shape,
        seconds: float,
        window_s: float,
        burst_tflops: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Optional[Result]:
        """One shape back to back for `seconds`, timed in windows of about `window_s` (a batch of matmuls between
        two device events, as `timing.time_call` times one call); None when interrupted before any window."""
        params = self.params(shape, mode=SUSTAIN_MODE, sustain_s=seconds, window_s=window_s)
        why = self.fits(shape)
        if why:
            return Result.skipped(params, why)
        self.seed += 1
        windows, calls, timer, interrupted, ops = [], [], None, False, None
        try:
            ops = make_operands(shape, self.dtype, self.device, seed=self.seed, fast_accum=self.fast_accum)
            ops.call()
            self.device.synchronize()
            check_err = spot_check(ops, self.dtype)
            per_call_s = estimate_call_s(ops.call, self.device)
            deadline = clock() + seconds
            while len(windows) < 2 or deadline - clock() >= window_s / 2:
                batch = max(1, round(window_s / per_call_s))
                timing = time_call(
                    functools.partial(_back_to_back, ops.call, batch),
                    self.device,
                    TimingPlan(warmup=0, reps=1),
                    estimate_s=batch * per_call_s,
                )
                windows.append(timing.samples_s[0])
                calls.append(batch)
                timer = timing.timer
                per_call_s = max(timing.samples_s[0] / batch, 1e-9)
        except KeyboardInterrupt:
            interrupted = True
            if not windows:
                return None
        except Exception as exc:  # noqa: BLE001 - classify, as `measure` does
            if self.device.is_oom(exc):
                return Result.skipped(params, f"out of memory at {shape}: {str(exc).splitlines()[0][:200]}")
            return Result.failed(params, f"{type(exc).__name__} at {shape}: {str(exc).splitlines()[0][:200]}")
        finally:
            del ops
            if self.device.type != "cpu":
                self.device.empty_cache()
        params.update(timer=timer, method=SUSTAIN_METHOD)
        return sustain_result(shape, params, windows, calls, burst_tflops, check_err, self.dtype, interrupted)


def _back_to_back(call: Callable[[], object], times: int) -> None:
    for _ in range(times):
        call()


def sustain_result(
    shape: Shape,
    params: dict,
    windows_s: list,
    calls: list,
    burst_tflops: Optional[float],
    check_err: float,
    dtype: DType,
    interrupted: bool = False,
) -> Result:
    """The record of a sustained run: TFLOPS per window, the median of the windows after the first (the
    first holds the clocks' settling), and the drop from the short-burst figure."""
    rates = [tflops(shape, t / n) for t, n in zip(windows_s, calls)]
    steady = rates[1:] or rates
    steady_call_s = [t / n for t, n in zip(windows_s, calls)][1:] or [windows_s[0] / calls[0]]
    stats = summarize(steady)
    sustained = median(steady)
    metrics = {
        "tflops_sustained": sustained,
        "tflops_windows": rates,
        "tflops": sustained,
        "tflops_mean": stats.mean,
        "tflops_max": stats.max,
        "tflops_min": stats.min,
        "time_ms": median(steady_call_s) * 1e3,
        "cv": stats.cv,
        "windows": len(rates),
        "sustained_s": sum(windows_s),
        "calls": sum(calls),
        "flops": shape.flops,
        "check_rel_err": check_err,
    }
    if burst_tflops:
        metrics["tflops_burst"] = burst_tflops
        metrics["drop_pct"] = 100.0 * (1.0 - sustained / burst_tflops)
    flags = ["partial"] if interrupted else []
    raw = {"window_s": list(windows_s), "calls": list(calls)}
    problem = spot_check_problem(shape, check_err, dtype)
    if problem:
        return Result.check_failed(params, metrics, problem, flags, raw)
    return Result(params=params, metrics=metrics, flags=flags, raw=raw)


# ---------------------------------------------------------------------------------------------
# running a plan: the warm-up, then a sweep or the search, one Result per measured shape; then the
# sustained run of the best shape


def warmup_shape(plan: MamfPlan) -> Shape:
    """The plan's middle-sized shape: big enough to load the device, small enough to fit."""
    shapes = sorted(
        sweep_shapes(plan)
        if plan.grid is None
        else [plan.grid.shape((len(plan.grid.m) // 2, len(plan.grid.n) // 2, len(plan.grid.k) // 2))],
        key=lambda s: s.flops,
    )
    return shapes[len(shapes) // 2]


def results(
    plan: MamfPlan, probe: MatmulProbe, settings: Optional[SearchSettings] = None, state: Optional[SearchState] = None
) -> Iterator:
    """Yield a Result per measured shape (params carry `mode`, and `phase` in a search); then, when the
    plan sustains, the sustained run of the best of them (`mode` "sustain")."""
    measured = []
    for result in shape_results(plan, probe, settings, state):
        measured.append(result)
        yield result
    if plan.sustain_s:
        sustained = sustain_best(plan, probe, measured)
        if sustained is not None:
            yield sustained


def sustain_best(plan: MamfPlan, probe: MatmulProbe, measured: list) -> Optional[Result]:
    """The sustained run of the best measured shape (by `plan.best_record`), its TFLOPS as the short burst."""
    as_records = [
        {"probe": "mamf", "status": str(r.status), "params": r.params, "metrics": r.metrics} for r in measured
    ]
    best = best_record(as_records)
    if best is None:
        params = {"m": 0, "n": 0, "k": 0, "dtype": probe.dtype.name, "mode": SUSTAIN_MODE, "sustain_s": plan.sustain_s}
        return Result.skipped(params, "no shape was measured: nothing to sustain")
    p = best["params"]
    return probe.sustain(Shape(p["m"], p["n"], p["k"]), plan.sustain_s, plan.window_s, best["metrics"]["tflops"])


def shape_results(
    plan: MamfPlan, probe: MatmulProbe, settings: Optional[SearchSettings] = None, state: Optional[SearchState] = None
) -> Iterator:
    """Yield a Result per measured shape (params carry `mode`, and `phase` in a search)."""
    probe.warm_up(warmup_shape(plan), plan.warmup_s)
    if plan.mode == "sweep":
        for shape in sweep_shapes(plan):
            yield probe.measure(shape, mode="sweep")
        return
    last = {}

    def measure(shape: Shape, phase: str):
        result = probe.measure(shape, short=phase != "confirm", mode="search", phase=phase)
        last["result"] = result
        return result.metrics["tflops"] if result.ok else None

    for _phase, _shape, _score in search(plan.grid, measure, settings or SearchSettings(), state):
        yield last["result"]
