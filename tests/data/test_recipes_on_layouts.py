"""`factorlab run` of the paper's recipes on a tiny tree in each data set's official layout (real CLI processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factorlab.testing import run_cli
from factorlab.testing.layouts import (
    write_affectnet_csv,
    write_affectnet_npy,
    write_ckplus,
    write_fer2013,
    write_imagefolder,
    write_rafdb,
)

ROOT = Path(__file__).resolve().parents[2]
# one training step of the real Inception-ResNet-V1 (no pretrained file here) at a small size
TINY = ["encoder.weights=none", "data.image_size=96", "run.batch_size=4", "run.epochs=1", "run.max_steps_per_epoch=1"]
EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")

LAYOUTS = {
    "affectnet-csv": (
        lambda root: write_affectnet_csv(root, {"training.csv": 3, "validation.csv": 1}),
        ["data.val_fraction=0.25"],
    ),
    "affectnet-npy": (
        lambda root: write_affectnet_npy(root, {"train_set": 3, "val_set": 1}),
        ["data.val_fraction=0.25"],
    ),
    "ckplus": (write_ckplus, ["data.dataset=ckplus", "data.align=none", "data.folds=3"]),
    "fer2013": (write_fer2013, ["data.dataset=fer2013", "factors.expression.classes=7"]),
    "rafdb": (lambda root: write_rafdb(root, train=6, test=3), ["data.dataset=rafdb", "factors.expression.classes=7"]),
    "imagefolder": (
        lambda root: write_imagefolder(root, dict.fromkeys(EXPRESSIONS, 6)),
        ["data.dataset=imagefolder", "data.sampler=random"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_paper_recipe_runs_on_each_official_layout(layout: str, tmp_path: Path) -> None:
    write, overrides = LAYOUTS[layout]
    root = write(tmp_path / "data")
    result = run_cli(
        "run", str(ROOT / "recipes" / "expression.toml"), f"data.root={root}", *TINY, *overrides,
        "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (next((tmp_path / "runs").iterdir()) / "summary.json").is_file()


@pytest.mark.slow
def test_identity_swap_recipe_runs_on_a_ckplus_tree(tmp_path: Path) -> None:
    root = write_ckplus(tmp_path / "ckplus")
    result = run_cli(
        "run", str(ROOT / "recipes" / "identity-swap.toml"), f"data.root={root}", *TINY, "data.align=none",
        "data.folds=3", "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    swap = run_cli(
        "swap", "--run", str(next((tmp_path / "runs").iterdir())), "--pairs", "2", "--out", str(tmp_path / "s.png")
    )
    assert swap.returncode == 0, swap.stderr[-2000:]
    assert (tmp_path / "s.png").is_file()
