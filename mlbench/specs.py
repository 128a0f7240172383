"""The advertised-spec registry: a data file shipped in the package, looked up by device name.

`mlbench/data/specs.csv` holds one row per accelerator: dense peak TFLOPS per dtype, HBM size and
TB/s, last-level cache, intra-node link GB/s (unidirectional), TDP, the published MAMF reference
and its method, and the source of the figures. `match` is a regular expression searched (case
insensitive) in the name torch reports; the first matching row wins. `load(extra)` lays rows of a
user's CSV (the figures a provider agreed to, a new part) over the shipped ones by `key`.
No pandas here: the probes use it too.

Columns (decimal units): `tflops_<dtype>` / `tops_int8` dense peaks; `hbm_tbps` (TB/s, read +
written); `link_gbps` intra-node link per direction; `host_link_gbps` the host link per direction;
`mamf_<dtype>_tflops` the published MAMF and `mamf_<dtype>_shape` its shape; `<check>_expected_eff`
what a healthy part normally reaches as a fraction of the spec (mamf, hbm, busbw, p2p, h2d);
`source` plus `peak_source`, `mem_source`, `link_source`, `power_source`, `mamf_source` say where
each figure comes from. A bad user file raises `SpecsError` with one line naming it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Optional

DTYPE_COLUMNS = {
    "fp64": "tflops_fp64",
    "fp32": "tflops_fp32",
    "tf32": "tflops_tf32",
    "bf16": "tflops_bf16",
    "fp16": "tflops_fp16",
    "fp8": "tflops_fp8",
    "int8": "tops_int8",
}


TEXT_COLUMNS = {"key", "name", "match", "vendor", "mamf_method", "link_name", "source", "kind"}


class SpecsError(ValueError):
    """A spec file that cannot be used (unreadable, a row without key/match, a bad number or pattern)."""


def _is_text_column(column: str) -> bool:
    return column in TEXT_COLUMNS or column.endswith(("_source", "_shape", "_method"))


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

    def mamf_reference(self, dtype: str) -> Optional[float]:
        """The published MAMF for a dtype (TFLOPS), when the registry has one."""
        return self.number(f"mamf_{dtype}_tflops")

    def mamf_expected_eff(self, dtype: str) -> Optional[float]:
        """What a healthy part reaches as a fraction of the dense peak for `dtype`.

        An explicit `mamf_<dtype>_expected_eff` (or `mamf_expected_eff` for bf16: a provider's file can
        set it), else the published MAMF over the peak when both are known for that dtype, else the
        row's `mamf_expected_eff`, else None.
        """
        explicit = self.number(f"mamf_{dtype}_expected_eff") or (
            self.number("mamf_expected_eff") if dtype == "bf16" else None
        )
        if explicit:
            return explicit
        reference, peak = self.mamf_reference(dtype), self.peak_tflops(dtype)
        if reference and peak:
            return reference / peak
        return self.number("mamf_expected_eff")

    def expected_eff(self, check: str) -> Optional[float]:
        """The `<check>_expected_eff` column (hbm, busbw, p2p, h2d, mamf) as a fraction, or None."""
        return self.number(f"{check}_expected_eff")


def _read_csv(text: str, origin: str, need_match: bool = True) -> list[dict]:
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:
        raise SpecsError(f"{origin}: not a CSV file: {exc}") from None
    for line, row in enumerate(rows, 2):
        if None in row:
            raise SpecsError(f"{origin}: line {line} has more fields than the header")
        if not row.get("key") or (need_match and not row.get("match")):
            raise SpecsError(f"{origin}: line {line}: every spec row needs 'key' and 'match'")
        try:
            re.compile(row.get("match") or "")
        except re.error as exc:
            raise SpecsError(f"{origin}: line {line}: bad match pattern {row['match']!r}: {exc}") from None
        for column, value in row.items():
            if value not in (None, "") and not _is_text_column(column):
                try:
                    float(value)
                except ValueError:
                    raise SpecsError(
                        f"{origin}: line {line}: column {column!r} needs a number, got {value!r}"
                    ) from None
    return rows


def shipped_rows() -> list[dict]:
    text = resources.files("mlbench").joinpath("data/specs.csv").read_text(encoding="utf-8")
    return _read_csv(text, "mlbench/data/specs.csv")


def load(extra_files: Iterable[str] = ()) -> list[Spec]:
    """The registry: shipped rows, with rows from `extra_files` overriding by key (or appended)."""
    rows = {row["key"]: row for row in shipped_rows()}
    order = list(rows)
    for path in extra_files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecsError(f"--specs {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
        for row in _read_csv(text, str(path), need_match=False):
            if is_fabric_row(row):
                continue  # a fabric row: `load_fabric` reads it
            if row["key"] not in rows and not row.get("match"):
                raise SpecsError(f"{path}: new part {row['key']!r} needs a 'match' pattern")
            merged = dict(rows.get(row["key"], {}))
            merged.update({k: v for k, v in row.items() if v not in (None, "")})
            if row["key"] not in rows:
                order.insert(0, row["key"])  # a user's new part matches before the shipped ones
            rows[row["key"]] = merged
    return Registry([Spec(key, rows[key].get("name", key), rows[key]) for key in order], load_fabric(extra_files))


def lookup(device_name: str, registry: Optional[list] = None) -> Optional[Spec]:
    """The spec of a device by the name torch reports, or None when it is not recognised."""
    for spec in registry if registry is not None else load():
        if re.search(spec.row["match"], device_name or "", re.IGNORECASE):
            return spec
    return None


# --- the fabric registry: mlbench/data/fabric.csv ----------------------------------------------------
# One row per network fabric: `match` is searched (case insensitive) in a node's NIC descriptor
# ("infiniband 8x400G mlx5_core", `mlbench.nics`); `kind`; `port_gbits` the line rate of one port
# (Gbit/s); `nics_per_node` and `node_gbps` (GB/s per direction, decimal) the per-node total where
# the fabric fixes it (else the ports found on the nodes count); `busbw_expected_eff` what a healthy
# fabric reaches; `source`, `eff_source`. A user's --specs file may hold fabric rows next to
# accelerator rows: a row whose key is a fabric key, or that has `port_gbits`, `node_gbps` or `kind`.

FABRIC_COLUMNS = ("port_gbits", "node_gbps", "kind")


class Registry(list):
    """The accelerator specs (a list, as `load` always returned) with the fabric rows beside them."""

    def __init__(self, specs: Iterable = (), fabric: Optional[list] = None):
        super().__init__(specs)
        self.fabric = list(fabric) if fabric is not None else []


def fabric_rows() -> list[dict]:
    text = resources.files("mlbench").joinpath("data/fabric.csv").read_text(encoding="utf-8")
    return _read_csv(text, "mlbench/data/fabric.csv")


def is_fabric_row(row: dict, keys: Optional[set] = None) -> bool:
    keys = keys if keys is not None else {r["key"] for r in fabric_rows()}
    return row.get("key") in keys or any(row.get(c) not in (None, "") for c in FABRIC_COLUMNS)


def load_fabric(extra_files: Iterable[str] = ()) -> list[Spec]:
    """The fabric registry: shipped rows, with fabric rows of `extra_files` overriding by key (new ones first)."""
    rows = {row["key"]: row for row in fabric_rows()}
    keys, order = set(rows), list(rows)
    for path in extra_files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecsError(f"--specs {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
        for row in _read_csv(text, str(path), need_match=False):
            if not is_fabric_row(row, keys):
                continue
            if row["key"] not in rows and not row.get("match"):
                raise SpecsError(f"{path}: new fabric {row['key']!r} needs a 'match' pattern")
            merged = dict(rows.get(row["key"], {}))
            merged.update({k: v for k, v in row.items() if v not in (None, "")})
            if row["key"] not in rows:
                order.insert(0, row["key"])
            rows[row["key"]] = merged
    return [Spec(key, rows[key].get("name", key), rows[key]) for key in order]


def lookup_fabric(descriptor: str, registry: Optional[list] = None) -> Optional[Spec]:
    """The fabric row a node's NIC descriptor matches (first match wins), or None."""
    for spec in registry if registry is not None else load_fabric():
        if re.search(spec.row["match"], descriptor or "", re.IGNORECASE):
            return spec
    return None
