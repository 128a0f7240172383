"""Measuring one matmul shape, honestly (returns `Result`s; never prints).

Per shape: random-normal A (m, k) and B created (n, k) then transposed (the peer's layout), the
result written into a preallocated C (nothing for the backend to elide); a spot check of a 64 x 64
block of C against float64 on the same (already rounded) inputs; then the shared timing loop with
the device's cache flushed before every timed call, outside the timed span.
TFLOPS = 2*m*n*k / t / 1e12 (the peers' convention): `tflops` from the median time,
`tflops_mean` from the mean, `tflops_max` from the fastest sample.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..device import Device
from ..records import Result
from ..stats import rate_metrics, summarize, time_metrics
from ..timing import TimingPlan, time_call
from .plan import DType, Shape, tflops

METHOD = "mlbench-mamf/1: A(m,k) @ B(n,k)^T into preallocated C, random normal inputs, cache flush before each timed call, median of samples"
CHECK_BLOCK = 64


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
    if dtype.kernel == "scaled_mm":
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return f"fp8 needs torch._scaled_mm (torch >= 2.5); this is torch {torch.__version__}"
        if device.type == "cuda" and not getattr(torch.version, "hip", None):
            major, minor = torch.cuda.get_device_capability(device.torch_device)
            if (major, minor) < (8, 9):
                return f"fp8 needs compute capability >= 8.9 (Ada/Hopper or newer); {device.info.name} is {major}.{minor}"
        if device.type not in ("cuda", "cpu"):
            return f"fp8 through torch._scaled_mm is not supported on {device.type}"
    if dtype.kernel == "int_mm" and not hasattr(torch, "_int_mm"):
        return f"int8 needs torch._int_mm; this is torch {torch.__version__}"
    if dtype.kernel == "int_mm" and device.type not in ("cuda", "cpu"):
        return f"int8 through torch._int_mm is not supported on {device.type}"
    if dtype.allow_tf32 and device.type != "cuda":
        return "tf32 is a CUDA tensor-core mode: this device has no TF32 matmul (measure fp32 instead)"
    if dtype.allow_tf32 and getattr(torch.version, "hip", None) and os.environ.get("HIPBLASLT_ALLOW_TF32") != "1":
        return "tf32 on ROCm needs HIPBLASLT_ALLOW_TF32=1 (without it hipBLASLt runs fp32 and the figure would be mislabelled)"
    return None


def _fp8_dtype(device: Device):
    arch = str(device.info.extra.get("gcnArchName", ""))
    if getattr(torch.version, "hip", None) and "gfx94" in arch:
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

    if dtype.kernel == "int_mm":
        a = torch.randint(-8, 8, (shape.m, shape.k), generator=generator, dtype=torch.int8).to(target)
        b = torch.randint(-8, 8, (shape.n, shape.k), generator=generator, dtype=torch.int8).to(target).t()
        c = torch.empty(shape.m, shape.n, dtype=torch.int32, device=target)
        return Operands(a, b, c, lambda: torch._int_mm(a, b, out=c))
    if dtype.kernel == "scaled_mm":
        fp8 = _fp8_dtype(device)
        a = normal(shape.m, shape.k).to(target).to(fp8)
        b = normal(shape.n, shape.k).to(target).to(fp8).t()
        c = torch.empty(shape.m, shape.n, dtype=torch.bfloat16, device=target)
        one = torch.tensor(1.0, device=target)
        return Operands(a, b, c, lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                                          use_fast_accum=fast_accum, out=c))
    torch_dtype = getattr(torch, dtype.torch_name)
    a = normal(shape.m, shape.k).to(target).to(torch_dtype)
    b = normal(shape.n, shape.k).to(target).to(torch_dtype).t()
    c = torch.empty(shape.m, shape.n, dtype=torch_dtype, device=target)
    return Operands(a, b, c, lambda: torch.mm(a, b, out=c))


def spot_check(ops: Operands, dtype: DType) -> float:
    """Max |C - ref| / rms(ref) on a 64 x 64 block, ref in float64 from the same inputs (0 = exact)."""
    rows = min(CHECK_BLOCK, ops.c.shape[0])
    cols = min(CHECK_BLOCK, ops.c.shape[1])
    a = ops.a[:rows].to(torch.float64 if dtype.kernel != "int_mm" else torch.int64).cpu()
    b = ops.b[:, :cols].to(torch.float64 if dtype.kernel != "int_mm" else torch.int64).cpu()
    ref = (a @ b).to(torch.float64)
    got = ops.c[:rows, :cols].to(torch.float64).cpu()
    rms = float(ref.pow(2).mean().sqrt())
    err = float((got - ref).abs().max())
    if dtype.kernel == "int_mm":
        return err  # exact arithmetic: any difference is an error
    return err / rms if rms > 0 else err


class MatmulProbe:
    """Measures shapes of one dtype on one device; `peak_tflops` (if known) flags impossible results."""

    def __init__(self, device: Device, dtype: DType, quick: bool = False, peak_tflops: Optional[float] = None,
                 flush: bool = True, fast_accum: bool = False):
        self.device = device
        self.dtype = dtype
        self.fast_accum = fast_accum and dtype.kernel == "scaled_mm"
        self.quick = quick
        self.peak_tflops = peak_tflops
        self.flush = flush
        self.seed = 0

    def __enter__(self) -> "MatmulProbe":
        self._tf32_saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.dtype.allow_tf32
        return self

    def __exit__(self, *exc) -> None:
        torch.backends.cuda.matmul.allow_tf32 = self._tf32_saved

    def params(self, shape: Shape, **extra) -> dict:
        params = {"m": shape.m, "n": shape.n, "k": shape.k, "dtype": self.dtype.name, **extra}
        if self.dtype.kernel == "scaled_mm":
            params["fast_accum"] = self.fast_accum
        return params

    def fits(self, shape: Shape) -> Optional[str]:
        """Why the operands would not fit in free memory (None when they should)."""
        element = 1 if self.dtype.kernel in ("int_mm", "scaled_mm") else torch.tensor([], dtype=getattr(torch, self.dtype.torch_name)).element_size()
        out_element = 4 if self.dtype.kernel == "int_mm" else (2 if self.dtype.kernel == "scaled_mm" else element)
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
            return Result.failed(params, f"{type(exc).__name__} at {shape}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
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
        params.update(timer=timing.timer, flush_bytes=self.device.flush_bytes() if self.flush else 0, method=METHOD)
        flags = []
        if stats.noisy:
            flags.append("noisy")
        if self.peak_tflops:
            metrics["pct_of_peak"] = 100.0 * metrics["tflops"] / self.peak_tflops
            if metrics["tflops_max"] > self.peak_tflops:
                flags.append("above_spec_peak")
        raw = {"time_ms": [s * 1e3 for s in timing.samples_s]}
        if not math.isfinite(check_err) or check_err > self.dtype.check_tolerance:
            return Result(params=params, metrics=metrics, status="error", flags=flags + ["check_failed"], raw=raw,
                          error=f"spot check failed at {shape}: max |C-ref|/rms(ref) = {check_err:.3g} > {self.dtype.check_tolerance:g}")
        return Result(params=params, metrics=metrics, flags=flags, raw=raw)
