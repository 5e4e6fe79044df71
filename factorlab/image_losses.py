"""Decoder losses beyond the paper's pixel L2: SSIM, a perceptual loss on a face network, a PatchGAN, their sum.

Every loss here is a reconstruction-loss part: `loss(x, x_hat) -> scalar` (float32, mean over the
batch), `x` the input images and `x_hat` the decoder's reconstructions, both (B, 3, H, W) in [0, 1].
Choose one with `loss.reconstruction`, or several with `loss.reconstruction = "sum"` and
`loss.reconstruction_options = { terms = [{ type = "l1", weight = 1.0 }, { type = "ssim", weight = 1.0 }] }`.

A loss that owns a model trained in its own step (the image discriminator of `patchgan`) has trainable
parameters and a `discriminator_loss(x, x_hat)`; the trainer then runs a discriminator step after the
adversary step, on the detached reconstructions, with `[optim.adversary]`, and freezes those parameters
in the main step (as it does the adversaries). A loss without trainable parameters changes nothing in
the training loop. In eval mode (`.eval()`, as `factorlab.train.evaluate` uses it) the GAN term is 0:
a validation loss from an untrained discriminator would mean nothing.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim
from torch import Tensor, nn

from factorlab.builtins.parts import (  # their options live with their registration
    PatchGANConfig,
    PerceptualConfig,
    SSIMLossConfig,
    SumLossConfig,
)
from factorlab.errors import RecipeError


def _float32(fn):
    def wrapped(x: Tensor, x_hat: Tensor, *args, **kwargs) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return fn(x.float(), x_hat.float(), *args, **kwargs)

    return wrapped


class SSIMLoss(nn.Module):
    """1 - SSIM(x, x_hat), mean over the batch: Wang et al. 2004 via pytorch-msssim (valid positions, K 0.01/0.03)."""

    def __init__(self, window: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.window, self.sigma = window, sigma

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        if min(x.shape[-2:]) < self.window:
            raise RecipeError(f"the ssim loss needs images of at least {self.window} pixels a side, got {x.shape[-1]}")
        return _float32(self._loss)(x, x_hat)

    def _loss(self, x: Tensor, x_hat: Tensor) -> Tensor:
        value = _ssim(x_hat, x, data_range=1.0, size_average=True, win_size=self.window, win_sigma=self.sigma)
        return 1.0 - value

    def extra_repr(self) -> str:
        return f"window={self.window}, sigma={self.sigma}"


class PerceptualLoss(nn.Module):
    """Feature distance on a frozen Inception-ResNet-V1 trunk (facenet-pytorch), e.g. the CASIA-WebFace one.

    Both images go through the trunk (normalised as facenet expects); at each layer in `layers` the
    features are unit-normalised over channels and their squared difference is averaged over channels
    and positions (LPIPS without its learned weights); the layers' distances are averaged. The trunk
    is frozen and kept in eval mode (its BatchNorm uses its stored statistics); gradients flow to x_hat.
    """

    def __init__(self, trunk: nn.Sequential, layers: list[str], image_size: int | None = None) -> None:
        super().__init__()
        self.trunk = trunk.eval().requires_grad_(False)
        self.layers = list(layers)
        self.image_size = image_size

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.trunk.eval()  # always: the loss is a fixed function of the images
        return self

    def features(self, images: Tensor) -> list[Tensor]:
        """The unit-normalised features of `layers` for images in [0, 1]."""
        if self.image_size and images.shape[-1] != self.image_size:
            size = (self.image_size, self.image_size)
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        x = (images - 0.5) * (255.0 / 128.0)  # facenet's fixed_image_standardization
        out = []
        for name, layer in self.trunk.named_children():
            x = layer(x)
            if name in self.layers:
                out.append(F.normalize(x, dim=1, eps=1e-8))
        return out

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return _float32(self._loss)(x, x_hat)

    def _loss(self, x: Tensor, x_hat: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.features(x)
        distances = [(a - b).square().sum(dim=1).mean() for a, b in zip(self.features(x_hat), target, strict=True)]
        return torch.stack(distances).mean()

    def extra_repr(self) -> str:
        return f"layers={self.layers}, image_size={self.image_size}"


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): stride-2 4x4 convs with leaky ReLU, then one score per patch (B, 1, h, w)."""

    def __init__(self, widths: list[int], spectral_norm: bool = True) -> None:
        super().__init__()
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = 3
        for width in widths:
            layers += [wrap(nn.Conv2d(c_in, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_in = width
        layers.append(wrap(nn.Conv2d(c_in, 1, 4, stride=1, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images * 2 - 1)


class PatchGANLoss(nn.Module):
    """The generator's loss against a PatchGAN discriminator that this part owns and trains in its own step.

    - `forward(x, x_hat)`: the generator's loss on the reconstructions: hinge -mean D(x_hat); non-saturating
      mean softplus(-D(x_hat)) (= -log sigmoid D). 0 in eval mode (see the module docstring).
    - `discriminator_loss(x, x_hat)`: the discriminator's loss, real x against fake x_hat (detach x_hat):
      hinge mean relu(1 - D(x)) + mean relu(1 + D(x_hat)); non-saturating mean softplus(-D(x)) + softplus(D(x_hat)).
    """

    def __init__(self, discriminator: nn.Module, loss: str = "hinge") -> None:
        super().__init__()
        if loss not in ("hinge", "nonsaturating"):
            raise ValueError(f"PatchGANLoss loss must be 'hinge' or 'nonsaturating', got {loss!r}")
        self.discriminator = discriminator
        self.loss = loss

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        if not self.training:
            return x.new_zeros((), dtype=torch.float32)
        # the discriminator in eval mode: the generator's step leaves all of it alone (spectral norm's power
        # iteration updates its vectors only in the discriminator's own step)
        was_training = self.discriminator.training
        self.discriminator.eval()
        try:
            fake = self.discriminator(x_hat).float()
        finally:
            self.discriminator.train(was_training)
        return -fake.mean() if self.loss == "hinge" else F.softplus(-fake).mean()

    def discriminator_loss(self, x: Tensor, x_hat: Tensor) -> Tensor:
        real, fake = self.discriminator(x).float(), self.discriminator(x_hat).float()
        if self.loss == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def extra_repr(self) -> str:
        return f"loss={self.loss!r}"


class SumLoss(nn.Module):
    """A weighted sum of reconstruction losses; `discriminator_loss` sums those of the terms that have one."""

    def __init__(self, terms: list[nn.Module], weights: list[float], names: list[str]) -> None:
        super().__init__()
        self.terms = nn.ModuleList(terms)
        self.weights = list(weights)
        self.names = list(names)

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return sum(w * term(x, x_hat) for term, w in zip(self.terms, self.weights, strict=True))

    def parts(self, x: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        """Each term's unweighted value, by `<index>_<type>` (for logs and tests)."""
        return {
            f"{k}_{name}": term(x, x_hat) for k, (name, term) in enumerate(zip(self.names, self.terms, strict=True))
        }

    def discriminator_loss(self, x: Tensor, x_hat: Tensor) -> Tensor | None:
        owned = [term.discriminator_loss(x, x_hat) for term in self.terms if hasattr(term, "discriminator_loss")]
        return sum(owned) if owned else None

    def extra_repr(self) -> str:
        return "weights=" + ", ".join(f"{n}:{w:g}" for n, w in zip(self.names, self.weights, strict=True))


def ssim(config: SSIMLossConfig) -> SSIMLoss:
    """1 - SSIM, mean over the batch."""
    return SSIMLoss(config.window, config.sigma)


def perceptual(config: PerceptualConfig) -> PerceptualLoss:
    """Feature distance on a frozen Inception-ResNet-V1 trunk loaded with `config.weights`."""
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    from factorlab.encoders.facenet import LAYERS
    from factorlab.weights import load_inception_resnet_v1

    full = InceptionResnetV1()
    load_inception_resnet_v1(full, config.weights)
    last = max(LAYERS.index(name) for name in config.layers)
    trunk = nn.Sequential(OrderedDict((name, getattr(full, name)) for name in LAYERS[: last + 1]))
    return PerceptualLoss(trunk, config.layers, config.image_size)


def patchgan(config: PatchGANConfig) -> PatchGANLoss:
    """A PatchGAN discriminator and its generator/discriminator losses."""
    return PatchGANLoss(PatchDiscriminator(config.widths, config.spectral_norm), config.loss)


def weighted_sum(config: SumLossConfig) -> SumLoss:
    """A weighted sum of registered reconstruction losses."""
    from factorlab.plugins import get_host

    host = get_host()
    modules, weights, names = [], [], []
    for term in config.terms:
        entry = host.get("losses", term.type)
        modules.append(entry.factory(entry.config.model_validate(term.options)))
        weights.append(term.weight)
        names.append(term.type)
    return SumLoss(modules, weights, names)
