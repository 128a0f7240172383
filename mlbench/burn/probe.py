"""Burn-in on one device: deterministic matmuls compared bit for bit, a memory pattern test, error counters.

Returns `Result`s (one per interval), never prints. The parts:

- `deterministic()`: torch's deterministic algorithms on, cuBLAS given a fixed workspace configuration
  (`CUBLAS_WORKSPACE_CONFIG=:4096:8` unless set), tf32 as the dtype says; restored on exit.
- `MatmulCheck`: C = A @ B^T with A and B drawn from a fixed seed on the CPU (the same numbers on every
  GPU), into a preallocated C. Iteration 0 is the reference; every later result is compared with it
  element by element on its bits, on the device, which keeps the count of differing elements and the
  first one (iteration, element, bits) until the interval's end.
- `PatternTest`: a buffer over most of the free memory in chunks; each pass writes every 32-bit word
  as its index XOR a key (the key changes per pass and chunk), then reads every word back.
- the loop `burn()`: per interval, matmuls back to back until the interval's end, then one pattern
  pass, then the error counters; the first result's digest is shared with the sibling processes.

`MLBENCH_FAULTS=corrupt=INDEX:after=K` (mlbench.faults) flips one bit of device INDEX's result from
iteration K on (the CPU is device 0).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..records import Result, Status
from ..stats import median
from .exchange import device_label
from .plan import (
    DIGEST_BLOCKS,
    PATTERN_FRACTION,
    BurnPlan,
    OddOne,
    block_bounds,
    counter_growth,
    first_differing_block,
    format_duration,
    odd_ones,
)

METHOD = (
    "mlbench-burn/1: A(m,k) @ B(n,k)^T into preallocated C, inputs from a fixed seed, deterministic algorithms; "
    "every result compared bit for bit with iteration 0; memory pattern pass and error counters per interval"
)
CUBLAS_WORKSPACE = ":4096:8"
CHUNK_S = 0.1  # matmuls queued between two synchronizations (about this long)
SIBLING_WAIT_S = 30.0  # at the end: how long to wait for a started sibling's first result
PATTERN_CHUNK_BYTES = {"cpu": 16 << 20, "accelerator": 1 << 30}
PATTERN_KEYS = (0x00000000, 0xFFFFFFFF, 0x55555555, 0xAAAAAAAA, 0x33333333, 0xCCCCCCCC, 0x0F0F0F0F, 0xF0F0F0F0)
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _int32(value: int) -> int:
    """A 32-bit pattern as the signed int32 torch stores."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def hex_bits(value: int, width_bytes: int) -> str:
    return f"0x{value & ((1 << (8 * width_bytes)) - 1):0{2 * width_bytes}x}"


@contextlib.contextmanager
def deterministic(allow_tf32: bool) -> Iterator[dict]:
    """Deterministic library settings for the block (restored after); yields them as record params."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cuda.matmul.allow_tf32,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    try:
        yield {"deterministic": True, "cublas_workspace_config": os.environ["CUBLAS_WORKSPACE_CONFIG"]}
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cuda.matmul.allow_tf32 = saved[2]


def library_version() -> str:
    """What must match for two GPUs of one model to compute the same bits: torch and its GPU runtime."""
    hip = getattr(torch.version, "hip", None)
    runtime = f"hip {hip}" if hip else (f"cuda {torch.version.cuda}" if torch.version.cuda else "no GPU runtime")
    return f"torch {torch.__version__}, {runtime}"


@dataclass(frozen=True)
class Mismatches:
    """What an interval's comparisons found: how many elements differed, and the first one."""

    count: int
    first_iteration: int = -1
    first_index: int = -1
    got_bits: int = 0
    expected_bits: int = 0

    def describe(self, check: "MatmulCheck") -> str:
        row, col = divmod(self.first_index, check.shape.n)
        width = check.bits.element_size()
        return (
            f"iteration {self.first_iteration}: the {check.shape.m}x{check.shape.n} result differs bit for bit "
            f"from the first one; first bad element [{row}, {col}] (flat {self.first_index}): bits "
            f"{hex_bits(self.got_bits, width)}, expected {hex_bits(self.expected_bits, width)} "
            f"({self.count} differing element(s) in this interval's results)"
        )


class MatmulCheck:
    """One deterministic matmul, run again and again and compared bit for bit with its first result."""

    _HOST_START = {"count": 0, "first_iteration": -1, "first_index": -1, "got": 0, "expected": 0}

    def __init__(self, device, plan: BurnPlan, corrupt_from: Optional[int] = None):
        self.device = device
        self.shape = plan.shape
        target = device.torch_device
        torch_dtype = getattr(torch, plan.dtype.torch_name)
        generator = torch.Generator(device="cpu").manual_seed(plan.seed)
        shape = plan.shape
        self.a = torch.randn(shape.m, shape.k, generator=generator).to(torch_dtype).to(target)
        self.b = torch.randn(shape.n, shape.k, generator=generator).to(torch_dtype).to(target).t()
        self.c = torch.empty(shape.m, shape.n, dtype=torch_dtype, device=target)
        bits_dtype = _BITS[self.c.element_size()]
        self.bits = self.c.view(bits_dtype).view(-1)
        self.reference = torch.empty_like(self.bits)
        self.mask = torch.empty(self.bits.numel(), dtype=torch.bool, device=target)
        self.flops = 2 * shape.m * shape.n * shape.k
        self.iteration = 0  # the number of the next result (0: the reference)
        self.corrupt_from = corrupt_from
        self.corrupt_index = self.bits.numel() // 3  # the element the fault flips (bit 0)
        self.digest: Optional[str] = None
        self.block_digests: list = []
        # where the comparisons keep their findings until `take`: Python numbers on the CPU, tensors on a device
        self._on_host = dict(self._HOST_START) if device.type == "cpu" else None
        self._on_device = {
            "iteration": torch.zeros((), dtype=torch.int64, device=target),
            "count": torch.zeros((), dtype=torch.int64, device=target),
            "first_iteration": torch.full((), -1, dtype=torch.int64, device=target),
            "first_index": torch.full((), -1, dtype=torch.int64, device=target),
            "got": torch.zeros((), dtype=bits_dtype, device=target),
            "expected": torch.zeros((), dtype=bits_dtype, device=target),
        }

    def _compute(self) -> None:
        torch.mm(self.a, self.b, out=self.c)
        if self.corrupt_from is not None and self.iteration >= self.corrupt_from:
            self.bits[self.corrupt_index : self.corrupt_index + 1].bitwise_xor_(1)

    def make_reference(self) -> str:
        """Iteration 0: keep its result, and its sha256 (and per-block digests) for the siblings."""
        self._compute()
        self.reference.copy_(self.bits)
        self.device.synchronize()
        data = self.reference.cpu().numpy().tobytes()
        self.digest = hashlib.sha256(data).hexdigest()
        elements, width = self.reference.numel(), self.reference.element_size()
        blocks = min(DIGEST_BLOCKS, elements)
        self.block_digests = []
        for index in range(blocks):
            first, last = block_bounds(elements, blocks, index)
            self.block_digests.append(hashlib.sha256(data[first * width : last * width]).hexdigest()[:16])
        self.iteration = 1
        self._on_device["iteration"].fill_(1)
        return self.digest

    def run(self, iterations: int) -> None:
        """Queue `iterations` matmuls, each compared with the reference on the device (no synchronization)."""
        for _ in range(iterations):
            self._compute()
            self._compare()
            self.iteration += 1

    def _compare(self) -> None:
        if self._on_host is not None:
            self._compare_on_host()
            return
        d = self._on_device
        torch.ne(self.bits, self.reference, out=self.mask)
        count = self.mask.sum()
        index = self.mask.view(torch.uint8).argmax()  # the first differing element (0 when none differs)
        new = (count > 0) & (d["first_iteration"] < 0)
        d["first_iteration"].copy_(torch.where(new, d["iteration"], d["first_iteration"]))
        d["first_index"].copy_(torch.where(new, index, d["first_index"]))
        at = index.view(1)
        d["got"].copy_(torch.where(new, self.bits.index_select(0, at)[0], d["got"]))
        d["expected"].copy_(torch.where(new, self.reference.index_select(0, at)[0], d["expected"]))
        d["count"].add_(count)
        d["iteration"].add_(1)

    def _compare_on_host(self) -> None:
        """The CPU: synchronizing is free, so compare whole and look closer only when something differs."""
        if torch.equal(self.bits, self.reference):
            return
        torch.ne(self.bits, self.reference, out=self.mask)
        host = self._on_host
        host["count"] += int(self.mask.sum())
        if host["first_iteration"] < 0:
            index = int(self.mask.view(torch.uint8).argmax())
            host.update(
                first_iteration=self.iteration,
                first_index=index,
                got=int(self.bits[index]),
                expected=int(self.reference[index]),
            )

    def take(self) -> Mismatches:
        """What the comparisons since the last `take` found (synchronizes), and start counting afresh."""
        if self._on_host is not None:
            host = self._on_host
            found = Mismatches(
                host["count"], host["first_iteration"], host["first_index"], host["got"], host["expected"]
            )
            self._on_host = dict(self._HOST_START)
            return found if found.count else Mismatches(0)
        self.device.synchronize()
        d = self._on_device
        found = Mismatches(
            int(d["count"]), int(d["first_iteration"]), int(d["first_index"]), int(d["got"]), int(d["expected"])
        )
        d["count"].zero_()
        d["first_iteration"].fill_(-1)
        d["first_index"].fill_(-1)
        return found if found.count else Mismatches(0)


@dataclass(frozen=True)
class PatternPass:
    """One pattern pass: bytes written and read back, words that came back wrong, the first of them."""

    bytes: int
    errors: int
    seconds: float
    first_offset_bytes: Optional[int] = None
    got: int = 0
    expected: int = 0

    def describe(self, number: int) -> str:
        return (
            f"memory pattern pass {number}: {self.errors} 32-bit word(s) of {self.bytes / 2**30:.3g} GiB read back "
            f"wrong; first bad element at byte offset {self.first_offset_bytes}: {hex_bits(self.got, 4)}, "
            f"expected {hex_bits(self.expected, 4)}"
        )


class PatternTest:
    """Write, read back and compare a buffer of `total_bytes` (int32 words, in chunks of `chunk_bytes`).

    Word i of chunk c in pass p holds i XOR key(p, c): every pass changes every bit of the buffer's
    pattern, and no two chunks hold the same. Chunks that cannot be allocated are left out (`bytes`)."""

    def __init__(self, device, total_bytes: int, chunk_bytes: int):
        self.device = device
        target = device.torch_device
        chunk_words = max(1, min(total_bytes, chunk_bytes) // 4)
        self.index = torch.arange(chunk_words, dtype=torch.int32, device=target)
        self.scratch = torch.empty_like(self.index)
        self.mask = torch.empty(chunk_words, dtype=torch.bool, device=target)
        self.chunks: list = []
        left = total_bytes // 4
        while left > 0:
            words = min(left, chunk_words)
            try:
                self.chunks.append(torch.empty(words, dtype=torch.int32, device=target))
            except (RuntimeError, MemoryError) as exc:
                if not device.is_oom(exc):
                    raise
                break
            left -= words

    @property
    def bytes(self) -> int:
        return 4 * sum(chunk.numel() for chunk in self.chunks)

    @staticmethod
    def key(pass_number: int, chunk_number: int) -> int:
        base = PATTERN_KEYS[pass_number % len(PATTERN_KEYS)]
        return _int32(base ^ ((chunk_number * 0x9E3779B1) & 0xFFFFFFFF))

    def write(self, pass_number: int) -> None:
        for number, chunk in enumerate(self.chunks):
            torch.bitwise_xor(self.index[: chunk.numel()], self.key(pass_number, number), out=chunk)

    def _bad(self, pass_number: int, number: int, chunk) -> "torch.Tensor":
        words = chunk.numel()
        torch.bitwise_xor(chunk, self.key(pass_number, number), out=self.scratch[:words])
        return torch.ne(self.scratch[:words], self.index[:words], out=self.mask[:words])

    def check(self, pass_number: int) -> tuple:
        """(wrong words, first byte offset, got, expected) after `write(pass_number)`."""
        total = torch.zeros((), dtype=torch.int64, device=self.device.torch_device)
        for number, chunk in enumerate(self.chunks):
            total.add_(self._bad(pass_number, number, chunk).sum())
        errors = int(total)
        if not errors:
            return 0, None, 0, 0
        offset = 0
        for number, chunk in enumerate(self.chunks):
            bad = self._bad(pass_number, number, chunk)
            if bool(bad.any()):
                word = int(bad.view(torch.uint8).argmax())
                key = self.key(pass_number, number)
                return errors, offset + 4 * word, int(chunk[word]), int(self.index[word]) ^ key
            offset += 4 * chunk.numel()
        return errors, None, 0, 0

    def run(self, pass_number: int) -> PatternPass:
        start = time.perf_counter()
        self.write(pass_number)
        self.device.synchronize()
        errors, offset, got, expected = self.check(pass_number)
        return PatternPass(self.bytes, errors, time.perf_counter() - start, offset, got, expected)


def pattern_bytes_for(plan: BurnPlan, device) -> int:
    """The pattern test's size: the plan's, or PATTERN_FRACTION of the free memory less the test's own scratch."""
    if plan.pattern_bytes is not None:
        return plan.pattern_bytes
    free = device.free_memory_bytes() or 0
    chunk = PATTERN_CHUNK_BYTES["accelerator"]
    return max(0, int(PATTERN_FRACTION * free) - 2 * chunk)


def make_pattern(plan: BurnPlan, device) -> Optional[PatternTest]:
    size = pattern_bytes_for(plan, device)
    if size <= 0:
        return None
    chunk = PATTERN_CHUNK_BYTES["cpu" if device.type == "cpu" else "accelerator"]
    test = PatternTest(device, size, chunk)
    return test if test.chunks else None


# ---------------------------------------------------------------------------------------------
# siblings: the other GPUs of the run


class Siblings:
    """This device's first result and TFLOPS shared with the run's other burn-in processes (`exchange`),
    and the verdict on whether its result is the majority's."""

    def __init__(self, exchange, host: str, device_record: dict, key: dict):
        self.exchange = exchange
        self.label = device_label(host, device_record)
        self.entry = {
            "label": self.label,
            "host": host,
            "device": device_record,
            "key": key,
            "state": "started",
            "pid": exchange.pid if exchange is not None else os.getpid(),
            "digest": None,
            "blocks": [],
            "tflops": [],
        }
        self.reported: set = set()

    def publish(self, **changes) -> None:
        self.entry.update(changes)
        if self.exchange is not None:
            try:
                self.exchange.publish(self.entry)
            except OSError:
                pass

    @staticmethod
    def who(entry: dict) -> str:
        """How a sibling is named: its label (`node01 cuda:3`); processes on the CPU also by their pid."""
        if entry.get("device", {}).get("type") == "cpu" and entry.get("pid") is not None:
            return f"{entry['label']} (pid {entry['pid']})"
        return entry["label"]

    def others(self) -> list:
        if self.exchange is None:
            return []
        return [e for e in self.exchange.others() if e.get("key") == self.entry["key"]]

    def wait_for_started(self, stop, wait_s: float = SIBLING_WAIT_S, clock=time.monotonic) -> None:
        """Wait (bounded) until every sibling that has started has its first result."""
        deadline = clock() + wait_s
        while clock() < deadline and not stop.is_set():
            if all(e.get("digest") for e in self.others()):
                return
            stop.wait(0.2)

    def odd(self) -> Optional[str]:
        """Why this device's first result is not the majority's (once per new disagreement), else None."""
        others = [e for e in self.others() if e.get("digest")]
        digests = {self.who(self.entry): self.entry["digest"], **{self.who(e): e["digest"] for e in others}}
        found = odd_ones(digests).get(self.who(self.entry))
        differing = tuple(sorted(self.who(e) for e in others if e["digest"] != self.entry["digest"]))
        if found is None or differing in self.reported:
            return None
        self.reported.add(differing)
        return self._words(found, others, differing)

    def _words(self, found: OddOne, others: list, differing: tuple) -> str:
        name = self.entry["device"].get("name") or "?"
        if found.ambiguous:
            head = (
                f"the first result differs bit for bit from {', '.join(differing)} ({found.agree} vs "
                f"{found.majority} GPU(s) of {name} agree: cannot tell which is wrong)"
            )
        else:
            head = (
                f"the first result differs bit for bit from the majority of the GPUs of {name} running the "
                f"same workload ({found.agree} agree with it, {found.majority} with each other)"
            )
        theirs = next(e for e in others if self.who(e) == differing[0])
        block = first_differing_block(self.entry["blocks"], theirs.get("blocks") or [])
        if block is None:
            return f"iteration 0: {head}"
        elements = self.entry["elements"]
        first, last = block_bounds(elements, len(self.entry["blocks"]), block)
        return f"iteration 0: {head}; the first difference is in elements [{first}, {last}) of the result"

    def slow(self) -> dict:
        """label -> fraction below the siblings' median TFLOPS, for the slow ones (this device included)."""
        from .plan import slow_ones

        figures = {self.who(e): median(e["tflops"]) for e in self.others() if e.get("tflops")}
        if self.entry["tflops"]:
            figures[self.who(self.entry)] = median(self.entry["tflops"])
        return slow_ones(figures)


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class Parts:
    """What a burn-in runs on: the device, the matmul check, the pattern test, the counters, the siblings."""

    device: object
    plan: BurnPlan
    check: MatmulCheck
    pattern: Optional[PatternTest]
    counters: object  # device_errors.ErrorCounters (or a fake with read(), describe())
    siblings: Siblings
    params: dict  # params every record carries


def interval_params(parts: Parts, interval: int) -> dict:
    shape = parts.plan.shape
    return {
        "dtype": parts.plan.dtype.name,
        "interval": interval,
        "m": shape.m,
        "n": shape.n,
        "k": shape.k,
        **parts.params,
    }


def _compute_phase(parts: Parts, until: float, stop, chunk: int, clock) -> tuple:
    """Matmuls back to back until `until` (at least one chunk), synchronizing every chunk (about CHUNK_S of
    work: the chunk doubles until it is, and shrinks to fit the time left); returns (iterations, seconds,
    the chunk to start the next phase with)."""
    device, check = parts.device, parts.check
    first = check.iteration
    start, end = device.event(), device.event()
    start.record()
    steady = run = chunk
    while True:
        t0 = clock()
        check.run(run)
        device.synchronize()
        spent = clock() - t0
        left = until - clock()
        if left <= 0 or stop.is_set():
            break
        per_iteration = max(spent / run, 1e-9)
        if run == steady and spent < CHUNK_S / 2:
            steady *= 2
        run = max(1, min(steady, int(left / per_iteration)))
    end.record()
    device.synchronize()
    return check.iteration - first, start.elapsed_s(end), steady


def burn(parts: Parts, stop, clock: Callable[[], float] = time.monotonic) -> Iterator[Result]:
    """One Result per interval (see the module docstring); an interruption yields the interval so far
    (flag `partial`) and ends."""
    plan, check = parts.plan, parts.check
    digest = check.make_reference()
    parts.siblings.publish(digest=digest, blocks=check.block_digests, elements=check.bits.numel(), state="running")
    counts_before = parts.counters.read()
    start = clock()
    chunk = 1
    for interval in range(1, plan.intervals + 1):
        until = start + min(interval * plan.interval_s, plan.duration_s)
        first_iteration = check.iteration
        problems, flags, metrics = [], [], {}
        partial = False
        try:
            iterations, seconds, chunk = _compute_phase(parts, until, stop, chunk, clock)
            found = check.take()
            metrics.update(
                tflops=iterations * check.flops / seconds / 1e12 if seconds > 0 else None,
                iterations=iterations,
                mismatches=found.count,
                time_s=seconds,
            )
            if found.count:
                problems.append(found.describe(check))
                flags += ["check_failed", "bitwise_mismatch"]
            if parts.pattern is not None and not stop.is_set():
                result = parts.pattern.run(interval - 1)
                metrics.update(
                    pattern_bytes=result.bytes,
                    pattern_errors=result.errors,
                    pattern_gbps=2 * result.bytes / result.seconds / 1e9 if result.seconds > 0 else None,
                )
                if result.errors:
                    problems.append(result.describe(interval))
                    flags += ["check_failed", "pattern_error"]
        except KeyboardInterrupt:
            partial = True
            found = check.take()
            iterations = check.iteration - first_iteration
            metrics.setdefault("iterations", iterations)
            metrics.setdefault("mismatches", found.count)
            metrics.setdefault("tflops", None)
            if found.count:
                problems.append(found.describe(check))
                flags += ["check_failed", "bitwise_mismatch"]
        counts_now = parts.counters.read()
        grew = counter_growth(counts_before, counts_now)
        counts_before = counts_now
        if grew:
            xids = getattr(parts.counters, "xid_codes", [])
            said = ", ".join(f"{name} +{delta}" for name, delta in sorted(grew.items()))
            problems.append(
                f"error counters grew during iterations {first_iteration}-{check.iteration - 1}: {said}"
                + (f" (XID {', '.join(map(str, xids[-8:]))})" if "xid_events" in grew and xids else "")
            )
            flags.append("error_counter_growth")
        tflops_so_far = parts.siblings.entry["tflops"] + ([metrics["tflops"]] if metrics.get("tflops") else [])
        last = interval == plan.intervals or partial or stop.is_set()
        parts.siblings.publish(tflops=tflops_so_far, state="done" if last else "running")
        if last and not partial and not stop.is_set():
            parts.siblings.wait_for_started(stop)
        odd = parts.siblings.odd()
        if odd:
            problems.append(odd)
            flags += ["check_failed", "differs_from_siblings"]
        metrics.update(
            first_iteration=first_iteration,
            last_iteration=check.iteration - 1,
            elapsed_s=clock() - start,
            counter_growth=sum(grew.values()),
            error_counters=counts_now,
            result_sha256=check.digest,
        )
        if partial:
            flags.append("partial")
        params = interval_params(parts, interval)
        flags = list(dict.fromkeys(flags))
        if problems:
            where = f"{parts.siblings.label} ({parts.device.info.name})"
            yield Result(
                params=params,
                metrics=metrics,
                status=Status.ERROR,
                flags=flags,
                error=f"{where}: " + "; ".join(problems),
            )
        else:
            yield Result(params=params, metrics=metrics, flags=flags)
        if last:
            return


def describe_plan(plan: BurnPlan, pattern: Optional[PatternTest], counters) -> str:
    pattern_text = f"pattern test over {pattern.bytes / 2**30:.3g} GiB" if pattern else "no pattern test"
    counters_text = (
        f"error counters: {counters.backend}"
        if not getattr(counters, "why", None)
        else f"no error counters ({counters.why})"
    )
    return (
        f"{plan.dtype.name} {plan.shape} for {format_duration(plan.duration_s)} in {plan.intervals} interval(s); "
        f"{pattern_text}; {counters_text}"
    )
