"""Recipes: TOML + overrides -> validated models; errors name file, line and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from factorlab.errors import RecipeError
from factorlab.recipe import dump_toml, load_recipe, parse_override, parse_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").rglob("*.toml"))
QUICKSTART = ROOT / "recipes" / "quickstart.toml"


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(ROOT)) for p in RECIPES])
def test_every_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.heads, "every recipe trains at least one head"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# factorlab "), f"{path} must start with the command that runs it"


def test_overrides_change_values_and_parse_toml_literals() -> None:
    recipe = load_recipe(
        QUICKSTART, ["run.epochs=7", "optim.main.lr=0.5", "run.name=hello world", "data.augment.flip=true"]
    )
    assert recipe.run.epochs == 7
    assert recipe.optim.main.lr == 0.5
    assert recipe.run.name == "hello world"  # bare text stays a string
    assert recipe.data.augment.flip is True


def test_override_of_a_list_entry_by_index() -> None:
    recipe = load_recipe(QUICKSTART, ["heads.0.type=mlp"])
    assert recipe.heads[0].type == "mlp"


def test_resolved_recipe_round_trips_through_toml(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, ["run.epochs=3"])
    text = recipe.to_toml()
    tomllib.loads(text)  # valid TOML
    out = tmp_path / "resolved.toml"
    out.write_text(text)
    again = load_recipe(out)
    assert again.to_dict() == recipe.to_dict()
    # part defaults are written out, so a resolved recipe documents every value used
    assert set(recipe.encoder.options.model_dump()) <= set(tomllib.loads(text)["encoder"])


def test_dump_toml_handles_nested_tables_and_arrays_of_tables() -> None:
    data = {"a": 1, "t": {"x": 'q"uote', "inner": {"y": [1, 2]}}, "items": [{"k": True}, {"k": False}]}
    assert tomllib.loads(dump_toml(data)) == data


def _error(text: str, overrides=(), tmp_path: Path | None = None) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, overrides, source=Path("r.toml"))
    return str(info.value)


BASE = QUICKSTART.read_text()
EPOCHS = next(line for line in BASE.splitlines() if line.startswith("epochs = "))


def test_toml_syntax_error_gives_file_line_and_column() -> None:
    message = _error(BASE.replace('name = "quickstart"', 'name = "quickstart'))
    assert message.startswith("TOML syntax error in r.toml:6:")


def test_unknown_key_names_section_key_and_line() -> None:
    text = BASE.replace(EPOCHS, f"{EPOCHS}\nepoch = 5")
    line = text.splitlines().index("epoch = 5") + 1
    message = _error(text)
    assert f"r.toml:{line}: run.epoch: unknown key" in message


def test_unknown_section() -> None:
    message = _error(BASE + "\n[trainer]\nfoo = 1\n")
    assert "trainer: unknown key" in message


def test_wrong_type_names_the_key() -> None:
    message = _error(BASE.replace(EPOCHS, 'epochs = "four"'))
    assert "run.epochs: Input should be a valid integer" in message


def test_unknown_part_name_lists_the_choices() -> None:
    message = _error(BASE.replace('type = "small_cnn"', 'type = "small_cn"'))
    assert "encoder.type: unknown encoder 'small_cn'. Did you mean 'small_cnn'?" in message
    assert "'inception_resnet_v1'" in message


def test_unknown_key_of_a_part_is_checked_against_its_own_config_model() -> None:
    message = _error(BASE.replace('type = "small_cnn"', 'type = "small_cnn"\nwidthz = 3'))
    assert "encoder.widthz: unknown key" in message


def test_missing_recipe_file() -> None:
    with pytest.raises(RecipeError, match="recipe file not found: nowhere.toml"):
        load_recipe("nowhere.toml")


def test_override_without_equals() -> None:
    with pytest.raises(RecipeError, match="override 'run.epochs' has no '='"):
        parse_override("run.epochs")


def test_override_of_a_key_that_does_not_exist_names_the_override() -> None:
    message = _error(BASE, ["run.epoch=3"])
    assert "run.epoch: unknown key" in message and "command-line override 'run.epoch=3'" in message


def test_head_on_a_missing_code() -> None:
    message = _error(BASE.replace('code = "exp"', 'code = "expr"'))
    assert "heads.0.code: no code named 'expr'" in message


def test_beta_rec_without_decoder() -> None:
    message = _error(BASE, ["loss.beta_rec=0.5"])
    assert "beta_rec > 0 needs a decoder" in message


def test_unknown_factor() -> None:
    message = _error(BASE.replace('factor = "expression"\ncode = "exp"', 'factor = "expresion"\ncode = "exp"'))
    assert "unknown factor 'expresion'. Did you mean 'expression'?" in message


def test_factor_options_are_validated() -> None:
    recipe = load_recipe(QUICKSTART, ["factors.expression.classes=7"])
    assert recipe.factors["expression"].options.classes == 7
    message = _error(BASE, ["factors.expression.classes=6"])
    assert "factors.expression.classes" in message


def test_best_metric_must_be_measured_on_val() -> None:
    assert load_recipe(QUICKSTART, ["run.best_metric=adversary/expression/nonexp/loss"]).run.best_metric
    message = _error(BASE, ["run.best_metric=head/expression/exp/acc"])
    assert "run.best_metric: 'head/expression/exp/acc' is not measured on val" in message
    assert "'head/expression/exp/accuracy'" in message


def test_balance_factor_must_be_a_trained_factor() -> None:
    message = _error(BASE, ["data.sampler=balanced", "data.balance_factor=identity"])
    assert "data.balance_factor: 'identity' is not a factor of any head or adversary" in message


def test_reconstruction_options_are_checked_against_the_loss() -> None:
    recipe = load_recipe(
        ROOT / "recipes" / "synth" / "ablation.toml", ['loss.reconstruction_options={reduction="image_sum"}']
    )
    assert recipe.loss.reconstruction_options == {"reduction": "image_sum"}
    message = _error(BASE, ["loss.reconstruction_options={reductio=1}"])
    assert "loss.reconstruction_options.reductio: unknown key" in message


def test_override_values_that_look_like_dates_stay_text() -> None:
    assert load_recipe(QUICKSTART, ["run.name=2024-01-01"]).run.name == "2024-01-01"
