"""Adversaries: a classifier that must fail to read a factor from a code, and the rule that trains the encoder.

The trainer uses an adversary in two steps:
1. adversary step: `adversary_loss(adversary(code.detach()), target)` (L_adv_exp) updates only the adversary;
2. main step: `adversary.encoder_loss(code, target, progress)` is added to the encoder's objective while
   the adversary's parameters are frozen; its gradient flows through the classifier into the code.

- `uniform` (the paper, eq. 2): the encoder loss is the cross-entropy of the adversary's prediction
  against the uniform distribution (L_adv_En), minimal when the adversary is maximally unsure.
- `grl` (DANN, Ganin et al. 2016): the encoder loss is the adversary's own cross-entropy, computed
  through a gradient reversal layer, so the code is pushed to *raise* it; the reversal weight ramps up
  as lambda = 2 / (1 + exp(-gamma * progress)) - 1.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, autograd, nn

from factorlab.heads import mlp_classifier
from factorlab.losses import adversary_loss, uniform_confusion


class _GradReverse(autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lam: float) -> Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.lam * grad, None


def grad_reverse(x: Tensor, lam: float = 1.0) -> Tensor:
    """Identity forward; multiplies the gradient by -lam backward (DANN's gradient reversal layer)."""
    return _GradReverse.apply(x, lam)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's ramp 2 / (1 + exp(-gamma * progress)) - 1: 0 at the start, ~1 at the end; progress in [0, 1]."""
    progress = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class Adversary(nn.Module):
    """A classifier code -> logits plus the loss that trains the encoder against it.

    Subclasses implement `encoder_loss`; `forward` gives the logits used in the adversary step.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, code: Tensor) -> Tensor:
        return self.classifier(code)

    def encoder_loss(self, code: Tensor, target: Tensor, progress: float) -> Tensor:
        """The main step's loss for the encoder; `progress` = step / total_steps in [0, 1]."""
        raise NotImplementedError


class UniformAdversary(Adversary):
    """The paper's adversary: the encoder minimises cross-entropy of the prediction to the uniform distribution."""

    def encoder_loss(self, code: Tensor, target: Tensor, progress: float) -> Tensor:
        """L_adv_En (eq. 2): uniform confusion of the adversary's logits; `target` and `progress` are unused."""
        return uniform_confusion(self(code))


class GRLAdversary(Adversary):
    """DANN: the encoder receives the adversary's cross-entropy gradient reversed and scaled by the ramp."""

    def __init__(self, classifier: nn.Module, gamma: float = 10.0) -> None:
        super().__init__(classifier)
        self.gamma = gamma

    def encoder_loss(self, code: Tensor, target: Tensor, progress: float) -> Tensor:
        """Cross-entropy to the true labels through gradient reversal with lambda = dann_lambda(progress)."""
        return adversary_loss(self(grad_reverse(code, dann_lambda(progress, self.gamma))), target)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class UniformConfig(BaseModel):
    """Options of the `uniform` adversary."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(
        default_factory=list, description="Hidden layer sizes of the classifier; empty = linear (the paper's C_adv)."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the classifier.")


class GRLConfig(UniformConfig):
    """Options of the `grl` adversary."""

    gamma: float = Field(
        10.0, ge=0.0, description="Steepness of the DANN ramp lambda = 2 / (1 + exp(-gamma * progress)) - 1."
    )


def uniform(config: UniformConfig, *, in_features: int, num_classes: int) -> UniformAdversary:
    """The paper's adversary: encoder trained towards a uniform prediction (L_adv_En, eq. 2)."""
    return UniformAdversary(mlp_classifier(in_features, num_classes, config.hidden, config.dropout))


def grl(config: GRLConfig, *, in_features: int, num_classes: int) -> GRLAdversary:
    """Gradient reversal (DANN) with the ramp 2 / (1 + exp(-gamma p)) - 1."""
    classifier = mlp_classifier(in_features, num_classes, config.hidden, config.dropout)
    return GRLAdversary(classifier, gamma=config.gamma)


KIND = "adversaries"
PARTS = [
    (
        "uniform",
        uniform,
        UniformConfig,
        "The paper's adversary: encoder pushed to a uniform prediction (cross-entropy to uniform, eq. 2).",
    ),
    ("grl", grl, GRLConfig, "Gradient reversal (DANN) with the ramp lambda = 2/(1+exp(-gamma p)) - 1."),
]
