"""The identity factor: who the face belongs to. Classes come from the data set (subjects, folders)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

import factorlab
from factorlab import Factor

__version__ = "0.1.0"


class IdentityConfig(BaseModel):
    """Options of the identity factor (none yet: its classes come from the data set)."""

    model_config = ConfigDict(extra="forbid")


def identity_factor(config: IdentityConfig) -> Factor:
    """The identity factor; its class names (subject ids) are supplied by the data set."""
    return Factor("identity", None, "identity of the person")


@factorlab.hookimpl
def factorlab_register_factors(register):
    register("identity", identity_factor, config=IdentityConfig, description="identity of the person (classes from the data set)")
