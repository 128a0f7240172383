"""Keeping the user's data safe: where diskio may write, how full the disk may get, cleaning up.

Rules:
- `--dir` must be an existing, writable directory on a file system; block and character devices,
  regular files and read-only file systems are refused with one line (exit 2);
- everything is written inside a fresh directory `mlbench-diskio-<random>` created under `--dir`
  (`os.mkdir`, so an existing one is never reused); files are created with O_CREAT|O_EXCL|O_NOFOLLOW,
  so no existing file is ever opened for writing;
- `Workspace.close()` removes exactly what this run created, then the directory: after success, on
  errors, on Ctrl-C / SIGTERM and when the disk fills;
- capacity: a fill level above 80% is warned about, a test that would push it past 90% is refused
  (the usual rule: plan on 80% of what was sold). Fill is df's: used / (used + available).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..exitcodes import UsageError

WARN_FILL = 0.80
REFUSE_FILL = 0.90
WORKSPACE_PREFIX = "mlbench-diskio-"
DEFAULT_ALIGN_BYTES = 4096  # when statx cannot say: safe for 512e and 4Kn devices alike


@dataclass(frozen=True)
class FsUsage:
    """A file system's size and fill, from statvfs (bytes)."""

    total_bytes: int  # used + available to an unprivileged user (df's size minus the root reserve)
    used_bytes: int
    avail_bytes: int
    read_only: bool = False

    @property
    def fill(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 1.0

    def fill_after(self, extra_bytes: int) -> float:
        return (self.used_bytes + extra_bytes) / self.total_bytes if self.total_bytes else 1.0


def fs_usage(path: str | os.PathLike) -> FsUsage:
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    return FsUsage(
        total_bytes=used + avail, used_bytes=used, avail_bytes=avail, read_only=bool(st.f_flag & os.ST_RDONLY)
    )


@dataclass(frozen=True)
class Mount:
    fs_type: str
    source: str
    mount_point: str

    def describe(self) -> str:
        return f"{self.fs_type} {self.source} on {self.mount_point}"


def find_mount(path: str | os.PathLike, mountinfo: str = "/proc/self/mountinfo") -> Mount:
    """The mount holding `path` (longest mount point prefix in /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    best = Mount("unknown", "unknown", "/")
    best_len = -1
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return best
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        point = fields[4].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best_len:
            best, best_len = Mount(tail[0], tail[1], point), len(point)
    return best


def check_target_dir(path: str | os.PathLike) -> Path:
    """The directory diskio may test, or a one-line UsageError (nothing is created)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise UsageError(f"--dir {p}: no such directory") from None
    except OSError as exc:
        raise UsageError(f"--dir {p}: {exc.strerror}") from None
    if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
        kind = "block" if stat.S_ISBLK(st.st_mode) else "character"
        raise UsageError(
            f"--dir {p}: is a {kind} device; diskio tests file systems and never writes to devices "
            f"(give a directory on the mounted file system)"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"--dir {p}: not a directory")
    if fs_usage(p).read_only:
        raise UsageError(f"--dir {p}: read-only file system")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"--dir {p}: not writable (permission denied)")
    return p


def capacity_verdict(usage: FsUsage, need_bytes: int) -> tuple[Optional[str], Optional[str]]:
    """(refusal, warning): a refusal when `need_bytes` more would fill past 90%, a warning above 80%."""
    after = usage.fill_after(need_bytes)
    if need_bytes > usage.avail_bytes or after > REFUSE_FILL:
        return (
            f"would fill the file system to {100 * after:.1f}% (needs {need_bytes / 2**30:.2f} GiB, "
            f"{usage.avail_bytes / 2**30:.2f} GiB available; refused above {100 * REFUSE_FILL:.0f}%)"
        ), None
    if after > WARN_FILL:
        return None, f"the file system will be {100 * after:.1f}% full during the test (above {100 * WARN_FILL:.0f}%)"
    return None, None


# --- O_DIRECT alignment (statx STATX_DIOALIGN, Linux >= 6.1) -----------------------------------------

_STATX_DIOALIGN = 0x2000
_AT_FDCWD = -100
_STATX_BUF_BYTES = 256
_DIO_MEM_OFFSET, _DIO_OFFSET_OFFSET = 152, 156  # stx_dio_mem_align, stx_dio_offset_align in struct statx


def dio_alignment(path: str | os.PathLike) -> tuple[Optional[int], Optional[int]]:
    """(memory alignment, offset/length alignment) for O_DIRECT on `path`, from statx.

    (None, None) when the kernel or libc cannot say; (0, 0) when the kernel says the file does not
    support direct IO.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        statx = libc.statx
    except (OSError, AttributeError):
        return None, None
    buf = ctypes.create_string_buffer(_STATX_BUF_BYTES)
    statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    if statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_DIOALIGN, buf) != 0:
        return None, None
    mask = int.from_bytes(buf.raw[0:4], "little")
    if not mask & _STATX_DIOALIGN:
        return None, None
    mem = int.from_bytes(buf.raw[_DIO_MEM_OFFSET : _DIO_MEM_OFFSET + 4], "little")
    offset = int.from_bytes(buf.raw[_DIO_OFFSET_OFFSET : _DIO_OFFSET_OFFSET + 4], "little")
    return mem, offset


class DirectIORefused(Exception):
    """The file system does not do O_DIRECT here (tmpfs, some FUSE and network file systems)."""


class Workspace:
    """A fresh directory under `--dir` that holds every file diskio writes, removed by `close()`."""

    def __init__(self, parent: str | os.PathLike):
        self.parent = Path(parent)
        self.path: Optional[Path] = None
        self.created: list[Path] = []

    def open(self) -> "Workspace":
        for _ in range(10):
            candidate = self.parent / f"{WORKSPACE_PREFIX}{secrets.token_hex(4)}"
            try:
                os.mkdir(candidate, 0o700)
            except FileExistsError:
                continue
            except OSError as exc:
                raise UsageError(f"--dir {self.parent}: cannot create a directory there ({exc.strerror})") from None
            self.path = candidate
            return self
        raise UsageError(f"--dir {self.parent}: could not create a fresh {WORKSPACE_PREFIX}* directory")

    def new_file(self, name: str) -> Path:
        """Create an empty file of ours (never an existing one) and remember it for cleanup."""
        assert self.path is not None, "workspace not open"
        path = self.path / name
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        self.created.append(path)
        return path

    def owns(self, path: str | os.PathLike) -> bool:
        return Path(path) in self.created

    def remove(self, path: Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if path in self.created:
            self.created.remove(path)

    def close(self) -> None:
        """Remove what this run created, then its directory (never anything else)."""
        for path in list(self.created):
            self.remove(path)
        if self.path is not None:
            try:
                os.rmdir(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
            self.path = None

    def __enter__(self) -> "Workspace":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def probe_direct_io(workspace: Workspace) -> tuple[int, int, str]:
    """(memory alignment, offset alignment, source) for O_DIRECT in the workspace; DirectIORefused if none.

    Source is "statx" when the kernel said, else "default" (4096 bytes, safe on 512e and 4Kn disks).
    """
    path = workspace.new_file("dio-probe")
    try:
        mem, offset = dio_alignment(path)
        if mem == 0 or offset == 0:
            raise DirectIORefused("the kernel reports no direct IO support for files here (statx DIOALIGN 0)")
        try:
            fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        except OSError as exc:
            raise DirectIORefused(f"open with O_DIRECT failed: {exc.strerror}") from None
        os.close(fd)
    finally:
        workspace.remove(path)
    if mem and offset:
        return max(mem, 1), max(offset, 1), "statx"
    return DEFAULT_ALIGN_BYTES, DEFAULT_ALIGN_BYTES, "default"
