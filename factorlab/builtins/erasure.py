"""Built-in erasure methods (docs/erasure.md), registered exactly as a third-party plugin registers its parts.

- adversaries `ensemble` (K linear/MLP classifiers, periodic re-initialisation) and `hsic` (an independence
  penalty with no network), both in `factorlab.erasure`;
- adversary `leace`: LEACE during training (the `concept-erasure` package), a running eraser the code passes
  through; post-hoc LEACE is an option of `factorlab eval --erase`. Both in `factorlab.erasure` too.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from factorlab.hookspecs import Register, hookimpl


class HSICConfig(BaseModel):
    """Options of the `hsic` adversary (it has none: kernel widths follow the median heuristic per batch)."""

    model_config = ConfigDict(extra="forbid")


class EnsembleConfig(BaseModel):
    """Options of the `ensemble` adversary."""

    model_config = ConfigDict(extra="forbid")

    members: int = Field(4, ge=1, le=64, description="Number of classifiers K in the ensemble.")
    hidden: list[list[int]] = Field(
        default_factory=lambda: [[], [256]],
        description="Hidden layer sizes per member, used in turn ([] = linear): the default alternates linear and "
        "one-hidden-layer MLP members.",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in each member.")
    reset_every: int = Field(
        0, ge=0, description="Re-initialise one member, in turn, every this many adversary steps; 0 = never."
    )

    @field_validator("hidden")
    @classmethod
    def _positive(cls, value: list[list[int]]) -> list[list[int]]:
        if any(size < 1 for sizes in value for size in sizes):
            raise ValueError("every hidden layer size must be at least 1")
        return value


class LeaceConfig(BaseModel):
    """Options of the `leace` adversary (LEACE during training: a running eraser in the code's path)."""

    model_config = ConfigDict(extra="forbid")

    momentum: float = Field(
        0.05, gt=0.0, le=1.0, description="Weight of each batch in the running statistics (exponential average)."
    )
    refit_every: int = Field(1, ge=1, description="Refit the eraser from the statistics every this many steps.")


@hookimpl
def factorlab_register_adversaries(register: Register) -> None:
    register(
        "ensemble",
        "factorlab.erasure:ensemble",
        config=EnsembleConfig,
        description="K linear/MLP adversaries the encoder confuses at once; optional re-initialisation (reset_every).",
    )
    register(
        "hsic",
        "factorlab.erasure:hsic_adversary",
        config=HSICConfig,
        description="Normalised HSIC between the code and the one-hot labels as the encoder's penalty; no network.",
    )
    register(
        "leace",
        "factorlab.erasure:leace_adversary",
        config=LeaceConfig,
        description="LEACE during training: the code passes through a running linear eraser of the factor.",
    )
