"""Training on several processes with torchrun: PyTorch's DistributedDataParallel, nothing home-made.

    torchrun --standalone --nproc_per_node 4 -m slmlib train --level tinystories_gpu

torchrun starts one process per GPU (or per share of the CPU) and tells each its RANK and
WORLD_SIZE. With those set, train():
- joins the process group: nccl when the model is on CUDA GPUs, gloo on CPUs;
- wraps the model in DistributedDataParallel, which averages the gradients of all ranks during
  the backward pass, so every rank takes the same optimizer step and the copies stay identical;
- splits config.batch_size, the global batch of one step, over the ranks; each rank draws its
  own windows (batch seed + rank), in micro-batches of config.micro_batch_size whose gradients
  add up before the step (gradient accumulation);
- lets only rank 0 show the progress bar, print and write files;
- stops every rank at the same step on Ctrl-C (torchrun passes the signal on to each rank) and
  saves one resume file with every rank's random state, so a resumed run continues exactly.
Without torchrun this is one rank of one, and train() runs exactly as it always did.
"""
from __future__ import annotations

import atexit
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .errors import UsageError


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain process: the one that prints and writes files."""
    return os.environ.get("RANK", "0") == "0"


def quiet_unless_main() -> None:
    """Under torchrun, only rank 0 prints (errors and warnings still come from every rank)."""
    if not is_main_process():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


class Ranks:
    """This process's place in a torchrun job: rank `rank` of `world_size` (0 of 1 without torchrun)."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = torch.device("cpu")

    @classmethod
    def from_env(cls) -> "Ranks":
        env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        try:
            return cls(int(env["RANK"] or 0), int(env["WORLD_SIZE"] or 1), int(env["LOCAL_RANK"] or 0))
        except ValueError:
            raise UsageError(f"RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them), "
                             f"not {env}") from None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def join(self, device: torch.device) -> torch.device:
        """This rank's device (cuda:LOCAL_RANK on GPUs), after joining the process group once."""
        self.device = device
        if not self.distributed:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise UsageError(f"torchrun trains on CUDA GPUs or CPUs, not {device.type}; use --device cpu")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            atexit.register(dist.destroy_process_group)
        self.device = device
        return device

    def batch_plan(self, config) -> tuple[int, int]:
        """(windows per forward pass, passes per step) on this rank: config.batch_size over all ranks."""
        share, rest = divmod(config.batch_size, self.world_size)
        if rest or share == 0:
            raise UsageError(f"batch_size={config.batch_size} cannot be split evenly over {self.world_size} "
                             f"processes; use a multiple of {self.world_size}, e.g. batch_size="
                             f"{self.world_size * max(1, round(config.batch_size / self.world_size))}")
        micro = config.micro_batch_size or share
        if share % micro:
            raise UsageError(f"micro_batch_size={micro} does not divide the {share} windows each of the "
                             f"{self.world_size} process(es) takes per step (batch_size={config.batch_size}); "
                             f"use a divisor of {share}")
        return micro, share // micro

    def describe(self, config) -> dict:
        """How a run was trained, for its history (and so its checkpoint)."""
        micro, passes = self.batch_plan(config)
        return {"world_size": self.world_size, "global_batch": config.batch_size, "micro_batch": micro,
                "accumulation_steps": passes,
                "backend": dist.get_backend() if self.distributed else None, "device": self.device.type}

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to train through: DistributedDataParallel around it under torchrun."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on one: Ctrl-C reaches the ranks a step apart, at times."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def wait_for_main(self) -> None:
        """Under torchrun, wait until rank 0 has written its files (a barrier); else nothing."""
        if self.distributed:
            dist.barrier()

    def resume_state(self, batch_rng_state: torch.Tensor, torch_rng_state: torch.Tensor) -> dict:
        """Every rank's random state, for rank 0's resume file ({} without torchrun). All ranks call it."""
        if not self.distributed:
            return {}
        states = [None] * self.world_size
        dist.all_gather_object(states, [batch_rng_state, torch_rng_state])
        return {"world_size": self.world_size, "rank_rng_states": states}

    def own_rng_states(self, ckpt: dict, path) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (batch, torch) random states from a resume file, which must be from as many ranks."""
        saved = ckpt.get("world_size", 1)
        if saved != self.world_size:
            how = "without torchrun" if saved == 1 else f"with torchrun --nproc_per_node ... ({saved} processes in all)"
            raise UsageError(f"{path} was saved by a run of {saved} process(es), this one has {self.world_size}: "
                             f"resume it {how}, so that every process continues its own batches.")
        if saved == 1:
            return ckpt["batch_rng_state"], ckpt["torch_rng_state"]
        batch_state, torch_state = ckpt["rank_rng_states"][self.rank]
        return batch_state, torch_state
