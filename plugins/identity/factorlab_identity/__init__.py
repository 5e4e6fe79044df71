"""The identity factor (who the face belongs to) and an identity-verification metric.

Written exactly as a third-party plugin: it imports only factorlab's public API and is found through
its `factorlab` entry point (`identity = "factorlab_identity"`); FACTORLAB_DISABLE_PLUGINS=identity
turns it off.

Identity classes come from the data set (CK+ subjects, SynthFaces identities, folder names). The
paper's identity extension (Fig. 2) is recipe content built from generic parts, both directions of
the disentanglement:

    [[heads]]        factor = "identity", code = "nonexp", type = "linear"    # identity is read from nonexp
    [[adversaries]]  factor = "identity", code = "exp",    type = "uniform"   # eq. 2 with identity labels

The linear head and the uniform adversary take any number of classes, so they serve identity as they
are; the paper's identity adversary (eq. 2 with identity labels) is exactly the `uniform` adversary
with `factor = "identity"`. For the identity code this plugin adds the head face recognition uses, a
`cosine` classifier (normalised code and class weights, a learned scale), so that codes of one person
point the same way and `identity_verification` can compare them by cosine. What identity does need is a metric that still means something when the test
subjects are not the training subjects (CK+ folds and SynthFaces splits are subject-disjoint, so an
identity *classifier* cannot be scored on them): verification, i.e. do two codes of the same person
lie closer than codes of two different people.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

import factorlab
from factorlab import Factor

__version__ = "0.1.0"

# Registration is light (pydantic only): the cosine head (torch) and the verification metric (numpy)
# live in their own modules, named by "module:attribute" and imported when a part is built.


class IdentityConfig(BaseModel):
    """Options of the identity factor (none: its classes come from the data set)."""

    model_config = ConfigDict(extra="forbid")


def identity_factor(config: IdentityConfig) -> Factor:
    """The identity factor; its class names (subject ids) are supplied by the data set."""
    return Factor("identity", None, "identity of the person")


class VerificationConfig(BaseModel):
    """Options of the `identity_verification` metric."""

    model_config = ConfigDict(extra="forbid")

    pairs: int = Field(5000, ge=10, description="Same-identity and different-identity pairs drawn (each).")
    seed: int = Field(0, description="Seed of the pair draw.")


class CosineHeadConfig(BaseModel):
    """Options of the `cosine` head."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(16.0, gt=0.0, description="Initial scale of the cosines (learned; normalised softmax).")


@factorlab.hookimpl
def factorlab_register_factors(register):
    register(
        "identity",
        identity_factor,
        config=IdentityConfig,
        description="identity of the person (classes from the data set)",
    )


@factorlab.hookimpl
def factorlab_register_heads(register):
    register(
        "cosine",
        "factorlab_identity.heads:cosine_head",
        config=CosineHeadConfig,
        description="normalised-softmax classifier (cosine x learned scale), the usual head of an identity code",
    )


@factorlab.hookimpl
def factorlab_register_metrics(register):
    register(
        "identity_verification",
        "factorlab_identity.verification:identity_verification",
        config=VerificationConfig,
        description="per code: ROC AUC of cosine similarity, same vs different identity (works on unseen subjects)",
    )


_MOVED = {
    "CosineHead": "heads",
    "cosine_head": "heads",
    "roc_auc": "verification",
    "verification_pairs": "verification",
    "identity_verification": "verification",
}


def __getattr__(name: str):
    """Names of 0.1 that moved into submodules stay importable from the package."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
