"""Two adversaries that own their step: an HSIC penalty (no classifier) and an ensemble of classifiers."""

import torch
from torch import nn

from factorlab import Adversary, adversary_loss, uniform_confusion


def hsic_penalty(code: torch.Tensor, target: torch.Tensor, num_classes: int, sigma: float = 0.0) -> torch.Tensor:
    """Biased HSIC (Gretton et al. 2005): Gaussian kernel on the code, linear kernel on one-hot labels."""
    n = code.shape[0]
    distances = torch.cdist(code, code).pow(2)
    width = sigma**2 if sigma > 0 else distances.detach().median().clamp_min(1e-12)
    k = torch.exp(-distances / (2 * width))
    onehot = nn.functional.one_hot(target, num_classes).to(code.dtype)
    centre = torch.eye(n, device=code.device, dtype=code.dtype) - 1.0 / n
    return torch.trace(k @ centre @ (onehot @ onehot.T) @ centre) / (n - 1) ** 2


class HSIC(Adversary):
    """Nothing to train: the encoder minimises HSIC(code, factor)."""

    def __init__(self, num_classes: int, sigma: float) -> None:
        super().__init__(classifier=None)
        self.num_classes, self.sigma = num_classes, sigma

    def encoder_loss(self, code, target, progress):
        return hsic_penalty(code.float(), target, self.num_classes, self.sigma)


class Ensemble(Adversary):
    """K linear adversaries, each trained by cross-entropy; the encoder confuses all of them."""

    def __init__(self, in_features: int, num_classes: int, members: int, reset_every: int) -> None:
        super().__init__(classifier=None)
        self.members = nn.ModuleList(nn.Linear(in_features, num_classes) for _ in range(members))
        self.reset_every, self.steps = reset_every, 0

    def logits(self, code):
        return torch.stack([member(code) for member in self.members]).mean(0)

    def adversary_loss(self, code, target):
        self.steps += 1
        if self.reset_every and self.steps % self.reset_every == 0:
            self.members[(self.steps // self.reset_every) % len(self.members)].reset_parameters()
        return sum(adversary_loss(member(code), target) for member in self.members)

    def encoder_loss(self, code, target, progress):
        return sum(uniform_confusion(member(code)) for member in self.members) / len(self.members)


def hsic(config, *, in_features, num_classes):
    """HSIC penalty between a code and the factor's one-hot labels."""
    return HSIC(num_classes, config.sigma)


def ensemble(config, *, in_features, num_classes):
    """An ensemble of linear adversaries with optional re-initialisation."""
    return Ensemble(in_features, num_classes, config.members, config.reset_every)
