"""Any timm model as a feature extractor (`features_only=True`), normalised with the model's mean and std."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from factorlab.builtins.encoders import TimmConfig  # their options live with their registration
from factorlab.errors import RecipeError, UnknownNameError


class TimmEncoder(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> one feature map of a timm model."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        # buffers, so they follow the model to the device and normalisation runs there
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.model((images - self.mean) / self.std)[-1]


def timm_encoder(config: TimmConfig, *, image_size: int) -> TimmEncoder:
    """A timm model as a feature extractor."""
    import timm  # ~2.5 s to import: only when this encoder is built

    if not timm.is_model(config.name):
        close = difflib.get_close_matches(config.name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"encoder.name = {config.name!r} is not a timm model.{hint} See `timm.list_models()` for the choices."
        )
    kwargs: dict[str, Any] = dict(config.kwargs)
    if config.weights == "none":
        pretrained = False
    elif config.weights == "timm":
        pretrained = True
    else:
        path = Path(config.weights).expanduser()
        if not path.is_file():
            raise RecipeError(
                f"encoder.weights = {config.weights!r}: no such file. Give a local weights file for "
                f"{config.name!r}, 'timm' for timm's pretrained weights, or 'none'."
            )
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = dict(file=str(path))
    model = timm.create_model(
        config.name, pretrained=pretrained, features_only=True, out_indices=(config.out_index,), **kwargs
    )
    cfg = model.pretrained_cfg
    return TimmEncoder(model, cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)))
