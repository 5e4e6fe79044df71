"""factorlab-pose: the plugin of factorlab's tutorial (docs/plugins.md).

Registration stays light: configs and factories of torch-based parts are named "module:attribute",
so `factorlab ls` never imports them; they load when a recipe builds a part.
"""

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

import factorlab
from factorlab import Factor


class PoseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown recipe keys are errors
    bins: int = Field(5, ge=2, le=20, description="Number of equal yaw bins over [-0.5, 0.5].")


def pose_factor(config: PoseConfig) -> Factor:
    """Head yaw in equal bins, derived from the data set's ground-truth yaw."""
    edges = np.linspace(-0.5, 0.5, config.bins + 1)[1:-1]
    return Factor(
        "pose",
        tuple(f"yaw{i}" for i in range(config.bins)),
        "head yaw, binned",
        derive=lambda truth: np.digitize(truth["yaw"], edges),
        needs=("yaw",),
    )


class HSICConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sigma: float = Field(0.0, ge=0.0, description="Gaussian kernel width on the code; 0 = median distance.")


class EnsembleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: int = Field(3, ge=1, le=16, description="Linear adversaries trained side by side.")
    reset_every: int = Field(0, ge=0, description="Re-initialise one member every N adversary steps (0 = never).")


class CodeNormConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantile: float = Field(0.5, ge=0.0, le=1.0, description="Which quantile of the per-sample code norms.")


@factorlab.hookimpl
def factorlab_register_factors(register):
    register("pose", pose_factor, config=PoseConfig, description="head yaw, binned (from ground truth)")


@factorlab.hookimpl
def factorlab_register_adversaries(register):
    # (factorlab's own `hsic` and `ensemble` are fuller versions: a name registered twice is an error)
    register("rbf_hsic", "factorlab_pose.adversaries:hsic", config=HSICConfig, description="HSIC independence penalty")
    register(
        "linear_ensemble", "factorlab_pose.adversaries:ensemble", config=EnsembleConfig, description="K adversaries"
    )


@factorlab.hookimpl
def factorlab_register_datasets(register):
    register(
        "csvfaces",
        "factorlab_pose.csvfaces:build",
        config="factorlab_pose.csvfaces:CSVFacesConfig",
        description="images listed in root/faces.csv (path,expression,part)",
        labels=("expression",),
        ground_truth=(),
        source="factorlab_pose.csvfaces:SOURCE",
    )


@factorlab.hookimpl
def factorlab_register_metrics(register):
    register("code_norm", code_norm, config=CodeNormConfig, description="a quantile of each code's L2 norm")


def code_norm(config: CodeNormConfig):
    """Per code: the configured quantile of the samples' L2 norms."""

    def metric(codes, labels):
        return {f"code_norm/{name}/q{config.quantile:g}": float(np.quantile(np.linalg.norm(code, axis=1), config.quantile))
                for name, code in codes.items()}  # fmt: skip

    return metric
