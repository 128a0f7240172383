"""mlbench's exit codes (docs/reference.md) and the exceptions that map onto them."""

from __future__ import annotations

OK = 0  # all went well (and no verdict failed)
FAILED = 1  # a measurement or a verdict failed
USAGE = 2  # bad usage: one clear line on stderr, nothing written
INCOMPLETE = 3  # interrupted or timed out: what was measured is kept


class MlbenchError(Exception):
    """An error with an exit code and a one-line message meant for the user."""

    exit_code = FAILED


class UsageError(MlbenchError):
    """Bad input: exit 2 before anything is written."""

    exit_code = USAGE


class MeasurementFailed(MlbenchError):
    """A measurement ran and produced a wrong or failed result: exit 1."""

    exit_code = FAILED


class Incomplete(MlbenchError):
    """Interrupted or timed out; what was measured is kept: exit 3."""

    exit_code = INCOMPLETE
