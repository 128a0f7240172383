"""Records -> one tidy pandas DataFrame (a row per record), tolerant of what it does not know.

Columns: `probe, run_id, time, host, rank, world_size, device_type, device_name, device_index,
status, error, flags, file`, then every params key as `params.<key>` and every metrics key as
`metrics.<key>` (the pandas `json_normalize` naming), and the `telemetry` object's figures flattened the
same way (`telemetry.temp_c.max`, `telemetry.throttle.power`: `mlbench.telemetry.flat_columns`) when
records carry it; the record format's required params/metrics columns are always there (empty when no
record had them). `flags` is the record's flag words joined by
commas ("" when none). Raw samples are not loaded (the records keep them). Unknown extra fields
are ignored; a record of an unknown probe is kept. A CPU device without an index gets index 0.

A line that is not JSON (a truncated write, a corrupted file) or a record that breaks the
record format (docs/reference.md) is skipped; each file with such lines gives one warning naming it, the count and the
first line, and the rest of the file is still read.

Speed (a 1,024-node fleet is ~450k records): orjson when installed, raw samples cut before parsing,
key checks once per key layout, columns built per layout, the cyclic GC paused while loading.
One process: on a 2-core machine worker processes cost more in pickling than they save.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from .. import SCHEMA
from ..exitcodes import UsageError
from ..records import REQUIRED_KEYS, iter_jsonl_paths, validate
from ..telemetry.summary import flat_columns

try:  # optional, several times faster on large fleets; the standard library otherwise
    import orjson as _orjson

    _loads = _orjson.loads
    _DecodeError = (_orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    _DecodeError = (json.JSONDecodeError, UnicodeDecodeError)

_RAW = re.compile(rb',\s*"raw"\s*:\s*\{[^{}]*\}')
BASE_COLUMNS = (
    "probe",
    "run_id",
    "time",
    "host",
    "rank",
    "world_size",
    "device_type",
    "device_name",
    "device_index",
    "status",
    "error",
    "flags",
    "file",
)
REQUIRED_COLUMNS = tuple(
    dict.fromkeys(
        [f"params.{k}" for p, _ in REQUIRED_KEYS.values() for k in p]
        + [f"metrics.{k}" for _, m in REQUIRED_KEYS.values() for k in m]
    )
)


def _stderr_warning(message: str) -> None:
    print(f"mlbench report: warning: {message}", file=sys.stderr)


def check_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The `.jsonl` files to read; a path that does not exist is a UsageError (exit 2)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UsageError("no PATH given: name run directories or .jsonl files")
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
    return iter_jsonl_paths(paths)


_MISSING = object()
_LAYOUT_PROBLEMS = ("missing key", "params lacks", "metrics lacks", "device must", "status ")


def _layout(record: dict) -> tuple:
    """What makes two records need the same key checks: probe, status and the keys present."""
    params, metrics, device = record.get("params"), record.get("metrics"), record.get("device")
    return (
        record.get("probe"),
        record.get("status"),
        tuple(record),
        tuple(device) if isinstance(device, dict) else None,
        tuple(params) if isinstance(params, dict) else None,
        tuple(metrics) if isinstance(metrics, dict) else None,
    )


def split_valid(items: list) -> tuple[dict, list]:
    """(records grouped by key layout, [(file, lineno, problem)]) following `records.validate`.

    The key checks of `validate` run once per layout (probe, status, keys present); the value
    checks (schema, integer rank and world size, an error message when not ok) run per record.
    """
    verdicts: dict = {}
    groups: dict = {}
    bad = []
    for record, file, lineno in items:
        if not isinstance(record, dict):
            bad.append((file, lineno, "not a JSON object"))
            continue
        layout = _layout(record)
        problem = verdicts.get(layout, _MISSING)
        if problem is _MISSING:
            found = [p for p in validate(record) if p.startswith(_LAYOUT_PROBLEMS) and "needs an error" not in p]
            problem = verdicts[layout] = found[0] if found else None
        if problem is None and (
            record["schema"] != SCHEMA
            or type(record["rank"]) is not int
            or type(record["world_size"]) is not int
            or (layout[1] != "ok" and not record["error"])
        ):
            problem = next(iter(validate(record)), None)
        if problem:
            bad.append((file, lineno, problem))
        else:
            groups.setdefault(layout[4:], []).append((record, file))
    return groups, bad


def _frame(groups: dict):
    """A DataFrame of records grouped by (params keys, metrics keys), built column-wise (fast)."""
    import pandas as pd

    frames = []
    for (params_keys, metrics_keys), group in groups.items():
        records = [record for record, _ in group]
        devices = [record["device"] for record in records]
        columns = {
            "probe": [r["probe"] for r in records],
            "run_id": [r["run_id"] for r in records],
            "time": [r["time"] for r in records],
            "host": [str(r["host"]) for r in records],
            "rank": [r["rank"] for r in records],
            "world_size": [r["world_size"] for r in records],
            "device_type": [d["type"] for d in devices],
            "device_name": [d["name"] or d["type"] or "" for d in devices],
            "device_index": [_index(d["index"]) for d in devices],
            "status": [r["status"] for r in records],
            "error": [r["error"] for r in records],
            "flags": [_flags(r.get("flags")) for r in records],
            "file": [file for _, file in group],
        }
        for prefix, keys in (("params", params_keys), ("metrics", metrics_keys)):
            if keys:
                values = zip(*[tuple(r[prefix].values()) for r in records])
                for key, column in zip(keys, values):
                    if not isinstance(column[0], (dict, list)):  # nested values are not flattened
                        columns[f"{prefix}.{key}"] = column
        if any("telemetry" in r for r in records):  # telemetry.<figure>.<stat>, telemetry.throttle.<cause>...
            columns.update(flat_columns([r.get("telemetry") for r in records]))
        frames.append(pd.DataFrame(columns))
    if not frames:
        return pd.DataFrame(columns=list(BASE_COLUMNS))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _index(value) -> int:
    return int(value) if isinstance(value, (int, float)) and value == value else 0


def _flags(flags) -> str:
    if not flags:
        return ""
    return ",".join(map(str, flags)) if isinstance(flags, (list, tuple)) else str(flags)


def read_records(path: Path) -> tuple[list, list]:
    """((record, file, line number) triples, warnings) of one file: unparsable lines give one warning.

    Raw samples are cut from a line before parsing when they are a flat object (`"raw":{...}` with no
    nested object: what mlbench writes); the frame does not hold them and parsing is twice as fast.
    """
    items, bad_json = [], []
    file = str(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        return items, [f"{path}: cannot read it ({exc.strerror or exc}); skipped"]
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                items.append((_loads(_RAW.sub(b"", line) if b'"raw"' in line else line), file, lineno))
            except _DecodeError:
                bad_json.append(lineno)
    if not bad_json:
        return items, []
    return items, [
        f"{path}: {len(bad_json)} unreadable line(s) skipped (not JSON: truncated or corrupted), "
        f"first at line {bad_json[0]}; {len(items)} line(s) read"
    ]


def _read_frame(paths: list) -> tuple:
    """(DataFrame, warnings) of some files: the unit of work of one process."""
    with _no_gc():
        return _read_frame_gc_off(paths)


@contextlib.contextmanager
def _no_gc():
    """Hundreds of thousands of small dicts make the cyclic GC rescan them again and again (2x slower);
    nothing here makes reference cycles, so collection waits until the frame is built."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_frame_gc_off(paths: list) -> tuple:
    items, warnings = [], []
    for path in paths:
        more, said = read_records(path)
        items += more
        warnings += said
    groups, bad = split_valid(items)
    per_file: dict = {}
    for file, lineno, problem in bad:
        per_file.setdefault(file, []).append((lineno, problem))
    for file, problems in per_file.items():
        lineno, problem = problems[0]
        warnings.append(f"{file}: {len(problems)} invalid record(s) skipped, first at line {lineno}: {problem}")
    return _frame(groups), warnings


def load(paths: Iterable[str | os.PathLike], on_warning: Optional[Callable[[str], None]] = None):
    """All records under `paths` (run directories, searched recursively, or `.jsonl` files) as a DataFrame.

    Warnings (bad lines, invalid records) go to `on_warning(message)`, by default one
    line each on stderr. A path that does not exist raises `UsageError`. No records gives an empty
    frame with the base columns.
    """
    import pandas as pd

    warn = on_warning or _stderr_warning
    frame, said = _read_frame(check_paths(paths))
    for message in said:
        warn(message)
    frame = frame.reindex(columns=list(BASE_COLUMNS) + [c for c in frame.columns if c not in BASE_COLUMNS])
    for column in REQUIRED_COLUMNS:  # present even when no record carried them (all skipped, say)
        if column not in frame:
            frame[column] = None
    for column in ("params.bytes", "params.m", "params.n", "params.k"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
