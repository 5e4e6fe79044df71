"""factorlab's own parts, registered through the very hooks third-party plugins use (entry point `core`)."""

from __future__ import annotations

from factorlab.hookspecs import hookimpl


def _register_parts(register, modules) -> None:
    for module in modules:
        for name, factory, config, description in module.PARTS:
            register(name, factory, config=config, description=description)


@hookimpl
def factorlab_register_encoders(register):
    from factorlab.encoders import facenet, small_cnn, timm_encoder

    _register_parts(register, [facenet, timm_encoder, small_cnn])


@hookimpl
def factorlab_register_branches(register):
    from factorlab import branches

    _register_parts(register, [branches])


@hookimpl
def factorlab_register_heads(register):
    from factorlab import heads

    _register_parts(register, [heads])


@hookimpl
def factorlab_register_adversaries(register):
    from factorlab import adversaries

    _register_parts(register, [adversaries])


@hookimpl
def factorlab_register_decoders(register):
    from factorlab import decoders

    _register_parts(register, [decoders])


@hookimpl
def factorlab_register_losses(register):
    from factorlab import losses

    _register_parts(register, [losses])


@hookimpl
def factorlab_register_datasets(register):
    from factorlab.data import synthfaces

    register(
        "synthfaces",
        synthfaces.build,
        config=synthfaces.SynthFacesConfig,
        description="procedurally rendered faces with ground-truth factors (no download)",
    )
    from factorlab.data import affectnet, ckplus, fer2013, imagefolder, rafdb

    for module in (affectnet, ckplus, fer2013, rafdb, imagefolder):
        name, build, config, description = module.DATASET
        register(name, build, config=config, description=description)


@hookimpl
def factorlab_register_commands(register):
    from factorlab.commands import core
    from factorlab.commands.evaluate import compare_command, eval_command
    from factorlab.commands.prepare import add_prepare_command
    from factorlab.commands.weights import add_weights_command

    for name, factory, description in core.COMMANDS:
        register(name, factory, description=description)
    register(
        "eval",
        eval_command,
        description="evaluate a run: heads, leakage probes, similarity, MIG/DCI, plots; writes report.md/html",
    )
    register(
        "compare", compare_command, description="one table across runs in the paper's Table 1/2 layout (+ leakage)"
    )
    register("prepare", add_prepare_command, description="crop faces once into a uint8 cache (resumable)")
    register(
        "weights", add_weights_command, description="list and fetch pretrained encoder weights (offline CASIA-WebFace)"
    )
    from factorlab.commands.swap import swap_command

    register(
        "swap",
        swap_command,
        description="synthesise faces by swapping codes between images (paper Fig. 2); --score vs truth",
    )
