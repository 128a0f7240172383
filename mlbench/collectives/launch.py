"""Running the collectives probe under torchrun from a plain command line (no torch here).

`mlbench collectives --nproc-per-node N` outside torchrun starts `python -m torch.distributed.run
--standalone --nproc-per-node N -m mlbench.collectives` with the same options (`options.to_argv()`,
so every option is forwarded) and an agreed run id. Rank 0 leaves its exit code in a status file
for this parent (torchrun's own exit code only says that some rank failed).

Ctrl-C: torchrun runs in its own session and gets exactly one SIGINT, from this parent, which it
passes on to the ranks; the ranks stop within a few seconds (see `dist.Watchdog`). If torchrun is
still there after `INTERRUPT_WAIT_S`, it gets SIGTERM, then SIGKILL; ranks notice their launcher is
gone and end too. torchrun also gets SIGTERM if this parent dies (Linux: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Optional

from ..exitcodes import FAILED, INCOMPLETE, OK

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
STATUS_FILE_VAR = "MLBENCH_COLLECTIVES_STATUS_FILE"  # rank 0 leaves its exit code here for a re-launching parent
INTERRUPT_WAIT_S = 5.0  # after forwarding SIGINT: the ranks' grace (dist.INTERRUPT_GRACE_S) and their teardown
TERMINATE_WAIT_S = 1.5  # after SIGTERM, before SIGKILL
PR_SET_PDEATHSIG = 1


def under_torchrun(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return all(name in environ for name in TORCHRUN_VARS)


def leave_status(code: int) -> None:
    """Rank 0: write the exit code where a re-launching parent reads it (no-op without one)."""
    path = os.environ.get(STATUS_FILE_VAR)
    if path:
        try:
            with open(path, "w") as f:
                f.write(f"{code}\n")
        except OSError:
            pass


def torchrun_command(options, nproc: int, run_id: str, module: str = "mlbench.collectives") -> list:
    """The torchrun command line that runs `options` (every forwarded option, the agreed run id) on N ranks."""
    argv = options.replace(run_id=run_id).to_argv()
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--standalone",
        "-m",
        module,
        *argv,
    ]


def relaunch(options, nproc: int, module: str = "mlbench.collectives") -> int:
    """Run `options` again under a real torchrun with `nproc` ranks of `module`; return rank 0's exit code."""
    from ..harness import interruptible
    from ..records import new_run_id

    run_id = options.run_id or new_run_id()
    fd, status_path = tempfile.mkstemp(prefix="mlbench-collectives-", suffix=".status")
    os.close(fd)
    env = dict(os.environ, MLBENCH_RUN_ID=run_id, **{STATUS_FILE_VAR: status_path})
    interrupted = False
    try:
        with interruptible(threading.Event()):
            child = subprocess.Popen(
                torchrun_command(options, nproc, run_id, module),
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent_hook(),
            )
            try:
                child.wait()
            except KeyboardInterrupt:
                interrupted = True
                stop_launcher(child)
        status = _read_status(status_path)
    finally:
        try:
            os.unlink(status_path)
        except OSError:
            pass
    return _exit_code(child.returncode, status, interrupted)


def stop_launcher(
    child: subprocess.Popen, interrupt_wait_s: float = INTERRUPT_WAIT_S, terminate_wait_s: float = TERMINATE_WAIT_S
) -> None:
    """SIGINT to torchrun (it passes it on to the ranks), then SIGTERM, then SIGKILL, each after a bounded wait."""
    for sig, wait_s in ((signal.SIGINT, interrupt_wait_s), (signal.SIGTERM, terminate_wait_s), (signal.SIGKILL, None)):
        if child.poll() is not None:
            return
        try:
            child.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _exit_code(returncode: Optional[int], status: Optional[int], interrupted: bool) -> int:
    if status is not None:
        return status
    if returncode == 0:
        return OK
    return INCOMPLETE if interrupted or returncode == INCOMPLETE else FAILED


def _read_status(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def die_with_parent_hook():
    """A `preexec_fn` that makes the child get SIGTERM when this process dies (Linux), else None.

    libc is looked up here, in the parent: the hook itself only calls prctl (it runs between fork and exec).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will signal
            os.kill(os.getpid(), signal.SIGTERM)

    return hook
