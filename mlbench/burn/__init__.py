"""Burn-in: deterministic matmuls compared bit for bit, memory patterns, error counters (plans in `plan`,
measuring in `probe`, one process per GPU in `launch`, CLI in `cli`)."""
