"""Running an acceptance plan: each step's probe processes, the run's state, resume, cluster mode.

The run directory holds `plan.json` (what was asked), `state.json` (each step: pending, done,
failed or incomplete, with exit codes and seconds), `logs/<step>.log` (each process's output) and
the probes' `.jsonl` files. A step is re-run on `--resume` unless it is done or failed; the partial
records of an interrupted step are moved aside (`*.jsonl.incomplete`) first, so no measurement is
counted twice and none is lost.

Cluster mode: `mlbench run` launched by torchrun with one process per node (WORLD_SIZE = nodes)
coordinates over a gloo group: rank 0 chooses the run id, every node runs its node-local steps,
all nodes enter the collectives step together (a nested torchrun across the nodes), then each node
sends its records to rank 0, which writes the report for the whole cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

from ..records import write_json
from .plan import AcceptancePlan, Step

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class StepState(str, Enum):
    """Where a step of the run stands (`state.json`): not the probes' record statuses, nor the report's
    verdicts, nor exit codes."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # its processes ran and one exited non-zero: not re-run on --resume
    INCOMPLETE = "incomplete"  # interrupted: re-run on --resume, its partial records set aside

    def __str__(self) -> str:
        return self.value


@dataclass
class StepOutcome:
    name: str
    status: StepState
    exit_codes: list = field(default_factory=list)
    seconds: float = 0.0
    logs: list = field(default_factory=list)


class RunState:
    """`state.json`: the status of every step, rewritten after each change."""

    def __init__(self, run_dir: Path, plan: AcceptancePlan):
        self.path = Path(run_dir) / "state.json"
        self.steps = {step.name: {"status": StepState.PENDING} for step in plan.steps}
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text()).get("steps", {})
                for name, entry in saved.items():
                    if name in self.steps:
                        self.steps[name] = entry
            except (OSError, ValueError):
                pass

    def status(self, name: str) -> str:
        return StepState(self.steps.get(name, {}).get("status", StepState.PENDING))

    def set(self, outcome: StepOutcome) -> None:
        self.steps[outcome.name] = {
            "status": outcome.status,
            "exit_codes": outcome.exit_codes,
            "seconds": round(outcome.seconds, 2),
            "logs": outcome.logs,
        }
        write_json(self.path, {"steps": self.steps})


def _child_env(plan: AcceptancePlan) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MLBENCH_RUN_ID"] = plan.run_id
    env["MLBENCH_HOST"] = plan.node.host
    # the node's own torchrun variables must not leak into the probes (they would think they are ranks)
    for name in (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "ROLE_RANK",
        "ROLE_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TORCHELASTIC_RUN_ID",
        "TORCHELASTIC_RESTART_COUNT",
        "TORCHELASTIC_MAX_RESTARTS",
        "GROUP_WORLD_SIZE",
        "ROLE_NAME",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING",
        "TORCHELASTIC_USE_AGENT_STORE",
    ):
        env.pop(name, None)
    return env


def _set_aside_partial(run_dir: Path, step: Step) -> None:
    for out in step.outputs():
        path = run_dir / out
        if path.exists():
            target = path.with_name(path.name + ".incomplete")
            n = 1
            while target.exists():
                n += 1
                target = path.with_name(f"{path.name}.incomplete{n}")
            os.replace(path, target)


def run_step(step: Step, plan: AcceptancePlan, run_dir: Path, grace_s: float = 8.0) -> StepOutcome:
    """Run the step's processes (together, or one after another when the step says so) and wait for
    them; Ctrl-C is passed on to the running ones (each exits 3, keeping its records), which get
    `grace_s` to finish before they are killed (below the 10 s a `timeout --kill-after` allows)."""
    logs_dir = plan.node_dir(run_dir) / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    env = _child_env(plan)
    started = time.monotonic()
    children, logs, files, codes = [], [], [], []

    def start(i, process):
        log = logs_dir / (f"{step.name}.log" if len(step.processes) == 1 else f"{step.name}-{i}.log")
        handle = open(log, "w")
        files.append(handle)
        logs.append(str(log.relative_to(run_dir)))
        child = subprocess.Popen(
            [sys.executable, "-m", process.module, *process.args],
            cwd=run_dir,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        children.append(child)
        return child

    interrupted = False
    try:
        if step.concurrent:
            for i, process in enumerate(step.processes):
                start(i, process)
            codes = [child.wait() for child in children]
        else:
            for i, process in enumerate(step.processes):
                codes.append(start(i, process).wait())
    except KeyboardInterrupt:
        interrupted = True
        running = [child for child in children if child.poll() is None]
        for child in running:
            _signal_group(child, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        for child in running:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait()
        codes = [child.returncode for child in children]
    finally:
        for handle in files:
            handle.close()
    if interrupted or any(code == 3 or code < 0 for code in codes):
        status = StepState.INCOMPLETE
    elif all(code == 0 for code in codes):
        status = StepState.DONE
    else:
        status = StepState.FAILED
    outcome = StepOutcome(step.name, status, codes, time.monotonic() - started, logs)
    if interrupted:
        raise StepInterrupted(outcome)
    return outcome


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class StepInterrupted(KeyboardInterrupt):
    def __init__(self, outcome: StepOutcome):
        super().__init__(outcome.name)
        self.outcome = outcome


@dataclass
class RunOutcome:
    steps: list
    interrupted: bool


def execute(
    plan: AcceptancePlan,
    run_dir: Path,
    on_event: Callable[[str, Step, Optional[StepOutcome], dict], None],
    coordinator=None,
) -> RunOutcome:
    """Run every step not yet done; `on_event(kind, step, outcome, info)` reports progress.

    kind: "start", "end", "skip". With a coordinator (cluster mode), all nodes meet before each
    cluster-wide step.
    """
    state = RunState(plan.node_dir(run_dir), plan)
    outcomes = []
    started = time.monotonic()
    remaining = plan.estimate_s()
    for number, step in enumerate(plan.steps, 1):
        info = {
            "number": number,
            "total": len(plan.steps),
            "left_s": remaining,
            "elapsed_s": time.monotonic() - started,
        }
        if state.status(step.name) in (StepState.DONE, StepState.FAILED):
            on_event("skip", step, None, info)
            remaining -= step.estimate_s
            continue
        if coordinator is not None and not step.node_local:
            coordinator.barrier()
        _set_aside_partial(run_dir, step)
        on_event("start", step, None, info)
        try:
            outcome = run_step(step, plan, run_dir)
        except StepInterrupted as stop:
            state.set(stop.outcome)
            outcomes.append(stop.outcome)
            on_event("end", step, stop.outcome, info)
            return RunOutcome(outcomes, interrupted=True)
        state.set(outcome)
        outcomes.append(outcome)
        remaining -= step.estimate_s
        on_event("end", step, outcome, info)
    return RunOutcome(outcomes, interrupted=False)
