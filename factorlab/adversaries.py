"""Adversaries: a part that must fail to read a factor from a code, and owns how it is trained and used.

The trainer orchestrates two steps per batch and leaves both losses to the adversary:
1. adversary step: `adversary.adversary_loss(code.detach(), target)` updates only the adversaries'
   parameters (default: cross-entropy of `forward(code)` to the labels, the paper's L_adv_exp; an
   adversary with nothing to train, e.g. an independence penalty, returns None);
2. main step: `adversary.encoder_loss(code, target, progress)` is added to the encoder's objective while
   every adversary's parameters are frozen; its gradient flows through the adversary into the code.
`logits(code)` gives class scores for the logged accuracy (None for an adversary with no classifier).

- `uniform` (the paper, eq. 2): the encoder loss is the cross-entropy of the adversary's prediction
  against the uniform distribution (L_adv_En), minimal when the adversary is maximally unsure.
- `grl` (DANN, Ganin et al. 2016): the encoder loss is the adversary's own cross-entropy, computed
  through a gradient reversal layer, so the code is pushed to *raise* it; the reversal weight ramps up
  as lambda = 2 / (1 + exp(-gamma * progress)) - 1.
"""

from __future__ import annotations

import math

from torch import Tensor, autograd, nn

from factorlab.builtins.parts import GRLConfig, UniformConfig  # their options live with their registration
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
    """Base class of adversaries: reads a factor from a code and owns its two losses.

    Contract (the host calls these; see the module docstring for when):
    - `adversary_loss(code, target) -> Tensor | None`: the adversary step's loss over this adversary's own
      parameters; `code` is detached. Default: cross-entropy of `self(code)` to `target`. Return None when
      there is nothing to train (an adversary with no classifier).
    - `encoder_loss(code, target, progress) -> Tensor`: a scalar the encoder minimises in the main step,
      with this adversary frozen; `progress` = step / total steps in [0, 1]. Subclasses must implement it.
    - `logits(code) -> Tensor | None`: class scores for the logged accuracy; None without a classifier.
    - `code_transform() -> nn.Module | None` (optional): a module the code passes through inside the network,
      after its branch and before the heads, the decoder and the adversaries read it, in training and inference
      (the running LEACE eraser of the `leace` adversary). Default None: the code stays as the branch made it.
    `code` is flattened (B, features); `target` holds int64 class ids (B,).
    """

    def __init__(self, classifier: nn.Module | None = None) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, code: Tensor) -> Tensor:
        if self.classifier is None:
            raise RuntimeError(f"{type(self).__name__} has no classifier; use logits(code), which returns None")
        return self.classifier(code)

    def logits(self, code: Tensor) -> Tensor | None:
        """Class scores for the logged accuracy, or None for an adversary without a classifier."""
        return None if self.classifier is None else self(code)

    def code_transform(self) -> nn.Module | None:
        """A module (B, *code shape) -> same shape that the network applies to this adversary's code; None here."""
        return None

    def adversary_loss(self, code: Tensor, target: Tensor) -> Tensor | None:
        """The adversary step's loss (L_adv_exp: cross-entropy to the true labels); None when nothing trains."""
        return None if self.classifier is None else adversary_loss(self(code), target)

    def encoder_loss(self, code: Tensor, target: Tensor, progress: float) -> Tensor:
        """The main step's loss for the encoder; `progress` = step / total_steps in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} must implement encoder_loss(code, target, progress)")


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


def uniform(config: UniformConfig, *, in_features: int, num_classes: int) -> UniformAdversary:
    """The paper's adversary: encoder trained towards a uniform prediction (L_adv_En, eq. 2)."""
    return UniformAdversary(mlp_classifier(in_features, num_classes, config.hidden, config.dropout))


def grl(config: GRLConfig, *, in_features: int, num_classes: int) -> GRLAdversary:
    """Gradient reversal (DANN) with the ramp 2 / (1 + exp(-gamma p)) - 1."""
    classifier = mlp_classifier(in_features, num_classes, config.hidden, config.dropout)
    return GRLAdversary(classifier, gamma=config.gamma)
