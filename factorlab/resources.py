"""Requests sized against the machine: a command that would need more memory than is free is refused
before it allocates, with a message saying how much it needs and what to ask for instead."""

from __future__ import annotations

import os

from factorlab.errors import ResourceError

#: The share of the available memory one request may plan to use.
SHARE = 0.8


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux: MemAvailable; elsewhere the free physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1  # unknown: do not refuse


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(need: int, request: str, fix: str) -> None:
    """A ResourceError when `need` bytes exceed SHARE of the available memory."""
    free = available_memory()
    if need > SHARE * free:
        raise ResourceError(
            f"{request} would need about {gib(need)} of memory, but only {gib(free)} is available "
            f"(a request may use up to {SHARE:.0%} of it); {fix}"
        )


def without_pretrained_weights(recipe):
    """A copy of `recipe` whose encoder loads no pretrained weights (for building shapes only)."""
    options = recipe.encoder.options
    if "weights" not in type(options).model_fields:
        return recipe
    recipe = recipe.model_copy()
    recipe.encoder = recipe.encoder.model_copy()
    recipe.encoder._options = options.model_copy(update={"weights": "none"})
    return recipe


def model_parameters(recipe) -> int:
    """How many parameters the model of `recipe` has, counted on the meta device.

    Nothing is initialised; the encoder and the branches are materialised (uninitialised) on the CPU to infer
    the code shapes, after `check_training_memory` allowed what is counted so far (a ResourceError otherwise).
    Factors whose classes come from the data (identity) are counted with two classes, so no data is read.
    """
    import torch

    from factorlab.model import build_model, resolve_factors

    classes = {name: list(f.classes) if f.classes else ["a", "b"] for name, f in resolve_factors(recipe).items()}
    with torch.device("meta"):
        model = build_model(
            without_pretrained_weights(recipe),
            classes=classes,
            check_size=lambda n: check_training_memory(recipe, n, at_least=True),
        )
    return sum(p.numel() for p in model.parameters())


def check_training_memory(recipe, parameters: int, *, at_least: bool = False) -> None:
    """A ResourceError when training `parameters` parameters cannot fit in memory.

    Training holds four float32 copies of every parameter: the weights, their gradients and Adam's two moments.
    """
    where = f" of {recipe.source}" if recipe.source else ""
    count = f"{'at least ' if at_least else ''}{parameters / 1e6:,.0f} million parameters"
    check_memory(
        16 * parameters,
        f"training the model{where} ({count})",
        "use smaller widths or hidden sizes (codes.<name>.widths, encoder.widths, heads.<i>.hidden)",
    )


def check_model_size(recipe) -> None:
    """A ResourceError, before anything is initialised, when training the recipe's model cannot fit in memory."""
    from factorlab.errors import FactorlabError

    try:
        n = model_parameters(recipe)
    except FactorlabError:
        raise
    except Exception:  # a part that cannot be built on the meta device: the real build reports its own errors
        return
    check_training_memory(recipe, n)
