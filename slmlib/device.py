"""Which device trains a model: the rule behind device="auto".

The five course levels (98K to 1.1M parameters) train on the CPU even when a GPU is present:
the README's numbers were measured on a CPU, so a student's run reproduces them, and a GPU's
arithmetic (Apple's mps in particular) gives slightly different losses. A model of at least
GPU_MIN_PARAMS parameters (a bigger preset than the course's) goes to the GPU when there is one.
"""
from __future__ import annotations

import torch

from .errors import UsageError

# A policy line, not a measured break-even: far above the largest course model (1.1M parameters)
# and far below a GPT-2-small-sized model (124M), where a GPU clearly pays off.
GPU_MIN_PARAMS = 10_000_000
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_gpu() -> str | None:
    """'cuda' or 'mps' when this machine has one that torch can use, else None."""
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if _mps_available() else None


def auto_device(n_params: int | None = None) -> tuple[torch.device, str]:
    """The device "auto" picks for a model of n_params parameters, and why (one phrase).

    n_params=None means a course-sized model (the five levels), which stays on the CPU.
    """
    gpu = available_gpu()
    if n_params is None or n_params < GPU_MIN_PARAMS:
        why = f"under {GPU_MIN_PARAMS:,} parameters: the CPU, where the README's numbers were measured"
        return torch.device("cpu"), why + (f" (device='{gpu}' would use the {gpu} GPU)" if gpu else "")
    if gpu:
        return torch.device(gpu), f"{GPU_MIN_PARAMS:,} parameters or more: the {gpu} GPU"
    return torch.device("cpu"), f"{GPU_MIN_PARAMS:,} parameters or more would go to a GPU; this machine has none"


def pick_device(device: str = "auto", n_params: int | None = None) -> torch.device:
    """The device to train on. "auto": the CPU for the course's models, a GPU for big ones.

    n_params: the model's size, so "auto" can send a big model (>= GPU_MIN_PARAMS) to the GPU.
    """
    if device == "auto":
        return auto_device(n_params)[0]
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; use {', '.join(map(repr, DEVICE_NAMES))}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for, but this machine has no CUDA GPU; use device='cpu'")
    if dev.type == "mps" and not _mps_available():
        raise UsageError("device 'mps' asked for, but this machine has no Apple GPU; use device='cpu'")
    return dev
