"""Erasure methods: removing a factor from a code so that a fresh probe cannot read it (docs/erasure.md).

An adversary at chance does not mean the factor is gone: the encoder can hide it from a classifier
that is one step behind (Elazar & Goldberg 2018). The parts here attack that weakness three ways:

- `ensemble` (an adversary): K classifiers (linear or MLP) trained together in the adversary step;
  the encoder is pushed towards a uniform prediction of every one of them, and with `reset_every`
  one member at a time is re-initialised, so the encoder cannot overfit a single, stale adversary.
- `hsic` (an adversary without a network): the normalised Hilbert-Schmidt independence criterion
  between the code (Gaussian kernel) and the one-hot factor labels (linear kernel) on each minibatch,
  minimised by the encoder (Gretton et al. 2005; as a penalty, e.g. Quadrianto et al. 2019). Nothing
  to train, so nothing falls behind.
- LEACE (Belrose et al. 2023, the `concept-erasure` package): the closed-form least-squares linear
  eraser of a factor from a code, fitted on the train split's codes; after it no linear classifier
  beats a constant predictor on the erased code. Applied post hoc with `factorlab eval --erase`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from factorlab.adversaries import Adversary
from factorlab.builtins.erasure import (
    EnsembleConfig,
    HSICConfig,
    LeaceConfig,
)  # their options live with their registration
from factorlab.errors import FactorlabError
from factorlab.heads import mlp_classifier
from factorlab.losses import adversary_loss, uniform_confusion

# ---------------------------------------------------------------------------------------------
# HSIC


def rbf_kernel(x: Tensor, sigma2: Tensor | float | None = None) -> Tensor:
    """Gaussian kernel exp(-|xi - xj|^2 / (2 sigma^2)) of the rows of `x` (n, d); `sigma2` defaults to the
    median heuristic (`median_sigma2`), held constant for the gradient."""
    d2 = torch.cdist(x, x).square()
    if sigma2 is None:
        sigma2 = median_sigma2(d2)
    return torch.exp(-d2 / (2 * sigma2))


def median_sigma2(d2: Tensor) -> Tensor:
    """The median heuristic: sigma^2 = median of the off-diagonal squared distances (detached; 1 if all are 0)."""
    n = d2.shape[0]
    off = d2.detach()[~torch.eye(n, dtype=torch.bool, device=d2.device)]
    median = off.median() if off.numel() else d2.new_ones(())
    return torch.where(median > 0, median, torch.ones_like(median))


def _centre(k: Tensor) -> Tensor:
    """H K H with H = I - 11^T / n (double centring)."""
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()


def _hsic_centred(kc: Tensor, lc: Tensor) -> Tensor:
    """tr(Kc Lc) / (n - 1)^2 of two double-centred (n, n) kernel matrices."""
    return (kc * lc).sum() / (kc.shape[0] - 1) ** 2


def hsic(k: Tensor, l: Tensor) -> Tensor:  # noqa: E741 - the kernel names of the paper
    """The biased HSIC estimator tr(K H L H) / (n - 1)^2 of two (n, n) kernel matrices (>= 0 for PSD kernels)."""
    return _hsic_centred(_centre(k), _centre(l))


def normalised_hsic(code: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """HSIC(code, labels) / sqrt(HSIC(code, code) HSIC(labels, labels)) in [0, 1]: 0 for independent inputs.

    `code` (n, d) gets a Gaussian kernel (median heuristic), the int labels `target` (n,) the linear kernel of
    their one-hot vectors (so renaming the classes changes nothing). Computed in float32, without autocast.
    A batch where the code or the labels are constant has no dependence to measure: 0.
    """
    with torch.autocast(device_type=code.device.type, enabled=False):
        code = code.float().flatten(1)
        onehot = F.one_hot(target, num_classes).float()
        k, l = rbf_kernel(code), onehot @ onehot.T  # noqa: E741
        kc, lc = _centre(k), _centre(l)  # each centred once (a training-step term)
        kl, kk, ll = _hsic_centred(kc, lc), _hsic_centred(kc, kc), _hsic_centred(lc, lc)
        denom = torch.sqrt(kk * ll)
        return torch.where(denom > 1e-12, kl / denom.clamp_min(1e-12), torch.zeros_like(kl))


class HSICAdversary(Adversary):
    """A classifier-free adversary: the encoder minimises the normalised HSIC of the code and the labels."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(None)
        self.num_classes = num_classes

    def encoder_loss(self, code: Tensor, target: Tensor, progress: float) -> Tensor:
        """Normalised HSIC (in [0, 1]) between the flattened code and one-hot `target`; `progress` is unused."""
        return normalised_hsic(code, target, self.num_classes)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


def hsic_adversary(config: HSICConfig, *, in_features: int, num_classes: int) -> HSICAdversary:
    """Normalised HSIC between the code and the one-hot labels, minimised by the encoder; no network."""
    return HSICAdversary(num_classes)


# ---------------------------------------------------------------------------------------------
# Ensemble


def _reset(module: nn.Module) -> None:
    for layer in module.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


class EnsembleAdversary(Adversary):
    """K classifiers trained on the same code; the encoder is pushed towards a uniform prediction of each.

    `reset_every` > 0 re-initialises one member (in turn) every that many adversary steps, so the
    ensemble always holds a freshly trained classifier as well as older ones. The logged accuracy is the
    ensemble's (the mean of the members' probabilities).
    """

    def __init__(self, members: Sequence[nn.Module], reset_every: int = 0) -> None:
        super().__init__(None)
        self.members = nn.ModuleList(members)
        self.reset_every = reset_every
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._count: int | None = None  # a host copy of `steps`, taken on first use
        # a resumed run continues counting from the loaded `steps`
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_count", None))

    def forward(self, code: Tensor) -> Tensor:
        """Log of the mean of the members' softmax probabilities (B, classes)."""
        logp = torch.stack([F.log_softmax(m(code).float(), dim=-1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))

    def logits(self, code: Tensor) -> Tensor:
        return self(code)

    def adversary_loss(self, code: Tensor, target: Tensor) -> Tensor:
        """Sum of the members' cross-entropies (each member learns from its own); resets one member when due."""
        if self.training:
            if self.reset_every:
                if self._count is None:  # read the (checkpointed) buffer once, not every step: no device sync
                    self._count = int(self.steps)
                if self._count > 0 and self._count % self.reset_every == 0:
                    _reset(self.members[(self._count // self.reset_every - 1) % len(self.members)])
                self._count += 1
            self.steps += 1
        return sum(adversary_loss(m(code), target) for m in self.members)

    def encoder_loss(self, code: Tensor, target: Tensor, progress: float) -> Tensor:
        """Mean over the members of the uniform confusion (L_adv_En of each); `target`, `progress` unused."""
        return torch.stack([uniform_confusion(m(code)) for m in self.members]).mean()

    def extra_repr(self) -> str:
        return f"reset_every={self.reset_every}"


def ensemble(config: EnsembleConfig, *, in_features: int, num_classes: int) -> EnsembleAdversary:
    """K linear/MLP adversaries; the encoder confuses all of them; optional periodic re-initialisation."""
    shapes = config.hidden or [[]]
    members = [
        mlp_classifier(in_features, num_classes, shapes[i % len(shapes)], config.dropout) for i in range(config.members)
    ]
    return EnsembleAdversary(members, config.reset_every)


# ---------------------------------------------------------------------------------------------
# LEACE during training


class RunningLeace(nn.Module):
    """A LEACE eraser fitted on running statistics of a code and the one-hot labels; the code passes through it.

    The statistics (means, covariance of the code, cross-covariance with the labels) are exponentially weighted
    averages over the training batches: each update moves them `momentum` towards the batch's (1 / updates
    while that is larger, so the first updates average plainly). Every `refit_every` updates the eraser is
    refitted from them with `concept_erasure.LeaceFitter`. Until the first update the code passes unchanged.
    In training mode the forward keeps the raw (not yet erased) code of the batch for the next `update`.
    Statistics and eraser are float64 buffers: they are checkpointed and move with the model.
    """

    def __init__(self, dim: int, num_classes: int, momentum: float = 0.05, refit_every: int = 1) -> None:
        super().__init__()
        self.num_classes, self.momentum, self.refit_every = num_classes, momentum, refit_every
        f64 = {"dtype": torch.float64}
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("mean_x", torch.zeros(dim, **f64))
        self.register_buffer("mean_z", torch.zeros(num_classes, **f64))
        self.register_buffer("second_xx", torch.zeros(dim, dim, **f64))  # E[x x^T]
        self.register_buffer("second_xz", torch.zeros(dim, num_classes, **f64))  # E[x z^T]
        self.register_buffer("proj_left", torch.zeros(dim, num_classes, **f64))
        self.register_buffer("proj_right", torch.zeros(num_classes, dim, **f64))
        self.register_buffer("bias", torch.zeros(dim, **f64))
        self._raw: Tensor | None = None
        self._count: int | None = None  # a host copy of `updates`, read once: no device sync per step
        # a resumed run continues from the loaded `updates`
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_count", None))

    def forward(self, code: Tensor) -> Tensor:
        flat = code.flatten(1)
        if self.training:
            self._raw = flat.detach()
        # x - P_l P_r (x - b), the LEACE eraser (proj_left = 0 before the first fit: the identity)
        left, right, bias = (t.to(flat.dtype) for t in (self.proj_left, self.proj_right, self.bias))
        return (flat - ((flat - bias) @ right.T) @ left.T).view_as(code)

    @torch.no_grad()
    def update(self, target: Tensor) -> None:
        """Fold the raw codes of the last training forward, labelled `target`, into the statistics (once)."""
        if self._raw is None:
            return
        x, self._raw = self._raw.double(), None
        z = F.one_hot(target, self.num_classes).double()
        self._count = (int(self.updates) if self._count is None else self._count) + 1
        self.updates += 1
        rate = max(self.momentum, 1.0 / self._count)
        for stat, batch in (
            (self.mean_x, x.mean(0)),
            (self.mean_z, z.mean(0)),
            (self.second_xx, x.T @ x / len(x)),
            (self.second_xz, x.T @ z / len(x)),
        ):
            stat.lerp_(batch, rate)
        if self._count % self.refit_every == 0 or self._count == 1:
            self.refit(effective_samples=len(x) / rate)

    @torch.no_grad()
    def refit(self, effective_samples: float) -> None:
        """The LEACE eraser of the current statistics (covariances from the running moments)."""
        fitter = _concept_erasure().LeaceFitter(
            self.mean_x.numel(), self.num_classes, dtype=torch.float64, device=self.mean_x.device
        )
        n = max(effective_samples, 2.0)
        fitter.n = torch.tensor(n, dtype=torch.float64, device=self.mean_x.device)
        fitter.mean_x, fitter.mean_z = self.mean_x.clone(), self.mean_z.clone()
        fitter.sigma_xx_ = (self.second_xx - torch.outer(self.mean_x, self.mean_x)) * (n - 1)
        fitter.sigma_xz_ = (self.second_xz - torch.outer(self.mean_x, self.mean_z)) * (n - 1)
        eraser = fitter.eraser
        self.proj_left.copy_(eraser.proj_left)
        self.proj_right.copy_(eraser.proj_right)
        self.bias.copy_(eraser.bias if eraser.bias is not None else torch.zeros_like(self.bias))

    def extra_repr(self) -> str:
        return (
            f"dim={self.mean_x.numel()}, num_classes={self.num_classes}, momentum={self.momentum}, "
            f"refit_every={self.refit_every}"
        )


class LeaceAdversary(Adversary):
    """LEACE during training: the code passes through a running eraser of the factor (`RunningLeace`).

    No classifier and nothing for the encoder to minimise (its encoder loss is 0): the adversary step folds
    the batch's raw codes and labels into the eraser's statistics, and the network (heads, decoder, the
    other adversaries, and every later reader of the code) sees only the erased code, in training and inference.
    """

    def __init__(self, eraser: RunningLeace) -> None:
        super().__init__(None)
        self.eraser = eraser

    def code_transform(self) -> nn.Module:
        return self.eraser

    def adversary_loss(self, code: Tensor, target: Tensor) -> None:
        """Updates the running eraser with this step's raw codes (training only); nothing to train: None."""
        if self.training:
            self.eraser.update(target)
        return None

    def encoder_loss(self, code: Tensor, target: Tensor, progress: float) -> Tensor:
        """0: the eraser acts in the forward pass, not through a loss."""
        return code.new_zeros((), dtype=torch.float32)


def leace_adversary(config: LeaceConfig, *, in_features: int, num_classes: int) -> LeaceAdversary:
    """A running LEACE eraser in the code's path, refitted during training (concept-erasure)."""
    return LeaceAdversary(RunningLeace(in_features, num_classes, config.momentum, config.refit_every))


# ---------------------------------------------------------------------------------------------
# LEACE (post hoc)


def _concept_erasure():
    """The `concept_erasure` module, imported without the FutureWarning that recent torch gives for its torch.jit.script."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        import concept_erasure
    return concept_erasure


def fit_erasers(
    train_codes: Mapping[str, np.ndarray],
    train_labels: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    num_classes: Mapping[str, int],
) -> dict[str, object]:
    """One LEACE eraser per code, removing every factor that `pairs` ((factor, code), the adversaries) name for it.

    Fitted on the train split's codes against the concatenated one-hot labels of those factors, in float64.
    Returns code -> `concept_erasure.LeaceEraser` (call it on a float tensor of the code's rows).
    """
    LeaceFitter = _concept_erasure().LeaceFitter

    by_code: dict[str, list[str]] = {}
    for factor, code in pairs:
        by_code.setdefault(code, [])
        if factor not in by_code[code]:
            by_code[code].append(factor)
    erasers: dict[str, object] = {}
    for code, factors in by_code.items():
        if code not in train_codes:
            raise FactorlabError(f"--erase: the model has no code {code!r} to erase {', '.join(factors)} from")
        x = torch.from_numpy(np.asarray(train_codes[code], dtype=np.float64).reshape(len(train_codes[code]), -1))
        z = torch.cat(
            [F.one_hot(torch.from_numpy(np.asarray(train_labels[f], dtype=np.int64)), num_classes[f]) for f in factors],
            dim=1,
        ).double()
        fitter = LeaceFitter(x.shape[1], z.shape[1], dtype=torch.float64)
        fitter.update(x, z)
        erasers[code] = fitter.eraser
    return erasers


def apply_eraser(eraser, codes: np.ndarray) -> np.ndarray:
    """Erase (n, d) codes with a fitted LEACE eraser; float32 out, as the codes came in."""
    x = torch.from_numpy(np.asarray(codes, dtype=np.float64).reshape(len(codes), -1))
    with torch.no_grad():
        return eraser(x).float().numpy()


class ErasedBranch(nn.Module):
    """A branch whose code passes through a fitted LEACE eraser (`concept_erasure.LeaceEraser`, in its dtype).

    The eraser's matrices are buffers, so the wrapped branch moves with the model (`.to(device)`); codes keep
    their shape and dtype. Used by `factorlab eval --erase` for the swap grid and `--swap` scores.
    """

    def __init__(self, branch: nn.Module, eraser) -> None:
        super().__init__()
        self.branch = branch
        self.register_buffer("proj_left", eraser.proj_left.detach().clone())
        self.register_buffer("proj_right", eraser.proj_right.detach().clone())
        self.register_buffer("bias", None if eraser.bias is None else eraser.bias.detach().clone())

    @property
    def eraser(self):
        return _concept_erasure().LeaceEraser(self.proj_left, self.proj_right, self.bias)

    def forward(self, features: Tensor) -> Tensor:
        code = self.branch(features)
        return self.eraser(code.flatten(1).to(self.proj_left.dtype)).to(code.dtype).view_as(code)


def erase_model(model, erasers: Mapping[str, object]):
    """Wrap the branches of `model` (a Disentangler) named in `erasers` (code -> LeaceEraser) in place; returns it."""
    for code, eraser in erasers.items():
        # the model's device: a branch may have no parameters (the `identity` branch)
        model.net.branches[code] = ErasedBranch(model.net.branches[code], eraser).to(next(model.parameters()).device)
    return model


def save_erasers(erasers: Mapping[str, object], path) -> None:
    """Write code -> eraser matrices (a plain dict of tensors, loadable with weights_only=True)."""
    from factorlab.files import atomic_write

    state = {
        code: {"proj_left": e.proj_left, "proj_right": e.proj_right, "bias": e.bias} for code, e in erasers.items()
    }

    def write(tmp) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)

    atomic_write(path, write)


def load_erasers(path) -> dict[str, object]:
    """The erasers `save_erasers` wrote (code -> `concept_erasure.LeaceEraser`)."""
    LeaceEraser = _concept_erasure().LeaceEraser
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {code: LeaceEraser(v["proj_left"], v["proj_right"], v["bias"]) for code, v in state.items()}
