"""The Disentangler: encoder + branches (codes) + heads + adversaries (+ decoder), built from a recipe.

Shapes are inferred by a dummy forward pass, so any registered encoder fits any branch.
Heads and adversaries are keyed `<factor>_from_<code>` (e.g. `expression_from_exp`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from factorlab.adversaries import Adversary
from factorlab.factors import Factor, resolve_factors
from factorlab.losses import adversary_loss


def part_key(factor: str, code: str) -> str:
    """The module key of a head or adversary reading `factor` from `code`."""
    return f"{factor}_from_{code}"


@dataclass(frozen=True)
class Link:
    """A head or adversary: which factor it reads from which code."""

    factor: str
    code: str

    @property
    def key(self) -> str:
        return part_key(self.factor, self.code)


class Network(nn.Module):
    """Everything the main step trains: encoder, branches, heads and the decoder (if any)."""

    def __init__(
        self,
        encoder: nn.Module,
        branches: dict[str, nn.Module],
        heads: dict[str, nn.Module],
        head_links: list[Link],
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.branches = nn.ModuleDict(branches)
        self.heads = nn.ModuleDict(heads)
        self.head_links = head_links
        self.decoder = decoder

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> code name -> code tensor."""
        features = self.encoder(images)
        return {name: branch(features) for name, branch in self.branches.items()}

    def decode(self, codes: dict[str, torch.Tensor]) -> torch.Tensor:
        """Codes -> reconstructed images in [0, 1] (needs a decoder)."""
        if self.decoder is None:
            raise RuntimeError("this model has no decoder (the recipe's loss.beta_rec is 0)")
        return self.decoder(concat_codes(codes, list(self.branches)))

    def classify(self, codes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Codes -> each head's logits on its code, by `<factor>_from_<code>`."""
        return {link.key: self.heads[link.key](codes[link.code].flatten(1)) for link in self.head_links}

    def forward(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor] | torch.Tensor]:
        """Codes, head logits (by `<factor>_from_<code>`) and, with a decoder, the reconstruction."""
        codes = self.encode(images)
        out: dict = {"codes": codes, "logits": self.classify(codes)}
        if self.decoder is not None:
            out["reconstruction"] = self.decode(codes)
        return out


class AdversarySet(nn.Module):
    """The adversaries, trained in their own step on detached codes."""

    def __init__(self, adversaries: dict[str, nn.Module], links: list[Link]) -> None:
        super().__init__()
        self.adversaries = nn.ModuleDict(adversaries)
        self.links = links

    def forward(self, codes: dict[str, torch.Tensor], labels: dict[str, torch.Tensor] | None = None) -> dict:
        """Without labels: each adversary's logits on its code (adversaries without a classifier left out).

        With labels (the adversary step, called through DDP so gradients are averaged): `key -> (loss, logits)`,
        the adversary's own loss (None when it has nothing to train) and its logits (or None).
        """
        if labels is None:
            out = {}
            for link in self.links:
                logits = self.adversaries[link.key].logits(codes[link.code].flatten(1))
                if logits is not None:
                    out[link.key] = logits
            return out
        return {
            link.key: adversary_step_outputs(
                self.adversaries[link.key], codes[link.code].flatten(1), labels[link.factor]
            )
            for link in self.links
        }


def adversary_step_outputs(adversary: nn.Module, code: torch.Tensor, target: torch.Tensor) -> tuple:
    """(loss, logits) of an adversary's own step with one forward pass where one serves both.

    The default loss (cross-entropy of the classifier, the paper's L_adv_exp) is computed from the logits it
    logs; an adversary that defines its own `adversary_loss` is asked for it, and its logits (for the logged
    accuracy) are computed without a graph.
    """
    # one forward serves both only when neither is the adversary's own (a plugin's `logits` is always asked)
    default = type(adversary).adversary_loss is Adversary.adversary_loss and type(adversary).logits is Adversary.logits
    if default and getattr(adversary, "classifier", None) is not None:
        logits = adversary(code)
        return adversary_loss(logits, target), logits
    loss = adversary.adversary_loss(code, target)
    with torch.no_grad():
        logits = adversary.logits(code)
    return loss, logits


class Disentangler(nn.Module):
    """The whole model: `net` (main step) and `adversaries` (adversary step)."""

    def __init__(
        self, net: Network, adversaries: AdversarySet, factors: dict[str, Factor], classes: dict[str, list[str]]
    ):
        super().__init__()
        self.net = net
        self.adversaries = adversaries
        self.factors = factors
        self.classes = classes

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> code name -> code tensor."""
        return self.net.encode(images)

    def decode(self, codes: dict[str, torch.Tensor]) -> torch.Tensor:
        """Codes -> images in [0, 1]."""
        return self.net.decode(codes)

    def forward(self, images: torch.Tensor):
        return self.net(images)

    @property
    def code_names(self) -> list[str]:
        return list(self.net.branches)


def _meta_numel(module: nn.Module) -> int:
    """Elements of the parameters and buffers of `module` that live on the meta device."""
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()) if t.is_meta)


def _run_for_shapes(module: nn.Module, x: torch.Tensor, check_size=None, counted: int = 0) -> torch.Tensor:
    """`module(x)` on the CPU in eval mode without gradients, for the shape of its output.

    A module built on the meta device runs as an uninitialised CPU copy (its values do not matter for a shape;
    meta tensors would, since torch 2.x runs their kernels through torch._dynamo, cost seconds of import), once
    `check_size(counted + its elements)` allowed it.
    """
    meta = _meta_numel(module)
    if meta:
        if check_size is not None:
            check_size(counted + meta)
        module = copy.deepcopy(module).to_empty(device="cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.device("cpu"), torch.no_grad():
            return module(x)
    finally:
        module.train(was_training)


def concat_codes(codes: dict[str, torch.Tensor], order: list[str]) -> torch.Tensor:
    """Concatenate codes for the decoder: along channels when all are maps of one size, else flattened."""
    tensors = [codes[name] for name in order]
    if all(t.dim() == 4 for t in tensors) and len({t.shape[2:] for t in tensors}) == 1:
        return torch.cat(tensors, dim=1)
    return torch.cat([t.flatten(1) for t in tensors], dim=1)


def build_model(
    recipe, classes: dict[str, list[str]] | None = None, *, check_size: Callable[[int], None] | None = None
) -> Disentangler:
    """Build the model a recipe describes.

    `classes` gives each factor's class names; factors without canonical classes (identity) take
    them from the training split of the recipe's data set when `classes` does not give them.
    Built under `torch.device("meta")` nothing is allocated, except that the shapes of the codes are inferred
    by running the encoder and each branch on the CPU: `check_size(parameters counted so far)` is called before
    such a part is materialised (uninitialised) for it, so a caller can refuse a model too large to try.
    """
    from factorlab.plugins import get_host

    host = get_host()
    factors = resolve_factors(recipe)
    classes = dict(classes or {})
    for name, factor in factors.items():
        if name not in classes and factor.classes is not None:
            classes[name] = list(factor.classes)
    if any(name not in classes for name in factors):
        from factorlab.data.loading import build_dataset

        classes.update({k: v for k, v in build_dataset(recipe, "train", factors).classes.items() if k not in classes})

    size = recipe.data.image_size
    encoder = host.get("encoders", recipe.encoder.type).factory(recipe.encoder.options, image_size=size)
    with torch.device("cpu"):
        probe = torch.zeros(2, 3, size, size)
    features = _run_for_shapes(encoder, probe, check_size)
    counted = _meta_numel(encoder)
    branches, code_shapes = {}, {}
    for name, section in recipe.codes.items():
        branch = host.get("branches", section.branch).factory(section.options, in_shape=tuple(features.shape[1:]))
        code_shapes[name] = tuple(_run_for_shapes(branch, features, check_size, counted).shape[1:])
        counted += _meta_numel(branch)
        branches[name] = branch

    def classifiers(kind: str, sections) -> tuple[dict[str, nn.Module], list[Link]]:
        """Heads or adversaries: one classifier of `factor` on the flattened `code` per section."""
        modules, links = {}, []
        for section in sections:
            link = Link(section.factor, section.code)
            modules[link.key] = host.get(kind, section.type).factory(
                section.options,
                in_features=math.prod(code_shapes[section.code]),
                num_classes=len(classes[section.factor]),
            )
            links.append(link)
        return modules, links

    heads, head_links = classifiers("heads", recipe.heads)
    adversaries, adversary_links = classifiers("adversaries", recipe.adversaries)
    for link in adversary_links:  # an adversary may put a module in its code's path (Adversary.code_transform)
        transform = getattr(adversaries[link.key], "code_transform", lambda: None)()
        if transform is not None:
            branches[link.code] = nn.Sequential(branches[link.code], transform)
    decoder = None
    if recipe.uses_decoder:
        with torch.device("cpu"):
            dummy = {name: torch.zeros(2, *shape) for name, shape in code_shapes.items()}
            in_shape = tuple(concat_codes(dummy, list(code_shapes)).shape[1:])
        decoder = host.get("decoders", recipe.decoder.type).factory(
            recipe.decoder.options, in_shape=in_shape, image_size=size
        )
    net = Network(encoder, branches, heads, head_links, decoder)
    return Disentangler(net, AdversarySet(adversaries, adversary_links), factors, classes)
