"""The expression factor (the paper's): AffectNet's eight classes in AffectNet order, or the 7-class subset."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import factorlab
from factorlab import Factor

__version__ = "0.1.0"

#: AffectNet's expression ids 0-7, the canonical order every data set maps onto.
CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
#: The 7-class setting drops contempt (AffectNet's 7-class protocol).
CLASSES_7 = CLASSES[:7]


class ExpressionConfig(BaseModel):
    """Options of the expression factor."""

    model_config = ConfigDict(extra="forbid")
    classes: Literal[7, 8] = Field(8, description="8 = AffectNet's eight classes; 7 drops contempt.")


def expression_factor(config: ExpressionConfig) -> Factor:
    """The expression factor with 8 (or 7) canonical classes in AffectNet order."""
    return Factor("expression", CLASSES if config.classes == 8 else CLASSES_7, "facial expression")


@factorlab.hookimpl
def factorlab_register_factors(register):
    register(
        "expression",
        expression_factor,
        config=ExpressionConfig,
        description="facial expression: AffectNet's 8 classes (or 7 without contempt)",
    )
