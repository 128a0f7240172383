"""mlbench: honest acceptance benchmarks for ML hardware.

Nothing heavy is imported here: `mlbench --help` must start without torch, pandas or matplotlib.
"""

__version__ = "0.1.0"
SCHEMA = "mlbench/1"
