"""Where a run executes: device choice, the torchrun process group, seeds, automatic speed options, autocast.

These settle the machine a run uses; they know nothing of models or losses (the training loop imports them).
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from factorlab.errors import FactorlabError


@dataclass
class Dist:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device_type: str) -> Dist:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPU); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(
    name: str, local_rank: int = 0, distributed: bool = False, *, option: str = "run.device"
) -> torch.device:
    """'auto' -> cuda (this process's GPU) if available, else cpu. `option` is what messages call the setting
    (`run.device` in a recipe, `--device` on the command line)."""
    from factorlab.recipe import DEVICE, DEVICE_HELP

    if not DEVICE.fullmatch(name):  # torch's own error lists twenty device types
        raise FactorlabError(f"{option} {name}: unknown device {name!r}; {DEVICE_HELP}")
    if distributed and name.startswith("cuda:"):
        raise FactorlabError(
            f"{option} = {name!r} under torchrun would put every process on one GPU; "
            f"use {option}=cuda (or auto): each process takes cuda:LOCAL_RANK"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FactorlabError(f"{option} = {name!r} but no CUDA device is available; use {option}=cpu or auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise FactorlabError(
            f"{option} = {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; use one of them, or {option}=cuda"
        )
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise FactorlabError(
            f"{option} = 'mps' but Apple's MPS backend is not available here; use {option}=cpu or auto"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def use_deterministic(compile: bool = False) -> None:
    """Deterministic algorithms (`torch.use_deterministic_algorithms(True, warn_only=True)`), without two costs.

    - torch's function imports torch._inductor (2 s on a 2-core CPU) only to set inductor's own `deterministic`
      flag, which matters only to `torch.compile`: without `compile` the same switch is set directly.
    - With it, torch fills every new uninitialised tensor with NaN (`fill_uninitialized_memory`), a debugging
      aid that cost 13% of the quickstart's CPU step (8 ms of `aten::fill_` per step, `torch.profiler`); the
      results of ops that never read uninitialised memory do not depend on it, so it is switched off.
    """
    if compile:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def resolve_auto(run, device: torch.device) -> None:
    """Settle the 'auto' speed options of a [run] section for `device` (in place; the run folder records the result)."""
    gpu = device.type == "cuda"
    if run.precision == "auto":
        run.precision = "bf16" if gpu and torch.cuda.is_bf16_supported() else "fp32"
    if run.channels_last == "auto":
        run.channels_last = gpu
    if gpu:
        torch.backends.cudnn.benchmark = True  # image sizes are fixed within a run


def autocast(device: torch.device, precision: str):
    """The autocast context of the forward passes (a no-op in fp32)."""
    if precision in ("fp32", "auto"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
