"""The GPU runtime library torch loaded (CUDA's `libcudart`, ROCm's `libamdhip64`), for what torch lacks.

torch cannot issue a peer copy from the destination's side, so `peer_memcpy()` calls the runtime's
`cudaMemcpyPeerAsync` (ROCm: `hipMemcpyPeerAsync`) from the library already in this process
(found in `/proc/self/maps`: the same library, hence the same context, as torch's).
A failed call leaves the error as the runtime's "last error", and torch's next check of that error
(after any kernel launch) would raise it as its own: the call clears it with `cudaGetLastError`
(`hipGetLastError`) from the same library before raising.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

__all__ = ["Runtime", "PeerMemcpy", "loaded_runtime", "peer_memcpy"]


@dataclass(frozen=True)
class Runtime:
    """A GPU runtime library: its file-name stem and the functions used from it."""

    stem: str
    memcpy_peer_async: str
    get_last_error: str


RUNTIMES = (
    Runtime("libcudart", "cudaMemcpyPeerAsync", "cudaGetLastError"),
    Runtime("libamdhip64", "hipMemcpyPeerAsync", "hipGetLastError"),
)


def loaded_runtime(maps_path: str = "/proc/self/maps") -> tuple:
    """(library path, `Runtime`) of the GPU runtime loaded in this process; OSError if none is."""
    try:
        with open(maps_path) as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError as exc:
        raise OSError(f"cannot list the loaded libraries ({exc.strerror})") from None
    for runtime in RUNTIMES:
        for path in sorted(paths):
            if path.rsplit("/", 1)[-1].startswith(runtime.stem + ".so"):
                return path, runtime
    raise OSError("no CUDA or HIP runtime library is loaded in this process")


class PeerMemcpy:
    """`copy(dst_ptr, dst_device, src_ptr, src_device, nbytes, stream_handle)`: an async peer copy
    on the stream; a non-zero status is cleared from the runtime's last error, then raised."""

    def __init__(self, library, runtime: Runtime):
        self.name = runtime.memcpy_peer_async
        self._memcpy = getattr(library, runtime.memcpy_peer_async)
        self._memcpy.restype = ctypes.c_int
        self._memcpy.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_size_t,
            ctypes.c_void_p,
        ]
        self._get_last_error = getattr(library, runtime.get_last_error)
        self._get_last_error.restype = ctypes.c_int
        self._get_last_error.argtypes = []

    def __call__(self, dst_ptr: int, dst_device: int, src_ptr: int, src_device: int, nbytes: int, stream: int) -> None:
        status = self._memcpy(dst_ptr, dst_device, src_ptr, src_device, nbytes, stream)
        if status != 0:
            self._get_last_error()  # returns the error and resets it: torch's next check must not see it
            raise RuntimeError(f"{self.name} returned error {status}")


def peer_memcpy(maps_path: str = "/proc/self/maps", load=ctypes.CDLL) -> PeerMemcpy:
    """The loaded runtime's peer copy (`load` opens the library: tests pass a fake); OSError with a reason."""
    path, runtime = loaded_runtime(maps_path)
    library = load(path)
    try:
        return PeerMemcpy(library, runtime)
    except AttributeError as exc:
        raise OSError(f"{path}: {exc}") from None
