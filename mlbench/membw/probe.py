"""Measuring memory bandwidth, honestly (returns `Result`s; never prints).

Per point: the op's buffers are carved out of one arena allocated once for the whole plan (float32,
each buffer 256-byte aligned); sources are filled with random non-zero data (a random 64 Ki-element
block plus a per-block offset: memory-speed, never zeros), destinations with -1 so a copy that did
nothing fails the check. The shared timing loop (`mlbench.timing.time_call`: estimate, warm-up,
events created ahead, one synchronize) times one call per sample; each call uses the next buffer
set, cycling (see `plan` for why and how many). After timing, untimed, the result is verified on up
to `CHECK_SETS` of the sets that ran: a sampled compare of `CHECK_SAMPLES` random elements plus the
first and last (copy, write, triad, transfers), or the sum against a float64 sum (read), taken a
chunk at a time so that checking a buffer needs at most `READ_CHECK_CHUNK_BYTES` of extra memory.
Rates follow the byte table in `plan`: `gbps` counts bytes read + written, `gbps_copied` bytes once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from .. import host as host_facts
from ..device import Device, can_access_peer, gpu_count, peer_memcpy, resolve
from ..records import Result
from ..stats import rate_metrics, summarize, time_metrics
from ..timing import TimingPlan, time_call
from .peer import copy_issuer
from .plan import ALIGN_BYTES, ELEMENT_BYTES, Facts, MembwPlan, Point, gbps, gbps_copied, is_large_buffer, traffic

METHOD = (
    "mlbench-membw/1: float32 buffers, random non-zero sources, `sets` buffer sets cycled (footprint >= 4x LLC "
    "unless --no-rotate), harness timing (median of samples), sampled verification after timing"
)
CHECK_SAMPLES = 4096
CHECK_SETS = 4
TRIAD_SCALAR = 3.0
WRITE_VALUE = 1.5
READ_REL_TOL = 1e-3
READ_CHECK_CHUNK_BYTES = 64 << 20  # float64 temporaries of the read check (bounded whatever the buffer size)
FLOAT64_BYTES = 8
TRIAD_REL_TOL = 1e-5
RANDOM_BLOCK = 1 << 16


def timing_plan(device_type: str, quick: bool) -> TimingPlan:
    if device_type == "cpu":
        if quick:
            return TimingPlan(warmup=1, budget_ms=30, min_reps=3, max_reps=10)
        return TimingPlan(warmup=2, budget_ms=150, min_reps=5, max_reps=50)
    if quick:
        return TimingPlan(warmup_ms=5, budget_ms=20, min_reps=5, max_reps=50, max_warmup=10)
    return TimingPlan(warmup_ms=20, budget_ms=100, min_reps=10, max_reps=200, max_warmup=50)


def device_facts(device: Device) -> Facts:
    """The plan's view of a device: cache, free memory (device and host), GPUs visible."""
    gpus = gpu_count() if device.type == "cuda" else 0
    return Facts(
        device.type, device.info.llc_bytes, device.free_memory_bytes(), host_facts.available_memory_bytes(), gpus
    )


def fill_random(buffer: "torch.Tensor", seed: int) -> None:
    """Random values in [1, 253): a random block in [1, 2) plus the block's index mod 251, never zero."""
    n = buffer.numel()
    block = min(n, RANDOM_BLOCK)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    base = (torch.rand(block, generator=generator) + 1.0).to(buffer.device)
    full = n // block
    if full:
        offsets = (torch.arange(full, device=buffer.device, dtype=torch.float32) % 251).unsqueeze(1)
        torch.add(base.unsqueeze(0), offsets, out=buffer[: full * block].view(full, block))
    if n > full * block:
        buffer[full * block :].copy_(base[: n - full * block])


def float64_sum(tensor: "torch.Tensor", chunk_elements: Optional[int] = None) -> float:
    """The sum of a 1-D tensor in float64, a chunk at a time (`READ_CHECK_CHUNK_BYTES` of float64 by default).

    `tensor.sum(dtype=torch.float64)` converts the whole tensor first, twice a float32 buffer's size of
    extra memory; here each chunk is converted and summed in turn and the partial sums are added in
    float64, so the extra memory is one chunk's, whatever the tensor's size.
    """
    step = chunk_elements or READ_CHECK_CHUNK_BYTES // FLOAT64_BYTES
    total = torch.zeros((), dtype=torch.float64, device=tensor.device)
    for start in range(0, tensor.numel(), step):
        total += tensor[start : start + step].sum(dtype=torch.float64)
    return float(total)


def sample_indices(n: int, device: "torch.device", seed: int) -> "torch.Tensor":
    generator = torch.Generator(device="cpu").manual_seed(seed)
    picked = torch.randint(0, n, (min(n, CHECK_SAMPLES),), generator=generator)
    return torch.cat([torch.tensor([0, n - 1]), picked]).to(device)


@dataclass
class Buffers:
    """One point's buffer sets (views into the arena) and its timed call."""

    sets: list  # per set: a tuple of tensors (the op's buffers, in the table's order)
    call: Callable[[], object]
    used: Callable[[], list]  # indices of the sets that ran at least once
    last: Callable[[], int]  # index of the set that ran last
    acc: Optional["torch.Tensor"] = None  # read: the scalar the sum goes into


def _cycling(calls: list) -> tuple:
    state = {"next": 0, "count": 0}

    def call():
        i = state["next"]
        state["next"] = (i + 1) % len(calls)
        state["count"] += 1
        calls[i]()

    def used():
        return list(range(min(state["count"], len(calls))))

    def last():
        return (state["next"] - 1) % len(calls)

    return call, used, last


class BandwidthProbe:
    """Measures the plan's points on one device; `peak_gbps` (HBM) and `link_gbps` flag impossible figures."""

    def __init__(
        self, device: Device, quick: bool = False, peak_gbps: Optional[float] = None, link_gbps: Optional[float] = None
    ):
        self.device = device
        self.quick = quick
        self.peak_gbps = peak_gbps
        self.link_gbps = link_gbps
        self.llc_bytes = device.info.llc_bytes
        self._arena = None
        self._host = {}
        self._seed = 0
        self._device_context = None
        self._numa = None  # the host NUMA binding, made before the first host buffer is allocated

    # -- memory ------------------------------------------------------------------------------

    def reserve(self, plan: MembwPlan) -> None:
        """Allocate the device arena once, for the plan's largest runnable point."""
        runnable = [p for p in plan.points if p.skip is None and p.spec.kind != "peer"]
        try:
            self._device_arena(max([p.device_bytes for p in runnable] or [0]))
            if self.device.type != "cpu":
                for kind in {p.host_memory for p in runnable if p.host_memory}:
                    self._host_arena(kind, max(p.host_bytes for p in runnable if p.host_memory == kind))
        except Exception as exc:  # noqa: BLE001 - each point then allocates what it needs, or is skipped
            if not self.device.is_oom(exc):
                raise

    def _device_arena(self, nbytes: int) -> "torch.Tensor":
        if self._arena is None or self._arena.numel() * ELEMENT_BYTES < nbytes:
            self._arena = None
            self.device.empty_cache()
            self._arena = torch.empty(
                max(1, nbytes // ELEMENT_BYTES), dtype=torch.float32, device=self.device.torch_device
            )
        return self._arena

    def _host_arena(self, kind: str, nbytes: int) -> "torch.Tensor":
        if self._numa is None:
            self._numa = self.device.bind_host_numa()  # pinned and pageable buffers local to the GPU
        current = self._host.get(kind)
        if current is None or current.numel() * ELEMENT_BYTES < nbytes:
            self._host.pop(kind, None)
            self._host[kind] = torch.empty(
                max(1, nbytes // ELEMENT_BYTES), dtype=torch.float32, pin_memory=(kind == "pinned")
            )
        return self._host[kind]

    def close(self) -> None:
        self._arena = None
        self._host.clear()
        self.device.empty_cache()

    def __enter__(self) -> "BandwidthProbe":
        # allocations and libraries without an explicit device land on the current one: make it this one
        self._device_context = self.device.as_current()
        self._device_context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self._device_context is not None:
            self._device_context.__exit__(*exc)

    @staticmethod
    def _carve(arena: "torch.Tensor", count: int, nbytes: int) -> list:
        stride = -(-nbytes // ALIGN_BYTES) * ALIGN_BYTES // ELEMENT_BYTES
        n = nbytes // ELEMENT_BYTES
        return [arena[i * stride : i * stride + n] for i in range(count)]

    # -- building the calls ------------------------------------------------------------------

    def _device_buffers(self, point: Point) -> Buffers:
        op = point.spec
        views = self._carve(self._device_arena(point.device_bytes), point.sets * op.device_buffers, point.bytes)
        sets = [tuple(views[s * op.device_buffers : (s + 1) * op.device_buffers]) for s in range(point.sets)]
        acc = torch.empty((), dtype=torch.float32, device=self.device.torch_device)
        calls = []
        for bufs in sets:
            if point.op == "copy":
                src, dst = bufs
                self._init(sources=(src,), destinations=(dst,))
                calls.append(lambda src=src, dst=dst: dst.copy_(src))
            elif point.op == "read":
                (src,) = bufs
                self._init(sources=(src,), destinations=())
                calls.append(lambda src=src: torch.sum(src, 0, out=acc))
            elif point.op == "write":
                (dst,) = bufs
                self._init(sources=(), destinations=(dst,))
                calls.append(lambda dst=dst: dst.fill_(WRITE_VALUE))
            elif point.op == "triad":
                a, b, c = bufs
                self._init(sources=(b, c), destinations=(a,))
                calls.append(lambda a=a, b=b, c=c: torch.add(b, c, alpha=TRIAD_SCALAR, out=a))
            else:
                raise ValueError(f"not a device-memory op: {point.op}")
        self.device.synchronize()
        call, used, last = _cycling(calls)
        return Buffers(sets, call, used, last, acc)

    def _transfer_buffers(self, point: Point) -> Buffers:
        host = self._carve(self._host_arena(point.host_memory, point.host_bytes), 1, point.bytes)[0]
        dev = self._carve(self._device_arena(point.device_bytes), 1, point.bytes)[0]
        pinned = point.host_memory == "pinned"
        if point.op == "h2d":
            self._init(sources=(host,), destinations=(dev,))
            call = lambda: dev.copy_(host, non_blocking=pinned)  # noqa: E731
            sets = [(host, dev)]
        else:
            self._init(sources=(dev,), destinations=(host,))
            call = lambda: host.copy_(dev, non_blocking=pinned)  # noqa: E731
            sets = [(dev, host)]
        self.device.synchronize()
        call, used, last = _cycling([call])
        return Buffers(sets, call, used, last)

    def _init(self, sources, destinations) -> None:
        for src in sources:
            self._seed += 1
            fill_random(src, self._seed)
        for dst in destinations:
            dst.fill_(-1.0)

    # -- verification (never timed) ----------------------------------------------------------

    def _check(self, point: Point, buffers: Buffers) -> Optional[str]:
        """None when the sampled results are right, else what was wrong."""
        self.device.synchronize()
        if point.op == "read":
            (src,) = buffers.sets[buffers.last()]
            want = float64_sum(src)
            got = float(buffers.acc)
            rel = abs(got - want) / abs(want)
            return (
                None if rel <= READ_REL_TOL else f"read: sum {got:.9g} vs float64 {want:.9g} (relative error {rel:.2g})"
            )
        used = buffers.used()
        chosen = sorted(
            {used[int(i * (len(used) - 1) / max(1, CHECK_SETS - 1))] for i in range(min(CHECK_SETS, len(used)))}
        )
        for s in chosen:
            bufs = buffers.sets[s]
            idx = sample_indices(bufs[0].numel(), bufs[0].device, seed=s)
            if point.op == "write":
                got = bufs[0][idx].to("cpu")
                bad = int((got != WRITE_VALUE).sum())
            elif point.op == "triad":
                a, b, c = (t[idx.to(t.device)].to("cpu", torch.float64) for t in bufs)
                want = b + TRIAD_SCALAR * c
                bad = int(((a - want).abs() > TRIAD_REL_TOL * want.abs()).sum())
            else:  # copy-like: (src, dst)
                src, dst = bufs
                bad = int((src[idx.to(src.device)].to("cpu") != dst[idx.to(dst.device)].to("cpu")).sum())
            if bad:
                return f"{point.op}: {bad} of {idx.numel()} sampled elements wrong in buffer set {s}"
        return None

    # -- measuring ---------------------------------------------------------------------------

    def results(self, plan: MembwPlan) -> Iterator[Result]:
        """One `Result` per point of the plan, in order, the device arena reserved before the first."""
        self.reserve(plan)
        for point in plan.points:
            yield self.measure(point)

    def measure(self, point: Point) -> Result:
        params = point.params()
        if point.skip:
            return Result.skipped(params, point.skip)
        if point.spec.kind == "peer":
            return self._measure_peer(point)
        if point.spec.kind == "transfer" and self.device.type == "cpu":
            return Result.skipped(params, f"{point.op} needs an accelerator")
        buffers = None
        try:
            buffers = self._transfer_buffers(point) if point.spec.kind == "transfer" else self._device_buffers(point)
            timing = time_call(buffers.call, self.device, timing_plan(self.device.type, self.quick))
            problem = self._check(point, buffers)
        except Exception as exc:  # noqa: BLE001 - classify, never crash the sweep on one point
            return self._failure(point, params, exc)
        finally:
            del buffers
        params.update(self._placement_params(point))
        return self._result(point, params, timing, problem)

    def _placement_params(self, point: Point) -> dict:
        """Where the cache size came from; for transfers, the NUMA binding the host buffers were made under."""
        placement = self.device.info.llc_params()
        if point.spec.kind == "transfer" and self._numa is not None:
            placement.update(self._numa.params())
        return placement

    def _measure_peer(self, point: Point) -> Result:
        """GPU `src` -> GPU `dst` on the copy engine: `write` issued on the source's stream (torch's
        copy), `read` on the destination's (the runtime's peer memcpy, see `mlbench.membw.peer`)."""
        params = point.params()
        if not can_access_peer(point.src, point.dst):
            return Result.skipped(
                params,
                f"cuda:{point.src} cannot reach cuda:{point.dst} by peer access "
                "(torch would stage the copy through host memory)",
            )
        n = point.bytes // ELEMENT_BYTES
        src = dst = buffers = None
        try:
            memcpy = peer_memcpy() if point.direction == "read" else None
        except OSError as exc:
            return Result.skipped(params, f"p2p read needs the GPU runtime's peer memcpy: {exc}")
        try:
            src_device, dst_device = resolve(f"cuda:{point.src}"), resolve(f"cuda:{point.dst}")
            issuer = copy_issuer(point.direction, point.src, point.dst)
            issuing_device = dst_device if issuer == point.dst else src_device
            with issuing_device.as_current():
                src = torch.empty(n, dtype=torch.float32, device=src_device.torch_device)
                dst = torch.empty(n, dtype=torch.float32, device=dst_device.torch_device)
                self._seed += 1
                fill_random(src, self._seed)
                dst.fill_(-1.0)
                if memcpy is not None:
                    # the destination pulls: make sure it has peer access to the source (torch enables
                    # it for the device that issues a copy), else the runtime would stage through the host
                    with dst_device.as_current():
                        src[:1].copy_(dst[:1])
                    src[:1].fill_(1.0)
                src_device.synchronize()
                dst_device.synchronize()
                if memcpy is None:
                    copy = lambda: dst.copy_(src, non_blocking=True)  # noqa: E731
                else:
                    stream = dst_device.stream_handle()
                    nbytes = n * ELEMENT_BYTES
                    copy = lambda: memcpy(  # noqa: E731
                        dst.data_ptr(), point.dst, src.data_ptr(), point.src, nbytes, stream
                    )
                call, used, last = _cycling([copy])
                buffers = Buffers([(src, dst)], call, used, last)
                timing = time_call(buffers.call, issuing_device, timing_plan("cuda", self.quick))
                src_device.synchronize()
                dst_device.synchronize()
                problem = self._check(point, buffers)
        except Exception as exc:  # noqa: BLE001
            return self._failure(point, params, exc)
        finally:
            src = dst = buffers = copy = None  # drop the GPU buffers before the next pair
            self.device.empty_cache()
        params.update(self._placement_params(point))
        return self._result(point, params, timing, problem)

    def _failure(self, point: Point, params: dict, exc: BaseException) -> Result:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        if self.device.is_oom(exc):
            return Result.skipped(params, f"out of memory at {point.label()}: {first}")
        return Result.failed(params, f"{type(exc).__name__} at {point.label()}: {first}")

    def _result(self, point: Point, params: dict, timing, problem: Optional[str]) -> Result:
        op = point.spec
        stats = summarize(timing.samples_s)
        moved = traffic(op, point.bytes)
        metrics = {
            **rate_metrics("gbps", lambda t: gbps(op, point.bytes, t), stats),
            **time_metrics(stats, "ms"),
            "reps": timing.reps,
            "warmup": timing.warmup,
            "bytes_read": moved.read,
            "bytes_written": moved.written,
        }
        if op.copied:
            metrics.update(
                gbps_copied=gbps_copied(op, point.bytes, stats.median),
                gbps_copied_max=gbps_copied(op, point.bytes, stats.min),
                bytes_copied=moved.copied,
            )
        llc = self.llc_bytes or 0
        cache_resident = bool(llc) and point.cache_resident(llc)
        params.update(
            dtype="float32",
            sets=point.sets,
            footprint_bytes=point.device_bytes,
            cache_resident=cache_resident,
            large=is_large_buffer(point.op, point.bytes, self.llc_bytes),
            family=op.family.value,
            timer=timing.timer,
            method=METHOD,
        )
        if self.device.type == "cpu":
            params["threads"] = torch.get_num_threads()
        flags = ["noisy"] if stats.noisy else []
        if op.kind == "device" and self.peak_gbps:
            metrics["pct_of_spec"] = 100.0 * metrics["gbps"] / self.peak_gbps
            if not cache_resident and metrics["gbps_max"] > self.peak_gbps:
                flags.append("above_spec_peak")
        if op.kind == "peer" and self.link_gbps:
            metrics["pct_of_spec"] = 100.0 * metrics["gbps_copied"] / self.link_gbps
            if metrics["gbps_copied_max"] > self.link_gbps:
                flags.append("above_spec_peak")
        raw = {"time_ms": timing.samples_ms()}
        if problem:
            return Result.check_failed(
                params,
                metrics,
                f"check failed: {problem}",
                flags,
                raw,
            )
        return Result(params=params, metrics=metrics, flags=flags, raw=raw)
