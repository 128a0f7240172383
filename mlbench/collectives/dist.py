"""Process-group set-up for the collectives probe, and what keeps a broken job from hanging.

- `under_torchrun()`: whether torchrun (or Slurm + torchrun) started this process.
- `setup(device_spec, backend, timeout_s)`: picks the backend (NCCL/RCCL on GPUs, each rank on its
  LOCAL_RANK device; gloo on the CPU), initialises the default process group with the timeout
  (outside torchrun: a one-rank group on a local store) and gathers the rank layout.
- `Watchdog`: a thread that ends this process when no progress was reported for `timeout_s`
  (gloo can block forever on a stopped peer), when SIGTERM arrives (torchrun tearing the job down),
  when the launcher that started it is gone, or when a SIGINT was not honoured within
  `INTERRUPT_GRACE_S` (a rank blocked in a collective whose peers already left), each with one line
  naming the op, size and rank. Records are flushed line by line, so what was written stays.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist

from ..device import Device, is_rocm, nccl_version, parse_device_spec, resolve
from ..exitcodes import INCOMPLETE, UsageError
from ..records import hostname
from .launch import TORCHRUN_VARS, under_torchrun  # noqa: F401 - torch-free, re-exported

INTERRUPT_GRACE_S = 3.0  # after SIGINT: time to stop cleanly (records kept, summary printed) before exiting anyway


@dataclass(frozen=True)
class Layout:
    """Where the ranks are: `nodes` hosts; `ranks_per_node` is a number, or "a+b+..." when uneven."""

    rank: int
    local_rank: int
    world_size: int
    nodes: int
    ranks_per_node: str
    hosts: tuple

    @property
    def text(self) -> str:
        return f"{self.nodes}x{self.ranks_per_node}"


def node_key(environ=None) -> str:
    """What names this rank's node: the host, and torchrun's node rank (GROUP_RANK) when set, so
    two torchrun launches on one machine (scripts/two_nodes_local.sh) count as two nodes."""
    environ = os.environ if environ is None else environ
    group = environ.get("GROUP_RANK")
    return f"{hostname()}#{group}" if group is not None else hostname()


def layout_of(rank: int, local_rank: int, nodes: list) -> Layout:
    """The layout from every rank's node key (in rank order)."""
    per_node: dict = {}
    for node in nodes:
        per_node[node] = per_node.get(node, 0) + 1
    counts = list(per_node.values())
    ranks_per_node = str(counts[0]) if len(set(counts)) == 1 else "+".join(map(str, counts))
    return Layout(rank, local_rank, len(nodes), len(per_node), ranks_per_node, tuple(nodes))


@dataclass
class DistContext:
    device: Device
    backend: str
    backend_version: str
    layout: Layout
    single_process: bool  # not under torchrun: a one-rank group of our own

    @property
    def rank(self) -> int:
        return self.layout.rank

    @property
    def world_size(self) -> int:
        return self.layout.world_size

    def barrier(self) -> None:
        """All ranks meet; on GPUs also wait for the device so the next event starts clean."""
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.torch_device.index])
        else:
            dist.barrier()
        self.device.synchronize()

    def tensor_device(self) -> "torch.device":
        return self.device.torch_device

    def all_max(self, value: float) -> float:
        return self._reduce(value, dist.ReduceOp.MAX)

    def all_min(self, value: float) -> float:
        return self._reduce(value, dist.ReduceOp.MIN)

    def all_sum_int(self, value: int) -> int:
        t = torch.tensor([int(value)], dtype=torch.int64, device=self.tensor_device())
        dist.all_reduce(t)
        return int(t.item())

    def _reduce(self, value: float, op) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.tensor_device())
        dist.all_reduce(t, op=op)
        return float(t.item())

    def gather_floats(self, values: list) -> list:
        """Every rank's list (same length on all ranks) -> a list of lists, in rank order."""
        local = torch.tensor(values, dtype=torch.float64, device=self.tensor_device())
        out = torch.empty(self.world_size * len(values), dtype=torch.float64, device=self.tensor_device())
        gather_into_tensor(out, local)
        return out.view(self.world_size, len(values)).tolist()

    def broadcast_object(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


# torch >= 2.12 names the tensor-in/tensor-out collectives *_single; older ones *_tensor
gather_into_tensor = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
reduce_scatter_into_tensor = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def pick_backend(device_type: str, requested: str) -> str:
    if requested not in ("auto", "nccl", "gloo"):
        raise UsageError(f"bad --backend {requested!r}: choose auto, nccl or gloo")
    if device_type == "cpu":
        if requested == "nccl":
            raise UsageError("--backend nccl needs a GPU device (use --device cuda or --backend gloo)")
        return "gloo"
    if device_type == "cuda":
        return "nccl" if requested == "auto" else requested  # ROCm's torch maps "nccl" to RCCL
    raise UsageError(f"collectives on {device_type}: no supported backend here (use --device cpu for gloo)")


def backend_version(backend: str) -> str:
    if backend == "nccl":
        return f"{'rccl' if is_rocm() else 'nccl'} {nccl_version() or 'unknown'}"
    return f"gloo (torch {torch.__version__})"


def _rank_device_spec(spec: str, local_rank: int) -> str:
    """`cuda` without an index under torchrun means this rank's LOCAL_RANK device."""
    kind, index = parse_device_spec(spec)
    if kind in ("cuda", "xpu") and index is None:
        return f"{kind}:{local_rank}"
    return spec


def setup(device_spec: str, backend: str, timeout_s: float) -> DistContext:
    """Initialise the default process group (torchrun's env:// rendezvous, or one local rank)."""
    single = not under_torchrun()
    local_rank = 0 if single else int(os.environ["LOCAL_RANK"])
    device = resolve(_rank_device_spec(device_spec, local_rank))
    chosen = pick_backend(device.type, backend)
    if chosen == "gloo" and device.type != "cpu":
        device = resolve("cpu")  # gloo moves CPU tensors: measure the host path honestly
    kwargs = {"backend": chosen, "timeout": _dt.timedelta(seconds=timeout_s)}
    device.make_current()  # this rank's device: NCCL and allocations without an explicit device use it
    if chosen == "nccl":
        if "device_id" in inspect.signature(dist.init_process_group).parameters:
            kwargs["device_id"] = device.torch_device
    if single:
        kwargs.update(store=dist.HashStore(), rank=0, world_size=1)
    dist.init_process_group(**kwargs)
    rank = dist.get_rank()
    nodes = [None] * dist.get_world_size()
    dist.all_gather_object(nodes, node_key())
    return DistContext(device, chosen, backend_version(chosen), layout_of(rank, local_rank, nodes), single)


class Watchdog:
    """Ends the process when the job stops making progress, with a message naming what it was doing.

    `doing(text)` reports progress (and what is running now). One line goes to stderr and the
    process exits with `exit_code` (3: incomplete) via os._exit (a rank blocked inside a collective
    cannot be unwound politely) when: no progress came for `timeout_s`; SIGTERM arrived; the parent
    process (the launcher) is gone; or SIGINT arrived and the process is still there
    `interrupt_grace_s` later (SIGINT itself is left to the main thread's handler: a clean stop).
    """

    def __init__(
        self,
        timeout_s: float,
        who: str,
        on_exit: Optional[Callable[[int], None]] = None,
        exit_code: int = INCOMPLETE,
        poll_s: float = 0.2,
        interrupt_grace_s: float = INTERRUPT_GRACE_S,
        prog: str = "mlbench collectives",
    ):
        self.timeout_s = timeout_s
        self.who = who
        self.prog = prog  # the command named in the one line it writes
        self.on_exit = on_exit
        self.exit_code = exit_code
        self.poll_s = poll_s
        self.interrupt_grace_s = interrupt_grace_s
        self._what = "start-up"
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._pipe = None
        self._old_sigterm = None
        self._old_wakeup = -1
        self._parent_pid = os.getppid()
        self._interrupted_at: Optional[float] = None

    @property
    def interrupted(self) -> bool:
        """Whether SIGINT arrived since `start`."""
        return self._interrupted_at is not None

    def doing(self, what: str) -> None:
        self._what = what
        self._last = time.monotonic()

    def start(self) -> "Watchdog":
        """Start watching; must be called from the main thread (it installs the SIGTERM handler)."""
        self._parent_pid = os.getppid()
        threading.Thread(target=self._watch, name="mlbench-watchdog", daemon=True).start()
        # SIGTERM: a handler in the main thread would wait for a blocked collective to return, but
        # the wakeup fd is written at once by whichever thread takes the signal: a thread reads it
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._old_sigterm = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        self._old_wakeup = signal.set_wakeup_fd(write_fd)
        self._pipe = (read_fd, write_fd)
        threading.Thread(target=self._wait_signals, args=(read_fd,), name="mlbench-signals", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            signal.signal(signal.SIGTERM, self._old_sigterm)
            os.close(self._pipe[1])  # the reader sees end-of-file and returns
            self._pipe = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            now = time.monotonic()
            idle = now - self._last
            if idle > self.timeout_s:
                self.fire(
                    f"no progress for {idle:.0f}s (--timeout {self.timeout_s:g}): a rank died or stopped answering"
                )
            if os.getppid() != self._parent_pid:
                self.fire(f"the launcher (pid {self._parent_pid}) is gone")
            if self._interrupted_at is not None and now - self._interrupted_at > self.interrupt_grace_s:
                self.fire(f"interrupted, and still not stopped {self.interrupt_grace_s:g}s later")

    def _wait_signals(self, read_fd: int) -> None:
        try:
            while True:
                data = os.read(read_fd, 64)
                if not data:
                    return  # stopped
                if self._stop.is_set():
                    continue
                if signal.SIGTERM in data:
                    self.fire("terminated by SIGTERM (the launcher stopping the job)")
                if signal.SIGINT in data and self._interrupted_at is None:
                    self._interrupted_at = time.monotonic()
        finally:
            os.close(read_fd)

    def fire(self, why: str) -> None:
        """Say why and what was running (one line), run `on_exit`, and end the process."""
        try:
            sys.stderr.write(
                f"{self.prog}: error: {self.who}: {why}, during {self._what}; records written so far are kept\n"
            )
            sys.stderr.flush()
            if self.on_exit is not None:
                self.on_exit(self.exit_code)
        finally:
            os._exit(self.exit_code)


PEER_WAIT_S = 1.0  # a collective failed: wait this long for our own interruption before blaming a peer


def guard_peers(results, ctx: "DistContext", watchdog: "Watchdog", stop: threading.Event):
    """`results`, where a collective that fails because a peer died ends this rank with one line.

    A failure that comes with (or just before) our own interruption is the interruption: the peers
    got the same signal and left first. A single process has no peers: its error is raised as is.
    """
    try:
        yield from results
    except Exception as exc:  # noqa: BLE001 - a peer that died: one line naming what ran
        if ctx.single_process:
            raise
        if stop.wait(PEER_WAIT_S) or watchdog.interrupted:
            raise KeyboardInterrupt from None
        if os.environ.get("MLBENCH_DEBUG"):
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        text = str(exc).strip()
        watchdog.fire(f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}")
