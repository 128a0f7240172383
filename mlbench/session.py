"""What every probe does around its measurements: where records go, provenance, the envelope.

A `ProbeSession` owns the output file (the default `results/<run-id>/<probe>.jsonl`),
writes `env.json` beside it, wraps each `Result` into a record and appends it (one flushed line).
Probes yield `Result`s; the CLI layer hands them to the session and prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from .records import RecordWriter, Result, check_writable, default_out, make_record, new_run_id


class ProbeSession:
    def __init__(
        self,
        probe: str,
        device_record: dict,
        out: Optional[str] = None,
        run_id: Optional[str] = None,
        rank: int = 0,
        world_size: int = 1,
        write: bool = True,
    ):
        self.probe = probe
        self.run_id = run_id or new_run_id()
        self.out = Path(out) if out else default_out(probe, self.run_id)
        self.device_record = device_record
        self.rank = rank
        self.world_size = world_size
        self.write_enabled = write
        self.records: list[dict] = []
        self._writer = RecordWriter(self.out)
        if write:
            check_writable(self.out)

    @property
    def run_dir(self) -> Path:
        return self.out.parent

    def start(self, argv=None) -> "ProbeSession":
        """Open the records file and write env.json beside it (only by the writing rank)."""
        if self.write_enabled:
            from .provenance import write_env_json

            self._writer.open()
            write_env_json(self.run_dir, self.probe, argv)
        return self

    def add(self, result: Result, device_record: Optional[dict] = None, **extra) -> dict:
        """Wrap a result in the record envelope, append it, and return the record."""
        if result.flags:
            extra.setdefault("flags", list(result.flags))
        if result.raw:
            extra.setdefault("raw", result.raw)
        record = make_record(
            self.probe,
            self.run_id,
            device_record or self.device_record,
            result.params,
            result.metrics,
            result.status,
            result.error,
            rank=self.rank,
            world_size=self.world_size,
            **extra,
        )
        self.records.append(record)
        if self.write_enabled:
            self._writer.write(record)
        return record

    def record_all(self, results: Iterable, on_record: Optional[Callable[[dict], None]] = None) -> bool:
        """Add every result as it comes (each line flushed), then close; True when interrupted by
        Ctrl-C: the records added so far are kept."""
        try:
            for result in results:
                record = self.add(result)
                if on_record is not None:
                    on_record(record)
        except KeyboardInterrupt:
            return True
        finally:
            self.close()
        return False

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "ProbeSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def env_rank() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) outside it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
