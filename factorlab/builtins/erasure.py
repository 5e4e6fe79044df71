"""Built-in erasure methods (docs/erasure.md), registered exactly as a third-party plugin registers its parts.

- adversaries `ensemble` (K linear/MLP classifiers, periodic re-initialisation) and `hsic` (an independence
  penalty with no network), both in `factorlab.erasure`;
- LEACE (post-hoc linear erasure with the `concept-erasure` package) is not a part but an option of
  `factorlab eval --erase`, implemented in `factorlab.erasure` too.
"""

from __future__ import annotations

from factorlab.hookspecs import Register, hookimpl


@hookimpl
def factorlab_register_adversaries(register: Register) -> None:
    register(
        "ensemble",
        "factorlab.erasure:ensemble",
        config="factorlab.erasure:EnsembleConfig",
        description="K linear/MLP adversaries the encoder confuses at once; optional re-initialisation (reset_every).",
    )
    register(
        "hsic",
        "factorlab.erasure:hsic_adversary",
        config="factorlab.erasure:HSICConfig",
        description="Normalised HSIC between the code and the one-hot labels as the encoder's penalty; no network.",
    )
