"""Data-parallel training over torch.distributed processes (``torchrun``): process group,
per-rank data shards, DDP wrapping and the few collectives the trainer needs.

One recipe trains the same model on any number of ranks: ``train.batch_size`` is the global
batch, each global batch is split across ranks (rank ``r`` takes frames ``r, r + W, ...``),
and every loss term is normalised by its *global* label count, so the all-reduced gradient
equals the one-process gradient of the same global batch. Every rank holds identical
parameters (DDP broadcasts rank 0's at start, then every rank applies the same reduced
gradient, proximal step and support fixing); rank 0 alone evaluates, logs and writes.
Control messages (stop requests, validation results) travel over a gloo group, so on GPUs
they never synchronise a CUDA stream.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from .._compat import torch

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a multi-process run."""

    rank: int
    world_size: int
    local_rank: int
    control: object = None  # a gloo process group for CPU-side control messages

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """World size announced by torchrun/SLURM-launched torchrun (1 when launched plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend_for(device: str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init_from_env(device: str) -> tuple[Distributed | None, str]:
    """Join the process group torchrun describes in the environment; returns (context, device
    of this rank). Without torchrun (or with one process) returns ``(None, device)``."""
    import torch.distributed as dist

    if env_world_size() <= 1:
        return None, device
    missing = [k for k in ENV_KEYS + ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={env_world_size()} but {missing} are not set; launch with torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    if str(device).startswith("cuda"):
        if torch.cuda.device_count() <= local_rank:
            raise RuntimeError(
                f"local rank {local_rank} has no GPU (this node has {torch.cuda.device_count()}); "
                "use --nproc_per_node <= the number of GPUs"
            )
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device), timeout=datetime.timedelta(minutes=30))
    control = dist.new_group(backend="gloo") if backend_for(device) != "gloo" else dist.group.WORLD
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, control), device


def shutdown() -> None:
    """Leave the process group (when one was joined)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def global_batches(n: int, batch_size: int, *, shuffle: bool, seed: int) -> list[list[int]]:
    """Frame indices of each global batch: exactly the order of a one-process ``loader`` with
    the same seed (a torch DataLoader over the indices draws them)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    indices = torch.utils.data.DataLoader(range(n), batch_size=batch_size, shuffle=shuffle, generator=generator)
    return [b.tolist() for b in indices]


def rank_share(batch: list[int], rank: int, world_size: int) -> list[int]:
    """The frames of one global batch that ``rank`` computes (strided, so shares differ by <= 1)."""
    return batch[rank::world_size]


def wrap_ddp(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """DDP around the adapted model: parameters broadcast from rank 0, gradients all-reduced
    (averaged) during backward. Buffers are not re-broadcast: every rank holds the same."""
    import warnings

    device_ids = [torch.device(device).index] if str(device).startswith("cuda") else None
    with warnings.catch_warnings():  # torch >= 2.13 names it forward_sync_buffers; the meaning is kept
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*deprecated", category=FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (the main backend: stays on the tensor's device)."""
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(ctx: Distributed, flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (e.g. a stop request that reached one rank only)."""
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ctx.control)
    return bool(t.item())


def broadcast_from_main(ctx: Distributed, value):
    """Rank 0's ``value`` (any picklable object of plain Python types) on every rank."""
    import torch.distributed as dist

    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, group=ctx.control)
    return box[0]


@torch.no_grad()
def broadcast_tensors(ctx: Distributed, tensors: list) -> None:
    """Overwrite ``tensors`` with rank 0's values (e.g. sparse masks after support fixing, so a
    tie broken differently by floating-point noise cannot make ranks drift apart)."""
    import torch.distributed as dist

    for t in tensors:
        if t is not None:
            dist.broadcast(t, src=0)


def barrier(ctx: Distributed | None) -> None:
    import torch.distributed as dist

    if ctx is not None:
        dist.barrier(group=ctx.control)
