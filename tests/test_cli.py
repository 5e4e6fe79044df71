"""The CLI through real subprocesses: help, listing, validation and bad input (exit 2, no traceback)."""

from __future__ import annotations

from pathlib import Path

from factorlab.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "recipes" / "quickstart.toml")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_lists_commands_and_examples() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "validate", "plugins", "ls", "data"):
        assert command in result.stdout
    assert "factorlab run recipes/quickstart.toml" in result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("factorlab ")


def test_ls_lists_parts_with_descriptions_and_recipes() -> None:
    result = run_cli("ls", cwd=ROOT)
    assert result.returncode == 0
    out = _flat(result.stdout)
    for name in ("inception_resnet_v1", "conv4", "deconv6", "uniform", "grl", "synthfaces", "expression", "identity"):
        assert name in out
    assert "recipes/quickstart.toml" in out
    one = run_cli("ls", "adversaries")
    assert "uniform" in one.stdout and "synthfaces" not in one.stdout


def test_validate_ok_and_print_resolved() -> None:
    result = run_cli("validate", QUICKSTART, "run.epochs=2", "--print")
    assert result.returncode == 0, result.stderr
    assert "epochs = 2" in result.stdout and "[encoder]" in result.stdout


def _bad(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    return _flat(result.stderr)


def test_bad_inputs_exit_2_with_a_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[run]\nepochs = \n")
    assert "error: TOML syntax error in" in _bad("validate", str(broken)) and "broken.toml:2:" in _bad(
        "validate", str(broken)
    )
    assert "recipe file not found: missing.toml" in _bad("validate", "missing.toml")
    assert "override 'run.epochs' has no '='" in _bad("validate", QUICKSTART, "run.epochs")
    assert "run.epoch: unknown key" in _bad("validate", QUICKSTART, "run.epoch=3")
    assert "unknown encoder 'resnet'" in _bad("validate", QUICKSTART, "encoder.type=resnet")
    assert "run.epochs: Input should be a valid integer" in _bad("validate", QUICKSTART, "run.epochs=many")
    assert "factorlab run needs a recipe file" in _bad("run")


def test_debug_shows_the_traceback_wherever_it_is_written() -> None:
    for args in (("--debug", "validate", "missing.toml"), ("validate", "missing.toml", "--debug")):
        result = run_cli(*args)
        assert result.returncode == 2 and "Traceback" in result.stderr, args


def test_data_preview_writes_the_synthfaces_grid(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = run_cli("data", "preview", "synthfaces", "identities=6", "--image-size", "32", "--out", str(out))
    assert result.returncode == 0, result.stderr
    from PIL import Image

    grid = Image.open(out)
    assert grid.format == "PNG" and grid.width > 8 * 32 and grid.height > 6 * 32  # 8 expressions x identities
    assert "difficulty: Input should be less than or equal to 2" in _bad(
        "data", "preview", "synthfaces", "difficulty=5", "--out", str(out)
    )
