"""MODEL_CARD.md of a run folder: what the model predicts, its recipe, data, metrics (and from which checkpoint),
leakage, intended use and limits. Written by `factorlab run` when a run finishes and refreshed by `factorlab eval`.

The card reads only the run's files (summary.json, eval.json when there is one): it loads no model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factorlab import leakage
from factorlab.files import atomic_write_text, read_json_object
from factorlab.report import markdown_table, pct

CARD = "MODEL_CARD.md"


def _checkpoint_line(info: Mapping | None, fallback: str) -> str:
    if not info:
        return f"checkpoint `{fallback}`"
    text = (
        f"checkpoint `{info.get('name')}` (`{info.get('file')}`, epoch {info.get('epoch')}, {info.get('selected_on')}"
    )
    if info.get("value") is not None:
        text += f" = {info['value']:.4f}"
    return text + ")"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"`{json.dumps(value)}`" if isinstance(value, (list, dict)) else f"`{value}`"


def model_card(rundir: Path) -> str:
    """The Markdown text of a run's model card (from summary.json and eval.json)."""
    rundir = Path(rundir)
    summary = read_json_object(rundir / "summary.json") or {}
    evaluation = read_json_object(rundir / "eval.json")
    recipe = summary.get("recipe", {})
    classes: dict[str, list[str]] = summary.get("classes", {})
    heads = recipe.get("heads", [])
    adversaries = recipe.get("adversaries", [])
    data = recipe.get("data", {})
    dataset = data.get("dataset", "?")
    size = data.get("image_size", "?")
    name = summary.get("name", rundir.name)
    lines = [f"# Model card: {name}", ""]
    lines += [
        f"Run folder `{rundir.name}`, trained by factorlab from `recipe.toml` (beside this file). "
        "Written when the run finished and refreshed by `factorlab eval`; every number below is read from "
        "`summary.json` or `eval.json` and names the checkpoint it comes from.",
        "",
        "## What it predicts",
        "",
        f"Input: an RGB face image, cropped and resized to {size}x{size} pixels as in training "
        f"(`factorlab predict` does this; see `--align`).",
        "",
    ]
    rows = []
    for head in heads:
        names = classes.get(head["factor"], [])
        shown = ", ".join(names) if len(names) <= 12 else ", ".join(names[:10]) + f", ... ({len(names)} in all)"
        rows.append([head["factor"], head["code"], head.get("type", ""), len(names), shown])
    lines += [markdown_table(["factor", "from code", "head", "classes", "class names"], rows), ""]
    codes = recipe.get("codes", {})
    encoder = recipe.get("encoder", {})
    parts = [
        f"encoder `{encoder.get('type', '?')}`"
        + (f" (initial weights `{encoder['weights']}`)" if "weights" in encoder else "")
    ]
    parts.append("codes " + ", ".join(f"`{c}` ({v.get('branch', '?')})" for c, v in codes.items()))
    if adversaries:
        parts.append(
            "adversaries " + ", ".join(f"`{a['factor']}` on `{a['code']}` ({a.get('type', '')})" for a in adversaries)
        )
    else:
        parts.append("no adversary")
    if recipe.get("decoder"):
        parts.append("a decoder")
    lines += [
        "Architecture: " + "; ".join(parts) + ".",
        "",
        f'Use it: `factorlab predict {rundir} photos/` (a table), `factorlab.load("{rundir}").predict(images)` '
        f"in Python, `factorlab export {rundir} --out model.onnx` for ONNX Runtime.",
        "",
    ]

    run = recipe.get("run", {})
    optim = recipe.get("optim", {})
    loss = recipe.get("loss", {})
    lines += ["## Recipe", "", f"Reproduce with `factorlab run {rundir / 'recipe.toml'}`.", ""]
    recipe_rows = [
        ["epochs", _value(run.get("epochs"))],
        ["batch size", _value(run.get("batch_size"))],
        ["seed", _value(run.get("seed"))],
        ["losses", ", ".join(f"{k} = {v}" for k, v in loss.items() if isinstance(v, (int, float)))],
        ["optimisers", ", ".join(f"{k}: {_value(v)}" for k, v in optim.items() if isinstance(v, dict))],
        ["training time", f"{summary['wall_time_s']:.0f} s" if "wall_time_s" in summary else "?"],
    ]
    lines += [markdown_table(["", "value"], recipe_rows), ""]

    selected = (summary.get("checkpoint") or {}).get("name", run.get("checkpoint", "best")) == "best"
    roles = "val chose the checkpoint" if selected else "the last epoch's weights are scored (no selection)"
    lines += ["## Data and splits", ""]
    lines += [
        f"Data set `{dataset}`, split into train / val / test as its loader defines them for these options "
        f"(see the data set's page in the docs); the model trained on train, {roles}, and test only reports.",
        "",
        markdown_table(["data option", "value"], [[k, _value(v)] for k, v in data.items()]),
        "",
    ]
    if evaluation and evaluation.get("n"):
        counts = ", ".join(f"{split} {n}" for split, n in evaluation["n"].items())
        lines += [f"Samples `factorlab eval` used: {counts}.", ""]

    lines += ["## Test metrics", ""]
    splits = summary.get("splits", {})
    if "test" in splits:
        scored = _checkpoint_line(summary.get("checkpoint"), run.get("checkpoint", "best"))
        test = splits["test"]
        rows = [
            [key, pct(value) if key.endswith("accuracy") else f"{value:.4f}"]
            for key, value in test.items()
            if key.endswith("accuracy") or key.startswith("reconstruction")
        ]
        lines += [
            f"From `summary.json`: the test split, measured when the run finished with {scored}.",
            "",
            markdown_table(["metric", "test"], rows),
            "",
        ]
    else:
        lines += ["No test metrics in `summary.json`: the run has not finished.", ""]
    if evaluation:
        info = evaluation.get("checkpoint_info") or {"name": evaluation.get("checkpoint")}
        rows = [
            [name, pct(s.get("accuracy")), f"{s.get('macro_f1', float('nan')):.3f}", pct(s.get("chance"))]
            for name, s in evaluation.get("heads", {}).items()
        ]
        lines += [
            f"From `eval.json` ({evaluation.get('split')} split), {_checkpoint_line(info, str(info.get('name')))}:",
            "",
            markdown_table(["head (factor/code)", "accuracy", "macro F1", "chance"], rows),
            "",
            "Full report: `report.md` / `report.html`.",
            "",
        ]

    lines += ["## Leakage", ""]
    rows = [
        [r["factor"], r["code"], pct(r.get("adversary")), pct(r.get("linear_probe")), pct(r.get("mlp_probe"))]
        for r in leakage.run_rows(summary, evaluation)
    ]
    if rows:
        lines += [
            "Each factor an adversary must keep out of a code (test split): the in-training adversary's accuracy "
            "next to fresh probes trained on the frozen codes (the linear probe of `factorlab run`, the MLP probe "
            "of `factorlab eval`). An adversary at chance does not show the factor is gone; the probes do.",
            "",
            markdown_table(["factor", "kept out of code", "adversary", "linear probe", "MLP probe"], rows),
            "",
        ]
    if evaluation and evaluation.get("probes"):
        rows = [
            [r["factor"], r["code"], r["probe"], pct(r["accuracy"]), pct(r["chance"])] for r in evaluation["probes"]
        ]
        lines += [
            "Post-hoc probes (`eval.json`): fresh classifiers trained on the frozen codes of the train split, "
            "scored on the evaluated split. A factor read well above chance from a code that should not hold it "
            "is leakage.",
            "",
            markdown_table(["factor", "code", "probe", "accuracy", "chance (majority)"], rows),
            "",
        ]
    else:
        lines += [f"Run `factorlab eval {rundir}` for post-hoc leakage probes on every code.", ""]

    lines += ["## Intended use and limits", ""]
    if dataset == "synthfaces":
        lines.append(
            "- Trained on **SynthFaces**, procedurally rendered faces: a demonstration and test model. It has never "
            "seen a photograph, and its predictions on real faces mean nothing."
        )
    else:
        lines.append(
            f"- Trained on `{dataset}` only. Accuracy on other populations, cameras, poses, lighting and image "
            "quality was not measured here and will be lower; measure it on your own data before relying on it."
        )
    cropped = f", data option `align` = {_value(data['align'])}" if "align" in data else ""
    lines += [
        f"- The input must be a face cropped as in training ({size}x{size}{cropped}): use "
        "`factorlab predict --align box` or `--align mtcnn` for photos that are not face crops.",
        "- A head predicts one of the classes it was trained on, even for images that show none of them (or no face).",
        "- Expression classifiers read visible facial movements, not what a person feels; posed and spontaneous "
        "expressions differ, and their display varies across people and cultures.",
        "- Not for decisions about individuals (hiring, education, policing, health, access to services), and not "
        "for identifying or tracking people. Accuracy across demographic groups was not measured.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(rundir: Path) -> Path:
    """Write (or refresh) MODEL_CARD.md in the run folder; return its path."""
    return atomic_write_text(Path(rundir) / CARD, model_card(Path(rundir)))
