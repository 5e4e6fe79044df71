"""Built-in `factorlab` sub-commands. Each command module imports its heavy parts inside its handler."""

from __future__ import annotations

from factorlab.hookspecs import Register, hookimpl

COMMANDS = [
    ("run", "core:run_command", "train a recipe; writes a run folder (metrics, checkpoints, summary)"),
    ("validate", "core:validate_command", "check a recipe (and overrides) without running it"),
    ("runs", "runs:runs_command", "list run folders (under runs/) with their state and headline test accuracies"),
    ("plugins", "core:plugins_command", "list plugins, their versions and what each registered"),
    ("ls", "core:ls_command", "list registered parts (encoders, branches, ...) and the recipes under recipes/"),
    ("data", "core:data_command", "look at data sets: `factorlab data preview synthfaces --out grid.png`"),
    (
        "eval",
        "evaluate:eval_command",
        "evaluate a run: heads, leakage probes, similarity, MIG/DCI, plots; writes report.md/html",
    ),
    ("compare", "evaluate:compare_command", "one table across runs in the paper's Table 1/2 layout (+ leakage)"),
    ("prepare", "prepare:add_prepare_command", "crop faces once into a uint8 cache (resumable)"),
    ("weights", "weights:add_weights_command", "list and fetch pretrained encoder weights (offline CASIA-WebFace)"),
    ("swap", "swap:swap_command", "synthesise faces by swapping codes between images (paper Fig. 2); --score vs truth"),
    ("predict", "predict:predict_command", "each face's class and probabilities for every head, on your own images"),
    ("export", "export:export_command", "write a run's model as an ONNX file (class names and input size inside)"),
]


@hookimpl
def factorlab_register_commands(register: Register) -> None:
    for name, target, description in COMMANDS:
        register(name, f"factorlab.commands.{target}", description=description)
