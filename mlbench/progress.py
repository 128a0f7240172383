"""A live progress line on stderr: what is running, how far, time left.

Drawn only on a terminal (or with MLBENCH_PROGRESS=1); logs and CI output stay clean.
"""

from __future__ import annotations

import os
import sys
import time


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class Progress:
    def __init__(self, total: int | None, label: str, stream=None, enabled: bool | None = None):
        self.total = total
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = os.environ.get("MLBENCH_PROGRESS") == "1" or getattr(self.stream, "isatty", lambda: False)()
        self.enabled = enabled
        self._t0 = time.monotonic()
        self._width = 0

    def update(self, advance: int = 1, text: str = "") -> None:
        self.done += advance
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._t0
        if self.total:
            left = elapsed / self.done * (self.total - self.done) if self.done else 0
            head = f"{self.label} {self.done}/{self.total} [{_fmt_s(elapsed)}<{_fmt_s(left)}]"
        else:
            head = f"{self.label} {self.done} [{_fmt_s(elapsed)}]"
        line = f"{head} {text}".rstrip()
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
