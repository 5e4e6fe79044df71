"""Built-in branches, heads, adversaries, decoders and reconstruction losses."""

from __future__ import annotations

from factorlab.hookspecs import Register, hookimpl


def _refs(module: str, factory: str, config: str) -> tuple[str, str]:
    return f"factorlab.{module}:{factory}", f"factorlab.{module}:{config}"


@hookimpl
def factorlab_register_branches(register: Register) -> None:
    for name, factory, config, description in [
        (
            "conv4",
            "conv4",
            "Conv4Config",
            "Four conv layers, each followed by a leaky ReLU (the paper's B_exp / B_non-exp).",
        ),
        ("mlp", "mlp", "MLPBranchConfig", "Flatten + linear layers with leaky ReLU."),
        ("identity", "identity", "IdentityConfig", "The encoder's features, unchanged (or flattened), are the code."),
    ]:
        target, options = _refs("branches", factory, config)
        register(name, target, config=options, description=description)


@hookimpl
def factorlab_register_heads(register: Register) -> None:
    for name, config, description in [
        ("linear", "LinearHeadConfig", "Flatten + one linear layer (the paper's C_exp)."),
        ("mlp", "MLPHeadConfig", "Flatten + a multi-layer perceptron with ReLU."),
    ]:
        target, options = _refs("heads", name, config)
        register(name, target, config=options, description=description)


@hookimpl
def factorlab_register_adversaries(register: Register) -> None:
    for name, config, description in [
        ("uniform", "UniformConfig", "The paper's adversary: encoder pushed to a uniform prediction (eq. 2)."),
        ("grl", "GRLConfig", "Gradient reversal (DANN) with the ramp lambda = 2/(1+exp(-gamma p)) - 1."),
    ]:
        target, options = _refs("adversaries", name, config)
        register(name, target, config=options, description=description)


@hookimpl
def factorlab_register_decoders(register: Register) -> None:
    target, options = _refs("decoders", "deconv6", "Deconv6Config")
    register(
        "deconv6",
        target,
        config=options,
        description="Six transposed convolutions with leaky ReLU, sigmoid last (the paper's De).",
    )


@hookimpl
def factorlab_register_losses(register: Register) -> None:
    for name, description in [
        ("l2", "Squared error between image and reconstruction (the paper's L_r)."),
        ("l1", "Absolute error between image and reconstruction."),
    ]:
        target, options = _refs("losses", name, "ReconstructionConfig")
        register(name, target, config=options, description=description)
