"""One training step, the only one: train(), torchrun and the benchmark all call train_step.

A step draws config.batch_size windows (split over the processes under torchrun, and into
micro-batches of config.micro_batch_size whose gradients add up), takes the mean loss, caps the
gradient's norm at config.grad_clip and moves every weight with AdamW. On one process with no
micro-batches that is the textbook step: batch, loss, backward, clip, update.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.autograd.profiler import record_function

from .data import get_batch
from .distributed import Ranks


def make_optimizer(model: torch.nn.Module, config) -> torch.optim.AdamW:
    """AdamW with weight decay on the 2-D weights only (the matrices and embeddings), as nanoGPT.

    Decay pulls weights towards zero so that only patterns that help many stories keep large
    weights. Biases and LayerNorm gains are few and only shift or scale; pulling a gain towards
    zero would switch its layer off, so they are left alone.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def train_step(model, optimizer, data, config, lr: float, batch_rng, autocast=nullcontext(), dev="cpu",
               ranks=None, trained=None) -> torch.Tensor:
    """One step of config.batch_size windows over all ranks and micro-batches; returns the mean loss.

    model is the plain module; trained is the one the batches go through (DDP under torchrun,
    else the model itself). A loss that is not finite is returned before any weight moves.
    """
    ranks = ranks or Ranks()
    trained = trained if trained is not None else model
    micro, passes = ranks.batch_plan(config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    mean_loss = torch.zeros((), device=dev)
    for i in range(passes):
        x, y = get_batch(data.train, micro, config.block_size, batch_rng)
        # DDP averages gradients during backward; before the last micro-batch that is wasted traffic.
        last = i == passes - 1
        with nullcontext() if last or not ranks.distributed else trained.no_sync():
            with autocast:
                _, loss = trained(x.to(dev), y.to(dev))
            (loss / passes).backward()
        mean_loss += loss.detach() / passes
    if ranks.distributed:  # every rank sees the same loss, so all stop together if it is not finite
        dist.all_reduce(mean_loss)
        mean_loss /= ranks.world_size
    if not torch.isfinite(mean_loss):
        return mean_loss
    if config.grad_clip:  # one odd batch cannot throw the weights far
        with record_function("clip_grad_norm"):  # a label for the benchmark's profile, nothing more
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return mean_loss
