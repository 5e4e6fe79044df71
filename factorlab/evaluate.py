"""Evaluate a trained run: classification, adversaries, leakage probes, similarity, MIG/DCI, plots, report.

`evaluate_run(rundir)` encodes a bounded sample of the train split and the evaluated split (test by
default) with the trained model, then measures on the frozen codes:

- each head: accuracy, macro F1, per-class accuracy, confusion matrix (PNG);
- each in-training adversary: its accuracy against chance;
- post-hoc leakage probes: fresh linear and MLP classifiers for every (factor, code) pair, against
  chance and against the same probe on the code a head says should hold the factor;
- the paper's Table 3 generalised: cosine similarity of a code over same-factor vs reverse pairs;
- MIG and DCI over codes x factors (plus the data set's discrete ground-truth factors when it has them);
- PCA projections of every code coloured by every factor, training curves, a swap grid with a decoder;

and writes `eval.json`, `plots/*.png`, `report.md` and a self-contained `report.html` into the run folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from factorlab import leakage, metrics, progress, report
from factorlab.data.loading import dataset_images
from factorlab.errors import FactorlabError
from factorlab.evalmetrics import MetricContext, call_metric
from factorlab.files import atomic_write_text, check_writable_dir
from factorlab.headline import what_this_run_shows

if TYPE_CHECKING:
    from pydantic import BaseModel

    from factorlab.registry import Entry

PLOTS = "plots"
ERASED = "leace"  # `factorlab eval --erase` writes into <rundir>/leace/
# a ground-truth column with more distinct values than this is continuous or an id (e.g. a noise seed)
MAX_GROUND_TRUTH_CLASSES = 16
SWAP_PAIRS = 6


@dataclass
class Encoded:
    """Frozen codes of a sample of one split, its labels and the model's predictions on it."""

    split: str
    indices: np.ndarray  # sample indices into the split
    codes: dict[str, np.ndarray]  # code name -> (n, dims) float32
    labels: dict[str, np.ndarray]  # labelled factor -> (n,) ids into classes[factor]
    classes: dict[str, list[str]]
    predictions: dict[str, np.ndarray]  # "head/<factor>/<code>" or "adversary/<factor>/<code>" -> (n,) ids
    ground_truth: dict[str, np.ndarray]  # extra discrete factors the data set knows (may be empty)


def sample_indices(size: int, max_samples: int | None, seed: int) -> np.ndarray:
    """All indices of a split, or a seeded random `max_samples` of them (sorted, so reading stays sequential)."""
    if max_samples is None or size <= max_samples:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).permutation(size)[:max_samples])


def discrete_ground_truth(dataset, indices: np.ndarray, skip: set[str]) -> dict[str, np.ndarray]:
    """The data set's integer ground-truth factors (SynthFaces' `ground_truth()`) with 2..16 values, except `skip`."""
    ground_truth = getattr(dataset, "ground_truth", None)
    if not callable(ground_truth):
        return {}
    out = {}
    for name, values in ground_truth().items():
        values = np.asarray(values)
        # `<factor>_label` columns repeat the labels the run already has
        if name in skip or name.endswith("_label") or not np.issubdtype(values.dtype, np.integer):
            continue
        values = values[indices]
        if 2 <= len(np.unique(values)) <= MAX_GROUND_TRUTH_CLASSES:
            out[name] = values.astype(np.int64)
    return out


@torch.no_grad()
def encode_split(
    model, dataset, split: str, *, max_samples: int | None, seed: int, device: torch.device, batch_size: int = 256
) -> Encoded:
    """Encode (a seeded sample of) a split: codes, labels, head and adversary predictions, ground truth."""
    from factorlab.data.base import labels_for_evaluation
    from factorlab.data.loading import eval_loader, to_device

    indices = sample_indices(len(dataset), max_samples, seed)
    chunks: dict[str, list[np.ndarray]] = {}
    for batch in eval_loader(torch.utils.data.Subset(dataset, indices.tolist()), batch_size):
        images, _ = to_device(batch, device)
        out = model.net(images)
        adversary_logits = model.adversaries(out["codes"]) if model.adversaries.links else {}
        for name, code in out["codes"].items():
            chunks.setdefault(f"code:{name}", []).append(code.flatten(1).float().cpu().numpy())
        for kind, links, logits in (
            ("head", model.net.head_links, out["logits"]),
            ("adversary", model.adversaries.links, adversary_logits),
        ):
            for link in links:
                if link.key not in logits:  # an adversary without a classifier predicts nothing
                    continue
                key = f"{kind}/{link.factor}/{link.code}"
                chunks.setdefault(key, []).append(logits[link.key].argmax(dim=1).cpu().numpy())
        progress.advance(images.shape[0])
    joined = {key: np.concatenate(parts) for key, parts in chunks.items()}
    codes = {key[len("code:") :]: value for key, value in joined.items() if key.startswith("code:")}
    broken = [name for name, value in codes.items() if not np.isfinite(value).all()]
    if broken:  # probes and metrics cannot fit NaN; a model that gives them has broken weights
        raise FactorlabError(
            f"the model gives codes that are not finite (NaN or inf) for the {split} split: {', '.join(broken)}. "
            "Its weights are broken (the training diverged, or the checkpoint was damaged); evaluate another "
            "checkpoint (--checkpoint last or best) or train again with a smaller optim.main.lr"
        )
    predictions = {key: value for key, value in joined.items() if not key.startswith("code:")}
    # held-out classes (identities only val/test show) are appended after the model's classes
    views = {factor: labels_for_evaluation(dataset, factor) for factor in dataset.classes}
    labels = {factor: labels[indices].astype(np.int64) for factor, (labels, _) in views.items()}
    classes = {factor: list(names) for factor, (_, names) in views.items()}
    return Encoded(
        split, indices, codes, labels, classes, predictions, discrete_ground_truth(dataset, indices, set(labels))
    )


def quick_leakage(model, train_set, eval_sets: dict, device, *, seed: int = 0) -> dict[str, dict]:
    """A linear probe per adversary (factor, code), fitted on <= 2000 train codes: split -> {QUICK_KEY: accuracy}.

    Cheap (a few seconds on a CPU for the synth recipes) so `factorlab run` can show it next to the adversary's
    accuracy; `factorlab eval` trains the full linear and MLP probes.
    """
    links = list(dict.fromkeys((link.factor, link.code) for link in model.adversaries.links))
    if not links:
        return {}
    was_training = model.training
    model.eval()
    try:
        train = encode_split(model, train_set, "train", max_samples=leakage.QUICK_SAMPLES, seed=seed, device=device)
        out: dict[str, dict] = {}
        for split, dataset in eval_sets.items():
            held = encode_split(model, dataset, split, max_samples=leakage.QUICK_SAMPLES, seed=seed, device=device)
            out[split] = {}
            for factor, code in links:
                rows = metrics.leakage_probes(
                    {code: train.codes[code]}, {factor: train.labels[factor]}, {code: held.codes[code]},
                    {factor: held.labels[factor]}, kinds=("linear",), max_train=leakage.QUICK_SAMPLES, seed=seed,
                    steps=leakage.QUICK_STEPS,
                )  # fmt: skip
                out[split][leakage.QUICK_KEY.format(factor=factor, code=code)] = rows[0]["accuracy"]
    finally:
        model.train(was_training)
    return out


def erase_codes(
    model, train: Encoded, test: Encoded, pairs: list[tuple[str, str]], device, out_dir: Path
) -> dict[str, list[str]]:
    """LEACE-erase each adversary's factor from its code in both samples (fitted on train), in place; re-predict
    the heads and adversaries on the erased codes; the model's branches erase too from now on (swap grid), and the
    erasers are saved to `out_dir/erasers.pt` (for `factorlab eval --erase --swap`). Returns code -> factors."""
    from factorlab.erasure import apply_eraser, erase_model, fit_erasers, save_erasers

    erasers = fit_erasers(train.codes, train.labels, pairs, {f: len(train.classes[f]) for f, _ in pairs})
    for sample in (train, test):
        for code, eraser in erasers.items():
            sample.codes[code] = apply_eraser(eraser, sample.codes[code])
    with torch.no_grad():
        codes = {name: torch.from_numpy(code).to(device) for name, code in test.codes.items()}
        logits = model.net.classify(codes)
        for link in model.net.head_links:
            test.predictions[f"head/{link.factor}/{link.code}"] = logits[link.key].argmax(dim=1).cpu().numpy()
        for key, logits in model.adversaries(codes).items():
            link = next(link for link in model.adversaries.links if link.key == key)
            test.predictions[f"adversary/{link.factor}/{link.code}"] = logits.argmax(dim=1).cpu().numpy()
    erase_model(model, erasers)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_erasers(erasers, out_dir / "erasers.pt")
    erased: dict[str, list[str]] = {}
    for factor, code in pairs:
        erased.setdefault(code, []).append(factor)
    return erased


def owners(model) -> dict[str, str]:
    """Factor -> the code meant to hold it: the code its (first) head reads."""
    out: dict[str, str] = {}
    for link in model.net.head_links:
        out.setdefault(link.factor, link.code)
    return out


def similarity_pairs(model) -> list[tuple[str, str]]:
    """(code, factor) pairs for the similarity tables: each code with each factor a head or adversary reads from it."""
    pairs = [(link.code, link.factor) for link in [*model.net.head_links, *model.adversaries.links]]
    if not pairs:  # a model with neither: every code against the first factor
        pairs = [(code, next(iter(model.factors))) for code in model.code_names]
    return list(dict.fromkeys(pairs))


def read_metrics_log(rundir: Path) -> list[dict]:
    """The records of the run's metrics.jsonl (empty when there is none); a torn last line is dropped, a broken
    line elsewhere is an error naming it."""
    from factorlab.rundir import read_metrics

    return read_metrics(Path(rundir) / "metrics.jsonl")


def _curve_metrics(records: list[dict]) -> list[str]:
    """The curves worth a panel: accuracies and loss terms (not per-step timing)."""
    keys = dict.fromkeys(k for r in records for k, v in r.items() if isinstance(v, int | float))
    return [k for k in keys if k.endswith(("/accuracy", "/loss"))]


def _swap_grid(model, dataset, encoded: Encoded, path: Path, seed: int) -> tuple[Path | None, str | None]:
    """A grid of decoded code swaps on random pairs: (path, None), or (None, why not)."""
    from factorlab import swap

    try:
        pairs = swap.random_pairs(encoded.labels, SWAP_PAIRS, seed=seed)  # positions in the encoded sample
    except FactorlabError as err:  # e.g. a split too small for pairs that differ in every factor
        return None, str(err)
    batch = dataset_images(dataset, encoded.indices[pairs.reshape(-1)]).to(model_device(model))

    def describe(k: int) -> str:
        return " ".join(encoded.classes[f][encoded.labels[f][k]] for f in encoded.labels)

    labels = [f"1: {describe(a)}\n2: {describe(b)}" for a, b in pairs.tolist()]
    result = swap.synthesize(model, batch[0::2], batch[1::2], swap.default_codes(model))
    swap.save_swap(result, path, labels)
    return path, None


# ---------------------------------------------------------------------------------------------
# the evaluation


def evaluate_run(
    rundir: Path,
    *,
    split: str = "test",
    max_samples: int = 5000,
    probes: bool = True,
    checkpoint: str | None = None,
    device: str = "cpu",
    tsne: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
    metric_names: Sequence[str] | None = None,
    metric_options: Sequence[str] = (),
    erase: bool = False,
    full: bool = False,
) -> dict:
    """Evaluate a finished run on `split`; write eval.json, plots/, report.md and report.html; return the results.

    By default the splits, probes and DCI use samples (`max_samples`, the metrics' `max_*` options), which keeps
    `factorlab eval` shorter than the training; `full=True` (`--full`) lifts every such bound.

    `erase=True` first erases, with LEACE fitted on the train split's codes, every factor an adversary names
    from its code (`factorlab eval --erase`; docs/erasure.md) and writes everything into `<rundir>/leace/`.

    The registered metrics run with the options of the run recipe's `[eval]` section; `metric_names` replaces
    its list of metrics and each of `metric_options` ("dci.max_train=1000") sets one option on top of it.
    `probes=False` drops the `probes` metric.
    """
    from factorlab import plots  # matplotlib: imported here, so `factorlab run` (quick_leakage) does not load it
    from factorlab.data.loading import build_dataset
    from factorlab.evalmetrics import metric_plan
    from factorlab.rundir import checkpoint_info, default_checkpoint, load_run, load_summary
    from factorlab.runtime import resolve_device

    if split not in ("val", "test"):
        raise FactorlabError(f"--split {split}: evaluate on 'val' or 'test' (probes are trained on 'train')")
    if max_samples < 10:
        raise FactorlabError(f"--max-samples {max_samples}: use at least 10 samples per split")
    started = time.perf_counter()
    rundir = Path(rundir)
    summary = load_summary(rundir)  # a clear error for a missing or unfinished run
    check_writable_dir(rundir, "the evaluation into run folder")  # now, not after the evaluation
    checkpoint = checkpoint or default_checkpoint(rundir)  # the one summary.json scores (run.checkpoint)
    recipe, model = load_run(rundir, checkpoint)
    plan = [(entry, options) for entry, options in metric_plan(recipe, metric_names, metric_options)
            if probes or entry.name != "probes"]  # fmt: skip
    if full:
        max_samples = UNBOUNDED
        plan = [(entry, _unbounded(options)) for entry, options in plan]
    pairs = [(link.factor, link.code) for link in model.adversaries.links]
    if erase and not pairs:  # now, not after encoding both splits
        raise FactorlabError("--erase: the recipe has no adversary, so no (factor, code) pair to erase")
    on = resolve_device(device)
    model.to(on)
    out_dir = rundir / ERASED if erase else rundir
    plot_dir = out_dir / PLOTS

    log("encoding the train and the evaluated split")
    datasets = {name: build_dataset(recipe, name, model.factors) for name in ("train", split)}
    sizes = [min(len(datasets[name]), max_samples) for name in ("train", split)]
    with progress.task("encode", f"encoding {sizes[0]} train and {sizes[1]} {split} images", sum(sizes), "images"):
        train = encode_split(model, datasets["train"], "train", max_samples=max_samples, seed=seed, device=on)
        test = encode_split(model, datasets[split], split, max_samples=max_samples, seed=seed, device=on)
    owner = owners(model)
    erased = erase_codes(model, train, test, pairs, on, out_dir) if erase else {}
    result: dict = {
        "name": summary.get("name", recipe.run.name),
        "rundir": str(rundir),
        "split": split,
        "checkpoint": checkpoint,
        "checkpoint_info": checkpoint_info(rundir, checkpoint),
        "n": {"train": int(len(train.indices)), split: int(len(test.indices))},
        "codes": {name: int(code.shape[1]) for name, code in test.codes.items()},
        "factors": list(test.labels),
        "owners": owner,
        "classes": test.classes,
        "erased": erased,
    }

    # heads and in-training adversaries
    result["heads"], result["adversaries"] = {}, {}
    for key, predicted in test.predictions.items():
        kind, factor, code = key.split("/")
        scores = metrics.classification_summary(test.labels[factor], predicted, test.classes[factor])
        scores["chance"] = metrics.chance_rate(test.labels[factor])
        result["heads" if kind == "head" else "adversaries"][f"{factor}/{code}"] = scores
    for name, scores in result["heads"].items():
        plots.plot_confusion(
            np.array(scores["confusion"]), scores["classes"], plot_dir / f"confusion-{name.replace('/', '-')}.png",
            title=f"head {name} on {split} (accuracy {report.pct(scores['accuracy'])})",
        )  # fmt: skip

    # the registered metrics (built-in: probes, similarity, MIG, DCI; and every plugin's), over the labelled factors
    # plus the data set's discrete ground truth present in both samples
    factor_labels = {k: {**v.labels, **v.ground_truth} for k, v in (("train", train), ("test", test))}
    shared = [f for f in factor_labels["test"] if f in factor_labels["train"]]
    result["ground_truth_factors"] = [f for f in shared if f in test.ground_truth]
    context = MetricContext(
        split=split, seed=seed, factors=tuple(test.labels), classes=test.classes, train_codes=train.codes,
        train_labels={f: factor_labels["train"][f] for f in shared}, owners=owner, pairs=similarity_pairs(model),
    )  # fmt: skip
    names = ", ".join(entry.name for entry, _ in plan)
    with progress.task("metrics", f"metrics ({names})", len(plan), "metrics"):
        result.update(run_metrics(plan, test.codes, {f: factor_labels["test"][f] for f in shared}, context, log))
    if "probes" in result:
        # the ceiling of each factor: its first head (the code `owners` names), as in the leakage table
        heads = {f: result["heads"][f"{f}/{c}"]["accuracy"] for f, c in owner.items() if f"{f}/{c}" in result["heads"]}
        plots.plot_probes(result["probes"], heads, plot_dir / "probes.png", split=split)
    if "dci" in result:
        importance = result["dci"]["code_importance"]
        factors = list(next(iter(importance.values()), {}))
        plots.plot_matrix(np.array([[importance[c][f] for f in factors] for c in test.codes]), list(test.codes),
                          factors, plot_dir / "dci-importance.png", title="DCI importance (codes x factors)",
                          value_label="importance (share of the trees' splits)")  # fmt: skip

    log("projections and training curves")
    points = {name: metrics.project_2d(code, "pca", seed=seed) for name, code in test.codes.items()}
    plots.plot_projections(points, test.labels, test.classes, plot_dir / "pca.png", method="PCA")
    if tsne:
        points = {
            name: metrics.project_2d(code, "tsne", max_points=1500, seed=seed) for name, code in test.codes.items()
        }
        plots.plot_projections(points, test.labels, test.classes, plot_dir / "tsne.png", method="t-SNE")
    records = read_metrics_log(rundir)
    if records:
        plots.plot_training_curves(records, plot_dir / "curves.png", metrics=_curve_metrics(records))

    result["leakage"] = leakage.leakage_rows(result, pairs)
    swap_path, result["swap_grid_note"] = None, None
    if model.net.decoder is not None:
        log("swap grid")
        swap_path, result["swap_grid_note"] = _swap_grid(model, datasets[split], test, plot_dir / "swap.png", seed)
    result["swap_grid"] = swap_path.relative_to(out_dir).as_posix() if swap_path else None
    result["in_training"] = summary.get("splits", {}).get(split, {})
    result["wall_time_s"] = time.perf_counter() - started

    atomic_write_text(out_dir / "eval.json", json.dumps(result, indent=2))
    report.write_report(out_dir, report_sections(result, tsne=tsne, curves=bool(records)),
                        title=f"factorlab report: {result['name']}")  # fmt: skip
    return result


UNBOUNDED = 2**62  # `--full`: a sample bound no split reaches
SAMPLE_BOUNDS = ("max_train", "max_test", "max_points")  # not max_pairs: a count of drawn pairs, not a sample


def _unbounded(options: BaseModel) -> BaseModel:
    """A metric's options with every sample bound (max_train, max_test, max_points) lifted."""
    bounds = {name: UNBOUNDED for name in SAMPLE_BOUNDS if name in type(options).model_fields}
    return options.model_copy(update=bounds)


def run_metrics(
    plan: Sequence[tuple[Entry, BaseModel]],
    codes: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    context: MetricContext,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Run each planned metric (registry entry, validated options) on the evaluated split; eval.json's entries.

    Built-in metrics (plugin `core.*`) write their result at the top level, as factorlab 0.1 did (`probes`,
    `similarity`, `mig`, `dci`); plugin metrics go under `plugin_metrics.<name>`, where one that cannot run on
    these labels says why in a `note` instead of failing the evaluation. `metric_options` records the options
    every metric ran with.
    """
    from factorlab.plugins import CORE

    out: dict = {"plugin_metrics": {}, "metric_options": {}}
    for entry, options in plan:
        log(f"metric {entry.name}")
        out["metric_options"][entry.name] = options.model_dump(mode="json")
        metric = entry.factory(options)
        if entry.plugin.split(".")[0] == CORE:
            out.update(call_metric(metric, codes, labels, context))
            progress.advance(1)
            continue
        try:
            out["plugin_metrics"][entry.name] = {"plugin": entry.plugin, **call_metric(metric, codes, labels, context)}
        except FactorlabError as exc:
            out["plugin_metrics"][entry.name] = {"plugin": entry.plugin, "note": str(exc)}
        progress.advance(1)
    return out


def registered_metrics(codes: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, dict]:
    """Deprecated (0.1): every plugin (non-built-in) metric with its default options, called without context."""
    import warnings

    from factorlab.plugins import CORE, get_host

    warnings.warn("registered_metrics is deprecated; use run_metrics", DeprecationWarning, stacklevel=2)
    out: dict[str, dict] = {}
    for entry in get_host().registry("metrics"):
        if entry.plugin.split(".")[0] == CORE:
            continue
        try:
            out[entry.name] = {"plugin": entry.plugin, **entry.factory(entry.config())(codes, labels)}
        except FactorlabError as exc:
            out[entry.name] = {"plugin": entry.plugin, "note": str(exc)}
    return out


def model_device(model) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


# ---------------------------------------------------------------------------------------------
# the report


def head_table(result: dict) -> report.Table:
    """Heads and in-training adversaries: accuracy, macro F1 and chance on the evaluated split."""
    rows = [
        [
            kind,
            name.split("/")[0],
            name.split("/")[1],
            report.pct(s["accuracy"]),
            s["macro_f1"],
            report.pct(s["chance"]),
            s["n"],
        ]
        for kind, group in (("head", result["heads"]), ("adversary", result["adversaries"]))
        for name, s in group.items()
    ]
    return report.Table(["part", "factor", "code", "accuracy", "macro F1", "chance", "n"], rows,
                        f"Classifiers of the model on the {result['split']} split")  # fmt: skip


def per_class_table(name: str, scores: dict) -> report.Table:
    """Per-class accuracy (recall) of one head."""
    rows = [[cls, report.pct(acc), sum(row)] for cls, acc, row in
            zip(scores["classes"], scores["per_class_accuracy"].values(), scores["confusion"], strict=True)]  # fmt: skip
    return report.Table(["class", "accuracy", "n"], rows, f"Per-class accuracy of head {name}")


def similarity_summary_table(result: dict) -> report.Table:
    """One row per (code, factor): mean cosine of same-factor pairs vs reverse pairs, raw and centred."""
    rows = []
    for s in result["similarity"]:
        rows.append([s["code"], s["factor"], "centred" if s["centered"] else "raw (paper)", s["same_mean"],
                     s["reverse_mean"], s["same_mean"] - s["reverse_mean"]])  # fmt: skip
    return report.Table(["code", "factor", "cosine", "same factor, others differ", "factor differs, others same",
                         "gap"], rows, "Mean cosine similarity of codes over controlled pairs")  # fmt: skip


def report_sections(result: dict, *, tsne: bool = False, curves: bool = True) -> list[report.Section]:
    """The sections of report.md / report.html from an `evaluate_run` result."""
    split, n = result["split"], result["n"]
    info = result.get("checkpoint_info") or {}
    where = f" ({info['file']}, epoch {info['epoch']}, {info['selected_on']})" if info else ""
    erased = result.get("erased") or {}
    sections = [
        report.Section("What this run shows", what_this_run_shows(result)),
        report.Section(
            "Summary",
            f"Run `{result['rundir']}`, checkpoint `{result['checkpoint']}`{where}, evaluated on {n[split]} samples of "
            f"the `{split}` split; probes and DCI are trained on {n['train']} samples of `train`. "
            f"Codes (dims): {', '.join(f'`{k}` ({v})' for k, v in result['codes'].items())}. "
            "All numbers are also in `eval.json`.",
            tables=[head_table(result)],
        ),
    ]
    if result.get("leakage"):
        sections.append(
            report.Section(
                "Leakage (the headline)",
                "For every (factor, code) an adversary must keep clean: the adversary's accuracy and what fresh "
                "linear and MLP probes, trained on the frozen train-split codes, read on the evaluated split. "
                + ("Codes erased with LEACE before probing: " + ", ".join(erased) + ". " if erased else "")
                + "See docs/erasure.md.",
                tables=[leakage.eval_table(result["leakage"], split, list(erased))],
            )
        )
    if curves:
        sections.append(report.Section("Training curves", "From `metrics.jsonl`.",
                                       images=[report.Image(f"{PLOTS}/curves.png", "training curves")]))  # fmt: skip
    for name, scores in result["heads"].items():
        sections.append(
            report.Section(
                f"Head {name}",
                f"Accuracy {report.pct(scores['accuracy'])}, macro F1 {scores['macro_f1']:.3f}, "
                f"chance (majority class) {report.pct(scores['chance'])}.",
                tables=[per_class_table(name, scores)],
                images=[report.Image(f"{PLOTS}/confusion-{name.replace('/', '-')}.png", f"confusion matrix of {name}")],
            )
        )
    if "probes" in result:
        sections.append(
            report.Section(
                "Leakage probes",
                "An adversary at chance does not prove that the information is gone: fresh linear and MLP probes "
                "are trained on the frozen codes of the train split and scored on the evaluated split, for every "
                "(factor, code) pair. Compare each with chance (the majority-class rate) and with the same probe on "
                "the code meant to hold the factor. Factors whose evaluated classes are absent from train "
                "(identity with identity-disjoint splits) are probed on stratified halves of the evaluated split.",
                tables=[report.probe_table(result["probes"])],
                images=[
                    report.Image(
                        f"{PLOTS}/probes.png",
                        "probe accuracy per factor: dashed red line chance, "
                        "dotted green line the head's accuracy (the ceiling)",
                    )
                ],
            )
        )
    if "similarity" in result:
        tables = [similarity_summary_table(result)]
        for s in result["similarity"]:
            if not s["centered"]:
                tables += report.similarity_tables(s)
        sections.append(
            report.Section(
                "Code similarity (paper Table 3, generalised)",
                "Mean cosine similarity of a code between pairs that share the factor and differ in every other "
                "labelled factor, and between pairs that differ in the factor and share the others. A code that "
                "holds the factor has a high first and a low second column. The raw cosine is the paper's; the "
                "centred one subtracts the mean code first, so a common offset does not lift every pair.",
                tables=tables,
            )
        )
    mig, dci = result.get("mig"), result.get("dci")
    if mig or dci:
        gt = result["ground_truth_factors"]
        tables = [report.disentanglement_table(mig, dci)]
        if mig:
            tables.append(
                report.code_factor_table(mig["code_mi"], "Largest normalised mutual information of a dim of each code")
            )
        if dci:
            tables.append(
                report.code_factor_table(dci["code_importance"], "DCI importance summed over each code's dims")
            )
        sections.append(
            report.Section(
                "Disentanglement metrics",
                "MIG (Chen et al. 2018) and DCI (Eastwood & Williams 2018) as in disentanglement_lib, over the "
                "latent dims of all codes and aggregated per code. "
                + (f"Ground-truth factors from the data set: {', '.join(gt)}. " if gt else "")
                + ("DCI protocols: " + ", ".join(f"{k}: {v}" for k, v in dci["protocol"].items()) + "." if dci else ""),
                tables=tables,
                images=[report.Image(f"{PLOTS}/dci-importance.png", "DCI importance, codes x factors")] if dci else [],
            )
        )
    if result.get("plugin_metrics"):
        rows = [
            [name, values["plugin"], key, f"{value:.4f}" if isinstance(value, float) else report.format_cell(value)]
            for name, values in result["plugin_metrics"].items()
            for key, value in values.items()
            if key != "plugin"
        ]
        sections.append(
            report.Section(
                "Metrics registered by plugins",
                "Each metric a plugin registers through `factorlab_register_metrics`, on the evaluated split.",
                tables=[report.Table(["metric", "plugin", "value of", "value"], rows)],
            )
        )
    images = [report.Image(f"{PLOTS}/pca.png", "PCA of each code, coloured by each factor")]
    if tsne:
        images.append(report.Image(f"{PLOTS}/tsne.png", "t-SNE of each code, coloured by each factor"))
    sections.append(report.Section("Projections", "A code that holds a factor separates its colours.", images=images))
    if result.get("swap_grid"):
        sections.append(
            report.Section(
                "Code swaps",
                "X1, X2: originals; X1', X2': reconstructions; X1'', X2'': decoded with the swapped codes.",
                images=[report.Image(result["swap_grid"], "swap grid on random pairs of the evaluated split")],
            )
        )
    elif result.get("swap_grid_note"):
        sections.append(report.Section("Code swaps", f"No swap grid: {result['swap_grid_note']}."))
    return sections
