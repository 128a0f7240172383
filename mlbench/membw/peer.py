"""Peer-to-peer copies in both directions, as nvbandwidth names them.

- write: the source GPU pushes (the copy issued on the source's stream). torch's `dst.copy_(src)`
  between two GPUs always does this.
- read: the destination GPU pulls (the copy issued on the destination's stream). torch cannot choose
  the issuing side, so this uses the runtime's peer copy (`mlbench.device.peer_memcpy`:
  `cudaMemcpyPeerAsync`, on ROCm `hipMemcpyPeerAsync`) on the destination's current stream.
"""

from __future__ import annotations


def copy_issuer(direction: str, src: int, dst: int) -> int:
    """The GPU whose stream issues a `direction` copy from GPU `src` to GPU `dst`."""
    return dst if direction == "read" else src
