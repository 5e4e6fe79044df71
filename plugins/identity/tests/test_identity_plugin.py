"""The identity plugin: found through its entry point, disableable, public-API only; its verification metric."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import factorlab_identity
from factorlab.errors import FactorlabError
from factorlab.model import build_model
from factorlab.plugins import get_host
from factorlab.recipe import load_recipe
from factorlab.testing import internal_imports, run_cli

ROOT = Path(__file__).resolve().parents[3]  # the factorlab repository (plugins/identity/tests/ -> root)
RECIPE = ROOT / "recipes" / "synth" / "identity-swap.toml"


def test_identity_plugin_is_registered_through_its_entry_point() -> None:
    points = {ep.name: ep for ep in metadata.entry_points(group="factorlab")}
    assert points["identity"].value == "factorlab_identity"
    assert points["identity"].load() is factorlab_identity
    info = next(info for info in get_host().plugins if info.name == "identity")
    assert info.status == "loaded" and info.module == "factorlab_identity"
    assert info.registered == {"heads": ["cosine"], "factors": ["identity"], "metrics": ["identity_verification"]}
    factor = get_host().get("factors", "identity").factory(factorlab_identity.IdentityConfig())
    assert factor.name == "identity" and factor.classes is None  # classes come from the data set


def test_identity_plugin_loads_in_a_fresh_process_and_can_be_disabled() -> None:
    loaded = run_cli("plugins", "--json")
    assert loaded.returncode == 0, loaded.stderr
    info = {p["name"]: p for p in json.loads(loaded.stdout)}["identity"]
    assert info["status"] == "loaded" and info["registered"]["factors"] == ["identity"]

    env = {"FACTORLAB_DISABLE_PLUGINS": "identity"}
    disabled = run_cli("plugins", "--json", env=env)
    info = {p["name"]: p for p in json.loads(disabled.stdout)}["identity"]
    assert info["status"] == "disabled" and info["registered"] == {}
    # a recipe that needs the identity factor now fails with a message, not a traceback
    result = run_cli("validate", str(RECIPE), env=env)
    assert result.returncode == 2
    assert "identity" in result.stderr and "Traceback" not in result.stderr


def test_identity_plugin_imports_only_the_public_api() -> None:
    assert internal_imports(Path(factorlab_identity.__file__).parent) == []


def test_registering_the_identity_plugin_imports_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, factorlab_identity\n"
        "from factorlab.plugins import load_plugins\n"
        "load_plugins({'identity-only': factorlab_identity}, entry_points=False)\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# identity_verification


def _brute_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    diff = positive[:, None] - negative[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@settings(deadline=None, max_examples=40)
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=30),
    st.lists(st.integers(-5, 5), min_size=1, max_size=30),
)
def test_roc_auc_is_the_probability_that_a_positive_outranks_a_negative(pos: list[int], neg: list[int]) -> None:
    positive, negative = np.array(pos, float) / 2, np.array(neg, float) / 2  # small integers: many ties
    assert factorlab_identity.roc_auc(positive, negative) == pytest.approx(_brute_auc(positive, negative))


def test_verification_pairs_are_same_and_different_identity() -> None:
    identity = np.repeat(np.arange(7), [1, 2, 3, 4, 5, 6, 9])
    same, different = factorlab_identity.verification_pairs(identity, 300, seed=1)
    assert same.shape == (300, 2) and different.shape == (300, 2)
    assert (identity[same[:, 0]] == identity[same[:, 1]]).all() and (same[:, 0] != same[:, 1]).all()
    assert (identity[different[:, 0]] != identity[different[:, 1]]).all()
    with pytest.raises(FactorlabError, match="at least two identities"):
        factorlab_identity.verification_pairs(np.zeros(5, dtype=int), 10)


def test_verification_metric_separates_an_identity_code_from_a_random_one() -> None:
    rng = np.random.default_rng(0)
    identity = rng.integers(0, 20, size=400)
    centres = rng.normal(size=(20, 16))
    codes = {
        "nonexp": centres[identity] + 0.3 * rng.normal(size=(400, 16)),  # holds identity
        "exp": rng.normal(size=(400, 16)),  # knows nothing of it
    }
    entry = get_host().get("metrics", "identity_verification")
    result = entry.factory(entry.config(pairs=2000))(codes, {"identity": identity})
    assert result["identity_verification/nonexp/auc"] > 0.95
    assert 0.4 < result["identity_verification/exp/auc"] < 0.6
    with pytest.raises(FactorlabError, match="needs identity labels"):
        entry.factory(entry.config())(codes, {"expression": identity})


def test_cosine_head_scores_by_angle_and_trains_in_a_recipe() -> None:
    head = (
        get_host()
        .get("heads", "cosine")
        .factory(factorlab_identity.CosineHeadConfig(scale=10.0), in_features=4, num_classes=3)
    )
    code = torch.randn(5, 4)
    logits = head(code)
    assert logits.shape == (5, 3)
    torch.testing.assert_close(head(code * 7.0), logits)  # only the direction of a code matters
    assert logits.abs().max() <= 10.0 + 1e-5
    recipe = load_recipe(RECIPE, ["heads.1.type=cosine", "heads.1.scale=8"])
    model = build_model(recipe, classes={"expression": list("abcdefgh"), "identity": [f"id{i}" for i in range(5)]})
    assert type(model.net.heads["identity_from_nonexp"]).__name__ == "CosineHead"
