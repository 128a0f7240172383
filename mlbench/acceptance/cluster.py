"""Cluster coordination for `mlbench run` under torchrun (one `mlbench run` process per node).

torchrun (or Slurm launching torchrun) provides RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; a
gloo process group over them lets the nodes agree on a run id, meet before cluster-wide steps and
ship their records to rank 0, which writes the one report. No shared file system is needed.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ


class Coordinator:
    def __init__(self, timeout_s: float = 24 * 3600):
        import torch.distributed as dist

        self._dist = dist
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=dt.timedelta(seconds=timeout_s))
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.master_addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
        self.master_port = int(os.environ.get("MASTER_PORT", "29500"))

    def broadcast(self, value):
        """Rank 0's value, on every rank."""
        box = [value]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        self._dist.barrier()

    def all_gather(self, value) -> list:
        out = [None] * self.world_size
        self._dist.all_gather_object(out, value)
        return out

    def collect_files(self, run_dir: Path, subdir: str) -> int:
        """Every node sends `run_dir/subdir/**` to rank 0, which writes what it does not have yet."""
        base = Path(run_dir)
        mine = {}
        for path in sorted((base / subdir).rglob("*")) if (base / subdir).is_dir() else []:
            if path.is_file():
                mine[str(path.relative_to(base))] = path.read_bytes()
        everyone = self.all_gather(mine)
        written = 0
        if self.rank == 0:
            for files in everyone[1:]:
                for relative, data in files.items():
                    target = base / relative
                    if target.exists():
                        continue  # a shared file system: the node wrote it there already
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    written += 1
        return written

    def close(self) -> None:
        try:
            self._dist.destroy_process_group()
        except Exception:
            pass
