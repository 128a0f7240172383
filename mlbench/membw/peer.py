"""Peer-to-peer copies in both directions, as nvbandwidth names them.

- write: the source GPU pushes (the copy issued on the source's stream). torch's `dst.copy_(src)`
  between two GPUs always does this.
- read: the destination GPU pulls (the copy issued on the destination's stream). torch cannot choose
  the issuing side, so this calls the runtime's `cudaMemcpyPeerAsync` (ROCm: `hipMemcpyPeerAsync`)
  from the runtime library that torch has already loaded into this process, on the destination's
  current stream.
"""

from __future__ import annotations

import ctypes
from typing import Callable

_RUNTIMES = (("libcudart", "cudaMemcpyPeerAsync"), ("libamdhip64", "hipMemcpyPeerAsync"))


def loaded_runtime(maps_path: str = "/proc/self/maps") -> tuple:
    """(library path, function name) of the GPU runtime loaded in this process; OSError if none is."""
    try:
        with open(maps_path) as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError as exc:
        raise OSError(f"cannot list the loaded libraries ({exc.strerror})") from None
    for stem, function in _RUNTIMES:
        for path in sorted(paths):
            if path.rsplit("/", 1)[-1].startswith(stem + ".so"):
                return path, function
    raise OSError("no CUDA or HIP runtime library is loaded in this process")


def memcpy_peer_async() -> Callable[[int, int, int, int, int, int], None]:
    """`copy(dst_ptr, dst_device, src_ptr, src_device, nbytes, stream_handle)`; raises OSError with a reason."""
    path, name = loaded_runtime()
    library = ctypes.CDLL(path)
    function = getattr(library, name)
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p]

    def copy(dst_ptr: int, dst_device: int, src_ptr: int, src_device: int, nbytes: int, stream: int) -> None:
        status = function(dst_ptr, dst_device, src_ptr, src_device, nbytes, stream)
        if status != 0:
            raise RuntimeError(f"{name} returned error {status}")

    return copy
