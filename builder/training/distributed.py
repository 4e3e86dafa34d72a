"""Several processes, one run: launch through torch.distributed.run, join the process group, shard data.

`build train SPEC --nproc-per-node N` re-runs this very command in N workers through torchrun; each worker
sees RANK / WORLD_SIZE in its environment, joins a gloo (CPU) or nccl (GPU) group, trains its shard of
every epoch under DistributedDataParallel, and only rank 0 writes files or prints.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def join(device: torch.device) -> World:
    """Join the process group torchrun set up (no-op for a single process)."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def leave(world: World, finished: bool = True) -> None:
    if world.active and dist.is_initialized():
        # A DistributedDataParallel wrapper is kept alive by reference cycles (its autograd hooks) after the
        # loop returns: collect it now, while the group exists. Freed later (at exit), its reducer's gloo
        # threads outlive the destroyed group and the process aborts ("terminate called without an active
        # exception"), now and then, under load.
        gc.collect()
        if finished:  # every rank done before any tears gloo down; not after a failure (it would wait forever)
            dist.barrier()
        dist.destroy_process_group()


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over all ranks (the tensor itself when alone)."""
    if world.active:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def launch(worker_argv, nproc: int, nnodes: str = "1", rdzv_endpoint: str | None = None) -> int:
    """Run `python -m builder.commands.train WORKER_ARGV` in `nproc` processes per node via torchrun."""
    from torch.distributed.run import get_args_parser, run

    args = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes)]
    if rdzv_endpoint:
        args += ["--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint]
    else:
        args += ["--standalone"]
    args += ["-m", "builder.commands.train", *worker_argv]
    try:
        run(get_args_parser().parse_args(args))
    except Exception as e:  # torchrun raises ChildFailedError carrying each worker's failure
        from builder.core.errors import UserError
        raise UserError(f"distributed training failed: {str(e).strip().splitlines()[0]}") from None
    return 0
