"""The advertised-spec registry: a data file shipped in the package, looked up by device name.

`mlbench/data/specs.csv` holds one row per accelerator: dense peak TFLOPS per dtype, HBM size and
TB/s, last-level cache, intra-node link GB/s (unidirectional), TDP, the published MAMF reference
and its method, and the source of the figures. `match` is a regular expression searched (case
insensitive) in the name torch reports; the first matching row wins. `load(extra)` lays rows of a
user's CSV (a provider's contract figures, a new part) over the shipped ones by `key`.
No pandas here: the probes use it too.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Optional

DTYPE_COLUMNS = {"fp64": "tflops_fp64", "fp32": "tflops_fp32", "tf32": "tflops_tf32", "bf16": "tflops_bf16",
                 "fp16": "tflops_fp16", "fp8": "tflops_fp8", "int8": "tops_int8"}


@dataclass(frozen=True)
class Spec:
    key: str
    name: str
    row: dict

    def number(self, column: str) -> Optional[float]:
        value = self.row.get(column)
        if value in (None, ""):
            return None
        try:
            return float(value)
        except ValueError:
            return None

    def peak_tflops(self, dtype: str) -> Optional[float]:
        """Dense peak for a dtype name (bf16, fp8, ...), in TFLOPS (TOPS for int8)."""
        column = DTYPE_COLUMNS.get(dtype)
        return self.number(column) if column else None


def _read_csv(text: str, origin: str) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        if not row.get("key") or not row.get("match"):
            raise ValueError(f"{origin}: every spec row needs 'key' and 'match'")
        re.compile(row["match"])
    return rows


def shipped_rows() -> list[dict]:
    text = resources.files("mlbench").joinpath("data/specs.csv").read_text(encoding="utf-8")
    return _read_csv(text, "mlbench/data/specs.csv")


def load(extra_files: Iterable[str] = ()) -> list[Spec]:
    """The registry: shipped rows, with rows from `extra_files` overriding by key (or appended)."""
    rows = {row["key"]: row for row in shipped_rows()}
    order = list(rows)
    for path in extra_files:
        with open(path, encoding="utf-8") as f:
            for row in _read_csv(f.read(), str(path)):
                merged = dict(rows.get(row["key"], {}))
                merged.update({k: v for k, v in row.items() if v not in (None, "")})
                if row["key"] not in rows:
                    order.insert(0, row["key"])  # a user's new part matches before the shipped ones
                rows[row["key"]] = merged
    return [Spec(key, rows[key].get("name", key), rows[key]) for key in order]


def lookup(device_name: str, registry: Optional[list] = None) -> Optional[Spec]:
    """The spec of a device by the name torch reports, or None when it is not recognised."""
    for spec in registry if registry is not None else load():
        if re.search(spec.row["match"], device_name or "", re.IGNORECASE):
            return spec
    return None
