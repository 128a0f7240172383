"""Records: mlbench's JSON Lines schema (docs/reference.md), written one flushed line per measurement.

    {"schema": "mlbench/1", "probe": ..., "run_id": ..., "time": ..., "host": ..., "rank": 0,
     "world_size": 1, "device": {"type", "name", "index"}, "params": {...}, "metrics": {...},
     "status": "ok" | "skipped" | "error", "error": null | "why"}

Extensions (readers ignore fields they do not know): `flags` (a list of words such as "above_spec_peak") and
`raw` (raw samples, e.g. {"time_ms": [...]}). No torch here: the reporter reads records too.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Iterable, Iterator, Optional

from . import SCHEMA
from .exitcodes import UsageError


class Status(str, Enum):
    """A record's status: measured, could not run here (why in `error`), or ran and failed."""

    OK = "ok"
    SKIPPED = "skipped"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


STATUSES = tuple(status.value for status in Status)
SCHEMA_RE = re.compile(r"^mlbench/1(\.\d+)?$")  # readers accept any 1.x and ignore unknown fields
REQUIRED_KEYS = {
    "mamf": (("m", "n", "k", "dtype"), ("tflops", "tflops_mean", "tflops_max", "time_ms")),
    "membw": (("op", "bytes"), ("gbps",)),
    "collectives": (
        ("op", "bytes", "count", "dtype", "world_size", "backend", "in_place"),
        ("time_us", "algbw_gbps", "busbw_gbps", "errors"),
    ),
    "diskio": (
        ("mode", "block_size", "jobs", "direct", "file_size"),
        ("gbps", "iops", "lat_us_p50", "lat_us_p99", "lat_us_p999"),
    ),
    "fabric": (("view", "op", "bytes", "nodes", "group_size"), ("busbw_gbps", "algbw_gbps", "time_us", "errors")),
    "burn": (("dtype", "interval"), ("tflops", "iterations", "mismatches")),
    "train": (
        ("model", "params_count", "seq_len", "global_batch_tokens", "parallel", "world_size", "dtype"),
        ("tokens_per_s", "tflops_per_gpu", "mfu", "step_ms", "loss_first", "loss_last"),
    ),
}
_TOP_LEVEL = (
    "schema",
    "probe",
    "run_id",
    "time",
    "host",
    "rank",
    "world_size",
    "device",
    "params",
    "metrics",
    "status",
    "error",
)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hostname() -> str:
    """This node's short host name; MLBENCH_HOST overrides it (simulated nodes on one machine)."""
    return os.environ.get("MLBENCH_HOST") or socket.gethostname().split(".")[0] or "localhost"


def new_run_id() -> str:
    """`20261126T185500Z-node01-3fa2`: sortable, says where, unique enough. MLBENCH_RUN_ID overrides."""
    if os.environ.get("MLBENCH_RUN_ID"):
        return os.environ["MLBENCH_RUN_ID"]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{hostname()}-{secrets.token_hex(2)}"


def default_out(probe: str, run_id: str, root: str | os.PathLike = "results") -> Path:
    return Path(root) / run_id / f"{probe}.jsonl"


@dataclass
class Result:
    """What a probe's measuring code returns for one point: the record without its envelope."""

    params: dict
    metrics: dict = field(default_factory=dict)
    status: Status = Status.OK
    error: Optional[str] = None
    flags: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @classmethod
    def skipped(cls, params: dict, why: str) -> "Result":
        return cls(params=params, status=Status.SKIPPED, error=why)

    @classmethod
    def failed(cls, params: dict, why: str) -> "Result":
        return cls(params=params, status=Status.ERROR, error=why)

    @classmethod
    def check_failed(cls, params: dict, metrics: dict, why: str, flags=(), raw=None) -> "Result":
        """A measurement whose result was wrong: its figures are kept, the status is `error`, flagged."""
        return cls(params, metrics, Status.ERROR, why, [*flags, "check_failed"], raw or {})

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


def make_record(
    probe: str,
    run_id: str,
    device: dict,
    params: dict,
    metrics: Optional[dict] = None,
    status: str = "ok",
    error: Optional[str] = None,
    rank: int = 0,
    world_size: int = 1,
    **extra,
) -> dict:
    """A record in the mlbench/1 schema; `extra` adds extension fields (flags, raw, ...)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} not one of {STATUSES}")
    status = Status(status).value
    record = {
        "schema": SCHEMA,
        "probe": probe,
        "run_id": run_id,
        "time": utc_now(),
        "host": hostname(),
        "rank": rank,
        "world_size": world_size,
        "device": device,
        "params": dict(params),
        "metrics": dict(metrics or {}),
        "status": status,
        "error": error,
    }
    record.update(extra)
    return record


def _clean(value):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RecordWriter:
    """Appends records to a `.jsonl` file, one flushed line each, so an interrupted run keeps them."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None
        self.count = 0

    def open(self) -> "RecordWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def write(self, record: dict) -> None:
        if self._file is None:
            self.open()
        self._file.write(json.dumps(_clean(record), separators=(",", ":"), sort_keys=False) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "RecordWriter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def check_writable(path: str | os.PathLike) -> Path:
    """Fail with a UsageError (exit 2) before measuring if `path` cannot be appended to.

    Creates nothing: walks up to the first existing ancestor and checks it is a writable directory.
    """
    path = Path(path)
    if path.exists():
        if path.is_dir():
            raise UsageError(f"--out {path}: is a directory, expected a .jsonl file")
        if not os.access(path, os.W_OK):
            raise UsageError(f"--out {path}: not writable")
        return path
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor == ancestor.parent:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"--out {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: cannot create files under {ancestor} (permission denied)")
    return path


def validate(record: dict) -> list[str]:
    """Schema problems of one record (empty when it conforms)."""
    problems = [f"missing key {key!r}" for key in _TOP_LEVEL if key not in record]
    if problems:
        return problems
    if not isinstance(record["schema"], str) or not SCHEMA_RE.match(record["schema"]):
        problems.append(f"schema {record['schema']!r} is not {SCHEMA!r} (or a later mlbench/1.x)")
    if record["status"] not in STATUSES:
        problems.append(f"status {record['status']!r} not one of {STATUSES}")
    if record["status"] != "ok" and not record["error"]:
        problems.append(f"status {record['status']!r} needs an error message")
    device = record["device"]
    if not isinstance(device, dict) or not {"type", "name", "index"} <= set(device):
        problems.append("device must have type, name and index")
    if not isinstance(record["rank"], int) or not isinstance(record["world_size"], int):
        problems.append("rank and world_size must be integers")
    required = REQUIRED_KEYS.get(record["probe"])
    if required is not None:
        params_keys, metrics_keys = required
        problems += [f"params lacks {k!r}" for k in params_keys if k not in record["params"]]
        if record["status"] == "ok":
            problems += [f"metrics lacks {k!r}" for k in metrics_keys if k not in record["metrics"]]
    return problems


def read_records(path: str | os.PathLike, on_bad_line=None) -> Iterator[dict]:
    """Records of one `.jsonl` file; a line that is not JSON goes to `on_bad_line(path, lineno, text)`."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if on_bad_line is not None:
                    on_bad_line(path, lineno, line)
                continue
            if isinstance(record, dict):
                yield record
            elif on_bad_line is not None:
                on_bad_line(path, lineno, line)


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Write a small JSON file atomically (temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(_clean(obj), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def iter_jsonl_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The `.jsonl` files named, or found (recursively) in the directories named."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(p.rglob("*.jsonl"))
        else:
            found.append(p)
    return found
