"""The CPU backend: core clock, thermal zones and the kernel's package throttle time, from sysfs/procfs.

- clock (`sm_clock_mhz`: the mean over the CPUs read): `cpu*/cpufreq/scaling_cur_freq` (kHz) under
  `sys/devices/system/cpu`, else the `cpu MHz` lines of `proc/cpuinfo`;
- temperature (`temp_c`): the hottest of `sys/class/thermal/thermal_zone*/temp` (millidegrees C),
  among the zones whose type names the CPU package when there are such zones, else among all;
- thermal throttling: `cpu*/thermal_throttle/package_throttle_total_time_ms` (cumulative ms per
  package, newer Linux kernels on Intel), the largest over the CPUs read, as the `thermal` counter.

Every reader takes the root of the file system (`/`), so tests point them at fake trees. A machine
with none of these (a container without sysfs thermal zones or cpufreq, and no `cpu MHz`) has no
CPU backend: the records say so.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Optional

from .model import Backend, Cause, CounterReading, Sample, Unavailable

CPU_DIR = "sys/devices/system/cpu"
THERMAL_DIR = "sys/class/thermal"
_CPU_RE = re.compile(r"^cpu(\d+)$")
_ZONE_RE = re.compile(r"^thermal_zone\d+$")
PACKAGE_ZONE_TYPES = ("x86_pkg_temp", "cpu", "soc", "package", "k10temp", "tctl", "coretemp")


def _read_number(path: Path) -> Optional[float]:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def cpu_dirs(root: str = "/", cpus: Optional[Iterable[int]] = None) -> list:
    """The `cpuN` directories under sysfs, limited to `cpus` when given, in CPU order."""
    base = Path(root, CPU_DIR)
    wanted = set(cpus) if cpus is not None else None
    try:
        names = os.listdir(base)
    except OSError:
        return []
    found = []
    for name in names:
        match = _CPU_RE.match(name)
        if match and (wanted is None or int(match.group(1)) in wanted):
            found.append((int(match.group(1)), base / name))
    return [path for _, path in sorted(found)]


def cpufreq_mhz(root: str = "/", cpus: Optional[Iterable[int]] = None) -> Optional[float]:
    """Mean current clock in MHz from cpufreq (`scaling_cur_freq`, kHz); None without cpufreq."""
    values = [
        v for v in (_read_number(d / "cpufreq" / "scaling_cur_freq") for d in cpu_dirs(root, cpus)) if v is not None
    ]
    return sum(values) / len(values) / 1000.0 if values else None


def cpuinfo_mhz(root: str = "/", cpus: Optional[Iterable[int]] = None) -> Optional[float]:
    """Mean of the `cpu MHz` lines of /proc/cpuinfo (of `cpus` when given); None when it has none."""
    try:
        text = Path(root, "proc/cpuinfo").read_text()
    except OSError:
        return None
    wanted = set(cpus) if cpus is not None else None
    values, processor = [], None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            processor = int(value) if value.strip().isdigit() else None
        elif key == "cpu MHz" and (wanted is None or processor in wanted):
            try:
                values.append(float(value))
            except ValueError:
                pass
    return sum(values) / len(values) if values else None


def thermal_zones(root: str = "/") -> list:
    """[(type, temp file)] of the thermal zones whose temperature reads, the CPU package's zones only
    when some zone's type names it."""
    base = Path(root, THERMAL_DIR)
    try:
        names = sorted(n for n in os.listdir(base) if _ZONE_RE.match(n))
    except OSError:
        return []
    zones = []
    for name in names:
        try:
            kind = (base / name / "type").read_text().strip()
        except OSError:
            kind = ""
        if _read_number(base / name / "temp") is not None:
            zones.append((kind, base / name / "temp"))
    package = [z for z in zones if z[0].lower().startswith(PACKAGE_ZONE_TYPES)]
    return package or zones


def zones_temp_c(zones: list) -> Optional[float]:
    """The hottest of the zones, in degrees C (sysfs gives millidegrees)."""
    values = [v for v in (_read_number(path) for _, path in zones) if v is not None]
    return max(values) / 1000.0 if values else None


def package_throttle_ms(root: str = "/", cpus: Optional[Iterable[int]] = None) -> Optional[float]:
    """The largest cumulative package thermal-throttle time (ms) over the CPUs; None where the kernel has none."""
    values = [
        v
        for v in (_read_number(d / "thermal_throttle" / "package_throttle_total_time_ms") for d in cpu_dirs(root, cpus))
        if v is not None
    ]
    return max(values) if values else None


class CpuSource:
    """The CPU's figures and thermal-throttle counter, from the readers that answered when it was opened."""

    backend = Backend.CPU
    sampled_causes = frozenset()

    def __init__(self, root: str = "/", cpus: Optional[Iterable[int]] = None):
        self.root = root
        self.cpus = tuple(cpus) if cpus is not None else None
        self._clock = (
            cpufreq_mhz
            if cpufreq_mhz(root, self.cpus) is not None
            else (cpuinfo_mhz if cpuinfo_mhz(root, self.cpus) is not None else None)
        )
        self.zones = thermal_zones(root)
        self._throttle = package_throttle_ms(root, self.cpus) is not None

    @property
    def available(self) -> bool:
        return bool(self._clock or self.zones or self._throttle)

    def sample(self, t_s: float) -> Sample:
        figures = {}
        if self._clock is not None:
            mhz = self._clock(self.root, self.cpus)
            if mhz is not None:
                figures["sm_clock_mhz"] = mhz
        if self.zones:
            temp = zones_temp_c(self.zones)
            if temp is not None:
                figures["temp_c"] = temp
        return Sample(t_s, figures)

    def counters(self, t_s: float) -> CounterReading:
        ms = package_throttle_ms(self.root, self.cpus) if self._throttle else None
        return CounterReading(t_s, {Cause.THERMAL: (ms * 1e6, None)} if ms is not None else {})

    def close(self) -> None:
        pass


def open_cpu(root: str = "/", cpus: Optional[Iterable[int]] = None):
    """A `CpuSource`, or `Unavailable` saying what was looked for."""
    if cpus is None and root == "/" and hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
    source = CpuSource(root, cpus)
    if source.available:
        return source
    return Unavailable("no CPU sensors readable: no cpufreq, no 'cpu MHz' in /proc/cpuinfo, no thermal zones")
