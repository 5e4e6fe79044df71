"""Erasure methods (ensemble, hsic, LEACE) and leakage as the headline of run / eval / compare."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factorlab.erasure import EnsembleAdversary, apply_eraser, fit_erasers, load_erasers, normalised_hsic
from factorlab.leakage import QUICK_KEY, normalised
from factorlab.metrics import probe_accuracy
from factorlab.model import build_model
from factorlab.plugins import get_host
from factorlab.recipe import load_recipe
from factorlab.testing import run_cli
from factorlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes" / "synth" / "erasure").glob("*.toml"))
TINY = ["run.epochs=1", "run.batch_size=16", "data.identities=9", "data.samples_per_identity=8", "data.image_size=32"]


def _adversary(name: str, **options):
    entry = get_host().get("adversaries", name)
    return entry.factory(entry.config.model_validate(options), in_features=12, num_classes=5)


# ---------------------------------------------------------------------------------------------
# contracts


@pytest.mark.parametrize(("name", "options"), [("ensemble", {"members": 3}), ("hsic", {}), ("leace", {})])
def test_adversary_contract_shapes_and_finite_losses(name: str, options: dict) -> None:
    adversary = _adversary(name, **options)
    code, target = torch.randn(16, 12), torch.randint(0, 5, (16,))
    logits = adversary.logits(code)
    own = adversary.adversary_loss(code, target)
    if name == "ensemble":
        assert logits.shape == (16, 5)
        assert torch.allclose(logits.exp().sum(dim=1), torch.ones(16), atol=1e-5)  # log of mean probabilities
        assert own.shape == () and torch.isfinite(own)
    else:  # nothing to train, no classifier
        assert logits is None and own is None
    loss = adversary.encoder_loss(code, target, 0.5)
    assert loss.shape == () and torch.isfinite(loss)


def _recipe(tmp_path: Path, adversary: str) -> object:
    text = (RECIPES[0].parent / f"{adversary}.toml").read_text(encoding="utf-8")
    path = tmp_path / f"{adversary}.toml"
    path.write_text(text, encoding="utf-8")
    return load_recipe(path, ["data.image_size=32", f"run.output={tmp_path}"])


@pytest.mark.parametrize("method", ["ensemble", "hsic"])
def test_main_step_gradient_reaches_the_encoder_not_the_frozen_adversaries(tmp_path: Path, method: str) -> None:
    recipe = _recipe(tmp_path, method)
    model = build_model(recipe)  # expression has canonical classes: no data set needed
    trainer = Trainer(recipe, model, torch.device("cpu"))
    images = torch.rand(8, 3, 32, 32)
    labels = {"expression": torch.arange(8) % 8}
    out = trainer.net(images)
    adversary_before = [p.detach().clone() for p in model.adversaries.parameters()]
    encoder_before = [p.detach().clone() for p in model.net.encoder.parameters()]
    trainer.adversary_step(out["codes"], labels)
    moved = [not torch.equal(a, p) for a, p in zip(adversary_before, model.adversaries.parameters(), strict=True)]
    assert all(moved) if method == "ensemble" else not moved  # the ensemble trains in its step, hsic has nothing
    assert all(torch.equal(a, p) for a, p in zip(encoder_before, model.net.encoder.parameters(), strict=True))
    for p in model.adversaries.parameters():
        p.grad = None
    model.net.zero_grad(set_to_none=True)
    # the adversarial term alone: no head loss, so any encoder gradient comes through the adversary
    recipe.loss.beta_cls = 0.0
    trainer.main_step(images, trainer.net(images), labels)
    assert all(p.grad is None for p in model.adversaries.parameters())
    branch_grads = [p.grad for p in model.net.branches["nonexp"].parameters()]
    assert all(g is not None for g in branch_grads) and any(g.abs().sum() > 0 for g in branch_grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.encoder.parameters())


def test_ensemble_resets_one_member_in_turn() -> None:
    members = [torch.nn.Linear(4, 3) for _ in range(2)]
    ensemble = EnsembleAdversary(members, reset_every=2)
    code, target = torch.randn(6, 4), torch.randint(0, 3, (6,))
    with torch.no_grad():
        for m in members:
            m.weight.fill_(7.0)
    ensemble.adversary_loss(code, target)
    ensemble.adversary_loss(code, target)
    assert all(torch.all(m.weight == 7.0) for m in members)  # 2 steps: not yet
    ensemble.adversary_loss(code, target)  # the third step resets member 0
    assert not torch.all(members[0].weight == 7.0) and torch.all(members[1].weight == 7.0)
    ensemble.adversary_loss(code, target)
    ensemble.adversary_loss(code, target)  # the fifth resets member 1
    assert not torch.all(members[1].weight == 7.0)
    assert int(ensemble.steps) == 5
    ensemble.eval()
    ensemble.adversary_loss(code, target)
    assert int(ensemble.steps) == 5  # evaluation does not count as an adversary step


# ---------------------------------------------------------------------------------------------
# HSIC properties


def _batch(seed: int, n: int, classes: int, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dims, generator=g), torch.randint(0, classes, (n,), generator=g)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 96), st.integers(2, 10), st.integers(1, 16), st.floats(0.0, 5.0))
def test_hsic_is_between_0_and_1(seed: int, n: int, classes: int, dims: int, signal: float) -> None:
    x, y = _batch(seed, n, classes, dims)
    x[:, 0] += signal * y.float()
    value = float(normalised_hsic(x, y, classes))
    assert -1e-6 <= value <= 1 + 1e-5


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 96), st.integers(2, 10), st.floats(0.0, 5.0))
def test_hsic_is_invariant_to_renaming_the_classes_and_to_the_sample_order(
    seed: int, n: int, classes: int, signal: float
) -> None:
    x, y = _batch(seed, n, classes, 6)
    x[:, 0] += signal * y.float()
    rename = torch.randperm(classes, generator=torch.Generator().manual_seed(seed + 1))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 2))
    value = normalised_hsic(x, y, classes)
    assert torch.isclose(value, normalised_hsic(x, rename[y], classes), atol=1e-5)
    assert torch.isclose(value, normalised_hsic(x[order], y[order], classes), atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_hsic_is_near_zero_for_independent_inputs_and_large_for_dependent_ones(seed: int) -> None:
    x, y = _batch(seed, 512, 8, 16)
    independent = float(normalised_hsic(x, y, 8))
    x[:, :8] += 3 * torch.nn.functional.one_hot(y, 8).float()
    dependent = float(normalised_hsic(x, y, 8))
    assert independent < 0.06  # the biased estimator's floor at n = 512 (~0.035), not exactly 0
    assert dependent > 0.3


def test_hsic_of_a_constant_code_is_zero_and_its_gradient_reaches_the_code() -> None:
    y = torch.arange(12) % 3
    assert float(normalised_hsic(torch.ones(12, 4), y, 3)) == 0.0
    x = torch.randn(12, 4, requires_grad=True)
    normalised_hsic(x + y[:, None].float(), y, 3).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# LEACE


def test_leace_leaves_a_linear_probe_at_chance_on_a_planted_linear_signal() -> None:
    rng = np.random.default_rng(0)
    n, classes = 4000, 4
    y = rng.integers(0, classes, n)
    other = rng.integers(0, 2, n)  # a second, independent factor, planted along its own direction
    x = rng.normal(size=(n, 16)) + 3.0 * np.eye(classes)[y] @ rng.normal(size=(classes, 16))
    x = (x + 3.0 * other[:, None] * rng.normal(size=16)).astype(np.float32)
    fit, score = slice(0, n // 2), slice(n // 2, n)
    chance = np.bincount(y[score]).max() / (n // 2)
    before = probe_accuracy(x[fit], y[fit], x[score], y[score], kind="linear", steps=300)
    assert before > 0.9
    eraser = fit_erasers({"c": x[fit]}, {"f": y[fit]}, [("f", "c")], {"f": classes})["c"]
    erased = apply_eraser(eraser, x)
    assert erased.shape == x.shape and erased.dtype == np.float32
    after = probe_accuracy(erased[fit], y[fit], erased[score], y[score], kind="linear", steps=300)
    assert after <= chance + 0.02
    # and a factor that was not erased stays readable: LEACE removes only the span of the erased labels
    assert probe_accuracy(erased[fit], other[fit], erased[score], other[score], steps=300) > 0.9


DIRECTIONS = np.random.default_rng(0).normal(size=(4, 16))  # a linear signal of 4 classes in 16 dims


def _planted(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = rng.integers(0, len(DIRECTIONS), n)
    return torch.from_numpy(rng.normal(size=(n, 16)) + 3.0 * DIRECTIONS[y]).float(), torch.from_numpy(y)


def test_running_leace_in_training_leaves_a_linear_probe_at_chance_and_passes_gradients() -> None:
    from factorlab.erasure import RunningLeace

    rng, classes = np.random.default_rng(1), len(DIRECTIONS)
    eraser = RunningLeace(16, classes, momentum=0.05).train()
    x, y = _planted(rng, 64)
    assert torch.equal(eraser(x), x)  # before the first update the code passes unchanged
    eraser.update(y)
    assert int(eraser.updates) == 1 and eraser.proj_left.abs().sum() > 0
    eraser.update(y)  # the raw codes of one forward are folded in once
    assert int(eraser.updates) == 1
    for _ in range(100):  # a stream of batches from one distribution
        batch, labels = _planted(rng, 64)
        eraser(batch)
        eraser.update(labels)
    eraser.eval()
    x, y = _planted(np.random.default_rng(2), 4000)
    erased = eraser(x.view(4000, 4, 2, 2)).view(4000, 16)  # any code shape: flattened, erased, shaped back
    fit, score = slice(0, 2000), slice(2000, 4000)
    chance = float(np.bincount(y[score].numpy()).max()) / 2000
    before = probe_accuracy(x[fit].numpy(), y[fit].numpy(), x[score].numpy(), y[score].numpy(), steps=300)
    after = probe_accuracy(erased[fit].numpy(), y[fit].numpy(), erased[score].numpy(), y[score].numpy(), steps=300)
    assert before > 0.9 and after <= chance + 0.03, (before, after, chance)
    eraser(x[:8])
    assert eraser._raw is None  # eval mode records nothing for an update
    # the gradient flows through the eraser, a fixed linear map: d sum(E(x)) / dx = (I - P_l P_r)^T 1
    x = x[:5].clone().requires_grad_(True)
    eraser(x).sum().backward()
    projection = torch.eye(16) - (eraser.proj_left @ eraser.proj_right).float()
    assert torch.allclose(x.grad, projection.T.sum(dim=1).expand(5, 16), atol=1e-5)


def test_leace_adversary_puts_its_eraser_in_the_code_path_and_updates_it_in_the_adversary_step(
    tmp_path: Path,
) -> None:
    recipe = _recipe(tmp_path, "leace")
    model = build_model(recipe)
    eraser = model.adversaries.adversaries["expression_from_nonexp"].eraser
    assert model.net.branches["nonexp"][1] is eraser  # the network applies it after the branch
    trainer = Trainer(recipe, model, torch.device("cpu"))
    images, labels = torch.rand(16, 3, 32, 32), {"expression": torch.arange(16) % 8}
    before = [p.detach().clone() for p in model.net.parameters()]
    stats = trainer.step(images, labels)
    assert int(eraser.updates) == 1 and eraser.proj_left.abs().sum() > 0
    assert float(stats["encoder_adv/expression/nonexp/loss"]) == 0.0  # no loss: the eraser acts in the forward
    assert any(not torch.equal(a, p) for a, p in zip(before, model.net.parameters(), strict=True))
    model.eval()
    codes = model.encode(images)
    raw = model.net.branches["nonexp"][0](model.net.encoder(images)).flatten(1)
    assert torch.allclose(codes["nonexp"].flatten(1), eraser(raw), atol=1e-6)
    # the statistics and the eraser are checkpointed with the model
    again = build_model(recipe)
    again.load_state_dict(model.state_dict())
    copy = again.adversaries.adversaries["expression_from_nonexp"].eraser
    assert int(copy.updates) == 1 and torch.equal(copy.proj_left, eraser.proj_left)
    assert again.net.branches["nonexp"][1] is copy


def test_normalised_leakage() -> None:
    assert normalised(0.125, 0.125, 0.725) == 0.0
    assert math.isclose(normalised(0.425, 0.125, 0.725), 0.5)
    assert normalised(0.5, 0.125, 0.125) is None and normalised(None, 0.1, 0.5) is None
    assert normalised(0.2, 0.125, 0.14) is None  # a head 1.5 points above chance: the ratio would divide by noise


# ---------------------------------------------------------------------------------------------
# through the CLI


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_each_erasure_recipe_trains_through_the_cli_and_reports_the_quick_probe(tmp_path: Path, recipe: Path) -> None:
    result = run_cli("run", str(recipe), *TINY, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (summary_path,) = tmp_path.glob("*/summary.json")
    test = json.loads(summary_path.read_text())["splits"]["test"]
    key = QUICK_KEY.format(factor="expression", code="nonexp")
    assert 0.0 <= test[key] <= 1.0
    assert key in result.stdout  # the end-of-run table shows it next to the adversary
    classifier_free = recipe.stem.startswith(("hsic", "leace"))
    assert ("adversary/expression/nonexp/accuracy" in test) == (not classifier_free)


def test_eval_puts_leakage_first_and_erase_writes_the_erased_evaluation_apart(tmp_path: Path) -> None:
    run = run_cli("run", str(RECIPES[0].parent / "none.toml"), *TINY, "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    (rundir,) = [p.parent for p in tmp_path.glob("*/summary.json")]
    plain = run_cli("eval", str(rundir), "--metrics", "probes", "--device", "cpu")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.index("Leakage (test split)") < plain.stdout.index("Classifiers of the model")
    (row,) = json.loads((rundir / "eval.json").read_text())["leakage"]
    assert (row["factor"], row["code"]) == ("expression", "nonexp")
    assert {"adversary", "linear_probe", "mlp_probe", "chance", "head", "linear_normalised"} <= set(row)
    erased = run_cli("eval", str(rundir), "--metrics", "probes", "--device", "cpu", "--erase")
    assert erased.returncode == 0, erased.stderr
    assert "erased with LEACE: nonexp" in " ".join(erased.stdout.split())
    result = json.loads((rundir / "leace" / "eval.json").read_text())
    assert result["erased"] == {"nonexp": ["expression"]}
    assert (rundir / "leace" / "report.md").is_file()
    (leak,) = result["leakage"]  # on 72 images the probes are noise: the planted-signal test checks the erasure
    assert 0.0 <= leak["linear_probe"] <= 1.0 and leak["head"] == row["head"]  # the head's code is not erased
    compare = run_cli("compare", str(rundir))
    assert compare.returncode == 0, compare.stderr
    assert "Leakage: fresh probes on the codes the adversaries must keep clean" in " ".join(compare.stdout.split())


def test_eval_erase_without_an_adversary_is_a_user_error(tmp_path: Path) -> None:
    run = run_cli("run", str(ROOT / "recipes" / "synth" / "baseline.toml"), *TINY, "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    (rundir,) = [p.parent for p in tmp_path.glob("*/summary.json")]
    result = run_cli("eval", str(rundir), "--metrics", "probes", "--erase")
    assert result.returncode == 2
    assert "--erase: the recipe has no adversary" in result.stderr


def test_benchmark_smoke_trains_probes_erases_and_writes_the_table_and_plot(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "erasure.py"),
            "--smoke",
            "--methods",
            "none",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = (tmp_path / "erasure.md").read_text()
    assert "| none |" in table and "| none + LEACE |" in table
    records = json.loads((tmp_path / "erasure.json").read_text())
    assert {r["method"] for r in records} == {"none", "none + LEACE"}
    assert all(0.0 <= r["mlp"] <= 1.0 and 0.0 <= r["head"] <= 1.0 for r in records)
    assert (tmp_path / "erasure.png").stat().st_size > 1000


def test_eval_erase_with_swap_scores_the_swaps_of_the_erased_codes(tmp_path: Path) -> None:
    recipe = ROOT / "recipes" / "synth" / "identity-swap.toml"
    tiny = ["data.identities=12", "data.samples_per_identity=16", "data.image_size=32", "run.epochs=1"]
    run = run_cli("run", str(recipe), *tiny, "run.batch_size=16", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    (rundir,) = [p.parent for p in tmp_path.glob("*/summary.json")]
    result = run_cli("eval", str(rundir), "--no-probes", "--erase", "--swap", "4", "--max-samples", "64")
    assert result.returncode == 0, result.stderr
    scores = json.loads((rundir / "leace" / "swap_scores.json").read_text())
    assert scores["pairs"] == 4 and "swap" in scores["accuracy"]
    assert not (rundir / "swap_scores.json").exists()  # the unerased scores are not overwritten
    assert (rundir / "leace" / "plots" / "swap.png").is_file()
    erasers = load_erasers(rundir / "leace" / "erasers.pt")
    assert set(erasers) == set(json.loads((rundir / "leace" / "eval.json").read_text())["erased"])


def test_an_erased_branch_gives_the_codes_the_arrays_get(tmp_path: Path) -> None:
    from factorlab.erasure import erase_model

    model = build_model(_recipe(tmp_path, "none")).eval()
    images = torch.rand(40, 3, 32, 32)
    with torch.no_grad():
        code = model.encode(images)["nonexp"]
    flat = code.flatten(1).numpy()
    y = np.arange(40) % 8
    erasers = fit_erasers({"nonexp": flat}, {"expression": y}, [("expression", "nonexp")], {"expression": 8})
    expected = apply_eraser(erasers["nonexp"], flat)
    erase_model(model, erasers)
    with torch.no_grad():
        erased = model.encode(images)
    assert erased["nonexp"].shape == code.shape and erased["nonexp"].dtype == code.dtype
    assert np.allclose(erased["nonexp"].flatten(1).numpy(), expected, atol=1e-5)
    assert not np.array_equal(expected, flat)  # it did change the code


def test_compare_of_seed_groups_shows_leakage_over_seeds(tmp_path: Path) -> None:
    run = run_cli("run", str(RECIPES[0].parent / "uniform.toml"), *TINY, "--seeds", "0,1", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    (group,) = [p.parent for p in tmp_path.glob("*/group.json")]
    # seed 0 evaluated (linear and MLP probes), seed 1 only with the quick linear probe of `factorlab run`
    evaluated = run_cli("eval", str(group / "seed-0"), "--metrics", "probes", "--device", "cpu")
    assert evaluated.returncode == 0, evaluated.stderr
    result = run_cli("compare", str(group))
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Leakage over seeds (test split)" in text
    assert "(n=2)" in text and "(n=1)" in text  # linear probe from both seeds, the MLP probe from seed 0 only
