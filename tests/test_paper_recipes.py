"""The paper's recipes: the model they build matches the paper; without data or weights they say what to provide."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from factorlab.model import build_model
from factorlab.recipe import load_recipe
from factorlab.testing import run_cli
from factorlab.testing.layouts import write_affectnet_csv

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
NO_WEIGHTS = ["encoder.weights=none"]  # structure tests need no pretrained file


def _layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


def _branch_is_four_convs_with_leaky_relu(branch: nn.Module) -> None:
    layers = [m for m in _layers(branch) if not isinstance(m, (nn.Identity, nn.Flatten, nn.Dropout))]
    assert [type(m) for m in layers] == [nn.Conv2d, nn.LeakyReLU] * 4


def test_expression_recipe_builds_the_papers_model() -> None:
    recipe = load_recipe(RECIPES / "expression.toml", NO_WEIGHTS)
    model = build_model(recipe)
    assert set(model.net.branches) == {"exp", "nonexp"}
    for branch in model.net.branches.values():
        _branch_is_four_convs_with_leaky_relu(branch)
    head = model.net.heads["expression_from_exp"]
    assert [type(m) for m in _layers(head) if not isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity))] == [nn.Linear]
    assert head(model.encode(torch.rand(2, 3, 160, 160))["exp"].flatten(1)).shape == (2, 8)
    adversary = model.adversaries.adversaries["expression_from_nonexp"]
    assert [type(m) for m in _layers(adversary) if not isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity))] == [
        nn.Linear
    ]
    assert model.net.decoder is None, "beta_rec = 0: no decoder is built"
    assert (recipe.loss.beta_rec, recipe.loss.beta_cls, recipe.loss.beta_adv) == (0.0, 1.0, 1.0)
    assert type(model.net.encoder).__module__.endswith("facenet")


def test_baseline_recipe_has_no_adversary_and_one_code() -> None:
    model = build_model(load_recipe(RECIPES / "baseline.toml", NO_WEIGHTS))
    assert list(model.net.branches) == ["exp"] and not model.adversaries.links
    _branch_is_four_convs_with_leaky_relu(model.net.branches["exp"])


def test_ablation_recipe_adds_six_deconvs_with_sigmoid_last() -> None:
    model = build_model(load_recipe(RECIPES / "expression-ablation.toml", NO_WEIGHTS))
    layers = [m for m in _layers(model.net.decoder) if isinstance(m, (nn.ConvTranspose2d, nn.LeakyReLU, nn.Sigmoid))]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in layers) == 6
    assert isinstance(layers[-1], nn.Sigmoid) and isinstance(layers[-2], nn.ConvTranspose2d)
    assert sum(isinstance(m, nn.LeakyReLU) for m in layers) == 5


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_paper_recipe_without_data_says_what_to_provide(tmp_path: Path) -> None:
    result = run_cli("run", str(RECIPES / "expression.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = _flat(result.stderr)
    assert "AffectNet root data/AffectNet does not exist" in message and "data.root=" in message


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_affectnet_csv(tmp_path_factory.mktemp("affectnet"), {"training.csv": 3, "validation.csv": 1})


TINY_RUN = [
    "run.epochs=1",
    "run.max_steps_per_epoch=1",
    "run.batch_size=4",
    "run.precision=fp32",
    "run.channels_last=false",
    "run.num_workers=0",
    "data.sampler=random",
]


def test_paper_recipe_without_vggface2_weights_says_where_to_put_them(affectnet: Path, tmp_path: Path) -> None:
    env = {"TORCH_HOME": str(tmp_path / "torch"), "FACTORLAB_OFFLINE": "1", "FACTORLAB_WEIGHTS": str(tmp_path / "w")}
    result = run_cli(
        "run", str(RECIPES / "expression.toml"), f"data.root={affectnet}", *TINY_RUN, "--out", str(tmp_path), env=env
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = _flat(result.stderr)
    assert "20180402-114759-vggface2.pt" in message and "encoder.weights" in message


@pytest.mark.slow
def test_casia_recipe_starts_training_with_the_converted_trunk(affectnet: Path, tmp_path: Path) -> None:
    env = {"FACTORLAB_WEIGHTS": str(tmp_path / "weights"), "FACTORLAB_OFFLINE": "1"}
    fetched = run_cli("weights", "fetch", "casia-webface", env=env)
    assert fetched.returncode == 0, fetched.stderr
    result = run_cli(
        "run",
        str(RECIPES / "expression-casia.toml"),
        f"data.root={affectnet}",
        *TINY_RUN,
        "--out",
        str(tmp_path / "runs"),
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "head/expression/exp/accuracy" in _flat(result.stdout)
