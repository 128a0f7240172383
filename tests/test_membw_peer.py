"""p2p in both directions: finding the GPU runtime for the destination-issued copy, the matrices."""

import pytest

from mlbench.membw.peer import loaded_runtime, memcpy_peer_async
from mlbench.records import make_record


def test_finds_the_cuda_runtime_torch_loaded(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /venv/nvidia/cuda_runtime/lib/libcudart.so.13\n"
        "7f04-7f05 rw-p 00000000 00:00 0 [heap]\n")
    assert loaded_runtime(str(maps)) == ("/venv/nvidia/cuda_runtime/lib/libcudart.so.13", "cudaMemcpyPeerAsync")
    maps.write_text("7f02-7f03 r-xp 00000000 08:01 2 /opt/rocm/lib/libamdhip64.so.6\n")
    assert loaded_runtime(str(maps))[1] == "hipMemcpyPeerAsync"


def test_no_runtime_is_a_clear_reason(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n")
    with pytest.raises(OSError, match="no CUDA or HIP runtime"):
        loaded_runtime(str(maps))
    import torch

    if not torch.cuda.is_available():  # the CPU build loads no GPU runtime at all
        with pytest.raises(OSError):
            memcpy_peer_async()


def test_summary_prints_one_matrix_per_direction():
    from mlbench.membw.cli import transfer_lines

    def peer(direction, src, dst, gbps):
        return make_record("membw", "r", {"type": "cuda", "name": "g", "index": 0},
                           {"op": "p2p", "bytes": 1 << 29, "src": src, "dst": dst, "direction": direction},
                           {"gbps": 2 * gbps, "gbps_copied": gbps})

    lines = transfer_lines([peer("write", 0, 1, 396.0), peer("write", 1, 0, 390.0), peer("read", 0, 1, 380.0),
                            make_record("membw", "r", {"type": "cuda", "name": "g", "index": 0},
                                        {"op": "p2p", "bytes": 1 << 29, "src": 1, "dst": 0, "direction": "read"},
                                        status="skipped", error="no peer access")])
    text = "\n".join(lines)
    assert "p2p write (the source pushes)" in text and "p2p read (the destination pulls)" in text
    write_rows = lines[lines.index(next(l for l in lines if l.startswith("p2p write"))) + 2:][:2]
    assert "396.0" in write_rows[0] and "390.0" in write_rows[1]
    read_block = lines[lines.index(next(l for l in lines if l.startswith("p2p read"))):]
    assert "380.0" in read_block[2] and "x" in read_block[3]
