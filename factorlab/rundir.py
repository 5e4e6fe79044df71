"""Reading a finished (or running) run folder back: its recipe, its model with trained weights."""

from __future__ import annotations

import json
from pathlib import Path

from factorlab.errors import FactorlabError
from factorlab.model import Disentangler, build_model
from factorlab.recipe import Recipe, load_recipe


def check_run_dir(rundir: Path) -> Path:
    """The run folder, or an error saying what is missing."""
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise FactorlabError(f"run folder not found: {rundir}; pass the folder that `factorlab run` printed")
    if not (rundir / "recipe.toml").is_file():
        raise FactorlabError(
            f"{rundir} is not a run folder (no recipe.toml); pass the folder that `factorlab run` printed"
        )
    return rundir


def load_run(rundir: Path, checkpoint: str = "best") -> tuple[Recipe, Disentangler]:
    """The recipe and the trained model of a run (checkpoint 'best' or 'last'), in eval mode on the CPU."""
    from factorlab.train import CHECKPOINTS, load_checkpoint

    rundir = check_run_dir(rundir)
    recipe = load_recipe(rundir / "recipe.toml")
    path = rundir / CHECKPOINTS / f"{checkpoint}.pt"
    if checkpoint == "best" and not path.is_file():
        path = rundir / CHECKPOINTS / "last.pt"
    state = load_checkpoint(path)
    weights = state["model"] if "model" in state else state["trainer"]["model"]
    options = recipe.encoder.options
    if "weights" in type(options).model_fields:  # the checkpoint holds the trained trunk: skip the pretrained load
        recipe.encoder._options = options.model_copy(update={"weights": "none"})
    model = build_model(recipe, classes=state["classes"])
    model.load_state_dict(weights)
    model.eval()
    return recipe, model


def load_summary(rundir: Path) -> dict:
    """The run's summary.json (written when a run finishes)."""
    path = check_run_dir(rundir) / "summary.json"
    if not path.is_file():
        raise FactorlabError(
            f"{rundir} has no summary.json: the run has not finished (resume it with factorlab run --resume {rundir})"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FactorlabError(
            f"{path}, line {err.lineno}: not valid JSON ({err.msg}); rerun or resume the run to rewrite it"
        ) from None
