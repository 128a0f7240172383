"""p2p in both directions: the GPU runtime for the destination-issued copy, its errors, the matrices."""

import ctypes

import pytest

from mlbench.device_runtime import RUNTIMES, PeerMemcpy, loaded_runtime, peer_memcpy
from mlbench.membw.peer import copy_issuer
from mlbench.records import make_record


def test_finds_the_cuda_runtime_torch_loaded(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /venv/nvidia/cuda_runtime/lib/libcudart.so.13\n"
        "7f04-7f05 rw-p 00000000 00:00 0 [heap]\n"
    )
    path, runtime = loaded_runtime(str(maps))
    assert path == "/venv/nvidia/cuda_runtime/lib/libcudart.so.13"
    assert (runtime.memcpy_peer_async, runtime.get_last_error) == ("cudaMemcpyPeerAsync", "cudaGetLastError")
    maps.write_text("7f02-7f03 r-xp 00000000 08:01 2 /opt/rocm/lib/libamdhip64.so.6\n")
    assert loaded_runtime(str(maps))[1].get_last_error == "hipGetLastError"


def test_no_runtime_is_a_clear_reason(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n")
    with pytest.raises(OSError, match="no CUDA or HIP runtime"):
        loaded_runtime(str(maps))
    with pytest.raises(OSError, match="no CUDA or HIP runtime"):
        peer_memcpy(str(maps))


class FakeRuntime:
    """A runtime library's function table: a peer copy that fails while `failures` > 0, and the
    runtime's sticky "last error" that a failed call sets and only GetLastError resets (as CUDA and HIP do)."""

    def __init__(self, prefix: str, failures: int):
        self.failures = failures
        self.last_error = 0
        self.copies = []

        def memcpy(dst, dst_device, src, src_device, nbytes, stream):  # plain functions take ctypes' attributes
            if self.failures:
                self.failures -= 1
                self.last_error = 217  # cudaErrorPeerAccessUnsupported
                return 217
            self.copies.append((dst, dst_device, src, src_device, nbytes, stream))
            return 0

        def get_last_error():
            error, self.last_error = self.last_error, 0
            return error

        setattr(self, f"{prefix}MemcpyPeerAsync", memcpy)
        setattr(self, f"{prefix}GetLastError", get_last_error)

    def next_library_call(self):
        """What torch's next error check after a kernel launch does: raise a pending last error."""
        if self.last_error:
            raise RuntimeError(f"CUDA error {self.last_error} (from an earlier call)")


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.stem)
def test_a_failed_peer_copy_does_not_poison_the_next_calls(tmp_path, runtime):
    prefix = runtime.memcpy_peer_async[: -len("MemcpyPeerAsync")]
    library = FakeRuntime(prefix, failures=1)
    maps = tmp_path / "maps"
    maps.write_text(f"7f02-7f03 r-xp 00000000 08:01 2 /lib/{runtime.stem}.so.6\n")
    copy = peer_memcpy(str(maps), load=lambda path: library)
    with pytest.raises(RuntimeError, match=f"{runtime.memcpy_peer_async} returned error 217"):
        copy(0x1000, 1, 0x2000, 0, 4096, 7)
    library.next_library_call()  # the failed copy's error is not left for torch to trip over
    copy(0x1000, 1, 0x2000, 0, 4096, 7)
    assert library.copies == [(0x1000, 1, 0x2000, 0, 4096, 7)]


def test_the_runtime_functions_get_c_signatures():
    library = FakeRuntime("cuda", failures=0)
    PeerMemcpy(library, RUNTIMES[0])
    assert library.cudaMemcpyPeerAsync.restype is ctypes.c_int
    assert library.cudaMemcpyPeerAsync.argtypes[4] is ctypes.c_size_t
    assert library.cudaGetLastError.restype is ctypes.c_int


def test_a_library_without_the_function_is_a_clear_reason(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f02-7f03 r-xp 00000000 08:01 2 /lib/libcudart.so.12\n")
    with pytest.raises(OSError, match="libcudart.so.12"):
        peer_memcpy(str(maps), load=lambda path: object())


def test_the_destination_issues_a_read_and_the_source_a_write():
    assert copy_issuer("read", 0, 1) == 1
    assert copy_issuer("write", 0, 1) == 0


def test_summary_prints_one_matrix_per_direction():
    from mlbench.membw.cli import transfer_lines

    def peer(direction, src, dst, gbps):
        return make_record(
            "membw",
            "r",
            {"type": "cuda", "name": "g", "index": 0},
            {"op": "p2p", "bytes": 1 << 29, "src": src, "dst": dst, "direction": direction},
            {"gbps": 2 * gbps, "gbps_copied": gbps},
        )

    lines = transfer_lines(
        [
            peer("write", 0, 1, 396.0),
            peer("write", 1, 0, 390.0),
            peer("read", 0, 1, 380.0),
            make_record(
                "membw",
                "r",
                {"type": "cuda", "name": "g", "index": 0},
                {"op": "p2p", "bytes": 1 << 29, "src": 1, "dst": 0, "direction": "read"},
                status="skipped",
                error="no peer access",
            ),
        ]
    )
    text = "\n".join(lines)
    assert "p2p write (the source pushes)" in text and "p2p read (the destination pulls)" in text
    write_rows = lines[lines.index(next(line for line in lines if line.startswith("p2p write"))) + 2 :][:2]
    assert "396.0" in write_rows[0] and "390.0" in write_rows[1]
    read_block = lines[lines.index(next(line for line in lines if line.startswith("p2p read"))) :]
    assert "380.0" in read_block[2] and "x" in read_block[3]
