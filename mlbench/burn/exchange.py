"""What the burn-in processes of one run tell each other: each GPU's reference digest and TFLOPS. No torch.

Each process writes one small JSON file, `<records dir>/burn-digests/<run id>/<host>-<device>-<pid>.json`
(replaced atomically), and reads the others'. Processes of the same run id whose records go to the same
directory are siblings: `mlbench run` and `mlbench burn --device all` start one per GPU that way.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

from ..records import write_json

EXCHANGE_DIR = "burn-digests"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", str(text)) or "_"


def device_label(host: str, device: dict) -> str:
    """`node01 cuda:3` (the CPU: `node01 cpu`): how a burn-in names a device in its messages."""
    index = device.get("index")
    kind = device.get("type", "?")
    return f"{host} {kind}" if index is None or kind == "cpu" else f"{host} {kind}:{index}"


class Exchange:
    """This process's file among its siblings' (`publish`), and theirs (`others`)."""

    def __init__(self, records_path, run_id: str, host: str, device: dict, pid: Optional[int] = None):
        self.directory = Path(records_path).parent / EXCHANGE_DIR / _safe(run_id)
        self.pid = os.getpid() if pid is None else pid
        index = device.get("index")
        name = f"{host}-{device.get('type', 'dev')}{'' if index is None else index}-{self.pid}"
        self.path = self.directory / f"{_safe(name)}.json"

    def publish(self, entry: dict) -> None:
        """Replace this process's file with `entry` (atomically: a reader sees the old or the new one)."""
        write_json(self.path, dict(entry, pid=self.pid))

    def others(self) -> list:
        """The siblings' entries (files that cannot be read or parsed are left out)."""
        try:
            paths = sorted(p for p in self.directory.glob("*.json") if p != self.path)
        except OSError:
            return []
        entries = []
        for path in paths:
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries
