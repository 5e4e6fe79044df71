"""Code swapping, the grid, PSNR/SSIM, swap scoring and the `factorlab swap` command end to end."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from factorlab import swap
from factorlab.cli import main
from factorlab.data.loading import build_dataset, dataset_images
from factorlab.errors import FactorlabError
from factorlab.model import Disentangler, build_model, resolve_factors
from factorlab.recipe import load_recipe
from factorlab.testing import TINY_SYNTH, run_cli

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "synth" / "identity-swap.toml"
TINY = TINY_SYNTH


@pytest.fixture(scope="module")
def tiny() -> tuple:
    torch.manual_seed(0)
    recipe = load_recipe(RECIPE, TINY)
    dataset = build_dataset(recipe, "test", resolve_factors(recipe))
    model = build_model(recipe, classes=dataset.classes).eval()
    return recipe, model, dataset


# ---------------------------------------------------------------------------------------------
# swapping


@settings(deadline=None, max_examples=25)
@given(st.lists(st.sampled_from(["exp", "nonexp", "pose"]), max_size=3), st.integers(0, 2**31 - 1))
def test_swapping_twice_restores_the_codes(names: list[str], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = {k: torch.randn(2, 4, generator=g) for k in ("exp", "nonexp", "pose")}
    b = {k: torch.randn(2, 4, generator=g) for k in ("exp", "nonexp", "pose")}
    a1, b1 = swap.swap_codes(a, b, names)
    for k in a:
        assert torch.equal(a1[k], b[k] if k in names else a[k]) and torch.equal(b1[k], a[k] if k in names else b[k])
    a2, b2 = swap.swap_codes(a1, b1, names)
    assert all(torch.equal(a2[k], a[k]) and torch.equal(b2[k], b[k]) for k in a)


def test_swapping_a_code_with_itself_gives_the_reconstruction(tiny) -> None:
    _, model, dataset = tiny
    x = dataset_images(dataset, [0, 5, 9])
    result = swap.synthesize(model, x, x, ("exp",))
    torch.testing.assert_close(result.swap1, result.rec1)
    torch.testing.assert_close(result.swap2, result.rec2)
    torch.testing.assert_close(result.rec1, model.decode(model.encode(x)).clamp(0, 1))


def test_swapping_every_code_exchanges_the_reconstructions(tiny) -> None:
    _, model, dataset = tiny
    result = swap.synthesize(
        model, dataset_images(dataset, [0, 1]), dataset_images(dataset, [20, 30]), ("exp", "nonexp")
    )
    torch.testing.assert_close(result.swap1, result.rec2)
    torch.testing.assert_close(result.swap2, result.rec1)
    x1, x2 = dataset_images(dataset, [0, 1]), dataset_images(dataset, [20, 30])
    partial = swap.synthesize(model, x1, x2, ("exp",))  # X1'' = De(X1's nonexp, X2's exp)
    c1, c2 = model.encode(x1), model.encode(x2)
    torch.testing.assert_close(partial.swap1, model.decode({"exp": c2["exp"], "nonexp": c1["nonexp"]}).clamp(0, 1))
    torch.testing.assert_close(partial.swap2, model.decode({"exp": c1["exp"], "nonexp": c2["nonexp"]}).clamp(0, 1))


def test_swap_needs_a_decoder_and_known_codes(tiny) -> None:
    recipe, model, dataset = tiny
    with pytest.raises(FactorlabError, match="the run's codes are"):
        swap.check_swappable(model, ("expresion",))
    no_decoder = build_model(load_recipe(RECIPE, [*TINY, "loss.beta_rec=0"]), classes=dataset.classes)
    with pytest.raises(FactorlabError, match="no decoder"):
        swap.check_swappable(no_decoder, ("exp",))
    assert swap.default_codes(model) == ("exp",) and swap.moved_factors(model, ("exp",)) == ["expression"]


# ---------------------------------------------------------------------------------------------
# the grid


def test_grid_has_the_papers_layout(tiny) -> None:
    _, model, dataset = tiny
    result = swap.synthesize(model, dataset_images(dataset, [0, 1, 2]), dataset_images(dataset, [20, 21, 22]))
    grid = np.asarray(swap.swap_grid(result, row_labels=["a\nb", "c\nd", "e\nf"]))
    scale = swap.tile_scale(32)
    assert scale * 32 >= swap.MIN_TILE
    probe = swap.GridLayout(3, 32 * scale, 0)
    left = probe.box(0, 0)[0]
    layout = swap.GridLayout(3, 32 * scale, grid.shape[1] - probe.size[0])  # the label column's width
    assert layout.label_width > 0 and (grid.shape[1], grid.shape[0]) == layout.size
    columns = [result.x1, result.x2, result.rec1, result.rec2, result.swap1, result.swap2]
    for row in range(3):
        boxes = [layout.box(row, col) for col in range(6)]
        assert all(a[2] < b[0] for a, b in zip(boxes, boxes[1:], strict=False)), "columns left to right, apart"
        for col, images in enumerate(columns):
            x0, y0, x1, y1 = boxes[col]
            expected = swap.to_uint8(images)[row].repeat(scale, axis=0).repeat(scale, axis=1)
            np.testing.assert_array_equal(grid[y0:y1, x0:x1], expected)
    # groups (originals | reconstructions | swaps) are further apart than the two tiles within a group
    assert layout.box(0, 2)[0] - layout.box(0, 1)[2] > layout.box(0, 1)[0] - layout.box(0, 0)[2]
    header = grid[: swap.HEADER]
    for col in range(6):
        x0, _, x1, _ = layout.box(0, col)
        assert (header[:, x0:x1] < 128).any(), f"column {col} has a label"
    assert (grid[:, : layout.label_width] < 128).any() and left == swap.PAD


def test_save_swap_writes_the_grid_and_each_image(tiny, tmp_path) -> None:
    _, model, dataset = tiny
    result = swap.synthesize(model, dataset_images(dataset, [0]), dataset_images(dataset, [20]))
    written = swap.save_swap(result, tmp_path / "out.png")
    assert written[0] == tmp_path / "out.png" and len(written) == 7
    x2 = np.asarray(Image.open(tmp_path / "out" / "pair0_x2.png"))
    np.testing.assert_array_equal(x2, dataset.image(20))


# ---------------------------------------------------------------------------------------------
# image similarity


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out window by window (float64), for one (C, H, W) pair."""
    w = swap.gaussian_window().double().numpy()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for ch in range(a.shape[0]):
        for y in range(a.shape[1] - 10):
            for x in range(a.shape[2] - 10):
                p, q = a[ch, y : y + 11, x : x + 11], b[ch, y : y + 11, x : x + 11]
                mp, mq = (w * p).sum(), (w * q).sum()
                vp, vq = (w * (p - mp) ** 2).sum(), (w * (q - mq) ** 2).sum()
                cov = (w * (p - mp) * (q - mq)).sum()
                values.append((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_definition_window_by_window() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 14, 13, generator=g)
    b = (a + 0.2 * torch.randn(2, 3, 14, 13, generator=g)).clamp(0, 1)
    got = swap.ssim(a, b)
    for k in range(2):
        assert got[k].item() == pytest.approx(_ssim_reference(a[k].double().numpy(), b[k].double().numpy()), abs=1e-5)
    assert swap.gaussian_window().sum().item() == pytest.approx(1.0)
    with pytest.raises(FactorlabError, match="at least 11x11"):
        swap.ssim(a[..., :10], b[..., :10])


@settings(deadline=None, max_examples=15)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 0.4))
def test_ssim_and_psnr_properties(seed: int, noise: float) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 3, 16, 16, generator=g)
    b = (a + noise * torch.randn(3, 3, 16, 16, generator=g)).clamp(0, 1)
    c = (a + 2 * noise * torch.randn(3, 3, 16, 16, generator=g)).clamp(0, 1)
    assert torch.allclose(swap.ssim(a, a), torch.ones(3), atol=1e-6)
    assert torch.allclose(swap.ssim(a, b), swap.ssim(b, a), atol=1e-6)
    assert ((swap.ssim(a, b) <= 1) & (swap.ssim(a, b) >= -1)).all()
    assert (swap.ssim(a, c) < swap.ssim(a, b)).all(), "more noise, less similar"
    assert (swap.psnr(a, c) < swap.psnr(a, b)).all()
    assert torch.allclose(swap.psnr(a, a), torch.full((3,), 100.0))


def test_psnr_of_a_constant_error_is_minus_20_log10_of_it() -> None:
    a = torch.full((2, 3, 8, 8), 0.5)
    assert torch.allclose(swap.psnr(a, a + 0.1), torch.full((2,), -20 * np.log10(0.1)), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# pairs and scoring


def test_random_pairs_differ_in_every_factor() -> None:
    rng = np.random.default_rng(0)
    labels = {"expression": rng.integers(0, 8, 200), "identity": rng.integers(0, 10, 200)}
    pool = np.arange(50, 200)
    pairs = swap.random_pairs(labels, 64, seed=3, pool=pool)
    assert pairs.shape == (64, 2) and np.isin(pairs, pool).all()
    for values in labels.values():
        assert (values[pairs[:, 0]] != values[pairs[:, 1]]).all()
    np.testing.assert_array_equal(pairs, swap.random_pairs(labels, 64, seed=3, pool=pool))
    with pytest.raises(FactorlabError, match="could not find"):
        swap.random_pairs({"identity": np.zeros(20, dtype=int)}, 5)


def test_judge_blur_keeps_flat_images_and_never_sharpens() -> None:
    flat = torch.full((8, 3, 16, 16), 0.3)
    torch.testing.assert_close(swap._random_blur(flat, torch.Generator().manual_seed(0)), flat)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float().expand(8, 3, 16, 16)
    blurred = swap._random_blur(checker, torch.Generator().manual_seed(0))
    spread = blurred.flatten(1).std(dim=1)
    assert (spread <= checker.flatten(1).std(dim=1) + 1e-6).all() and (spread < 0.4).any()
    assert blurred.min() >= 0 and blurred.max() <= 1


def test_score_swaps_compares_every_answer_with_the_rendered_truth(tiny) -> None:
    _, model, dataset = tiny
    result = swap.score_swaps(model, dataset, ("exp",), pairs=6, judge_epochs=2)
    assert result["moved_factors"] == ["expression"] and result["pairs"] == 6
    assert set(result["image"]) == {"swap", "reconstruction", "x1", "x2"}
    assert set(result["accuracy"]) == {"swap", "reconstruction", "x1", "x2", "truth"}
    for scores in result["accuracy"].values():
        assert set(scores) == {"expression", "identity"} and all(0 <= v <= 1 for v in scores.values())
    # the truth is X1 with only its expression changed: X1 is far closer to it than X2 (another person)
    assert result["image"]["x1"]["psnr"] > result["image"]["x2"]["psnr"] + 3
    assert result["image"]["x1"]["ssim"] > result["image"]["x2"]["ssim"]
    net = copy.copy(model.net)  # the same model without its expression head: nothing owns the exp code
    net.head_links = [link for link in model.net.head_links if link.code != "exp"]
    headless = Disentangler(net, model.adversaries, model.factors, model.classes)
    with pytest.raises(FactorlabError, match="no head reads"):
        swap.score_swaps(headless, dataset, ("exp",))


# ---------------------------------------------------------------------------------------------
# the command


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # the refusal is the message, no warning
def test_swap_reads_photos_with_the_predict_reader(tmp_path: Path) -> None:
    """`factorlab swap` reads files with `factorlab.predict.read_image` (EXIF-upright, the pixel limit checked on
    the header), with its own hints: an index instead of a missing file, a smaller image, a PNG or JPEG."""
    from factorlab.commands.swap import read_photo
    from factorlab.predict import BadImage, read_image

    photo = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotated 90 degrees, so the upright photo is 40 wide, 60 high
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(photo, exif=exif)
    upright = read_photo(photo)
    assert upright.shape == (60, 40, 3) and upright.dtype == np.uint8
    assert np.array_equal(upright, read_image(photo))
    huge = tmp_path / "huge.png"
    Image.new("1", (12_000, 12_000)).save(huge)  # 144 Mpx in a few kB: over the limit, under Pillow's own refusal
    with pytest.raises(BadImage) as info:
        read_photo(huge)
    message = str(info.value)
    assert message.startswith(f"cannot read image {huge}: 12000x12000 pixels is more than the limit of 89,478,485")
    assert message.endswith("give a smaller image") and "--max-pixels" not in message  # swap has no such option
    noise = tmp_path / "noise.png"
    noise.write_bytes(b"not a picture, just text")
    with pytest.raises(BadImage, match=r"^cannot read image .*noise\.png: not an image Pillow can read; give a PNG"):
        read_photo(noise)
    with pytest.raises(FactorlabError, match=r"image not found: .*missing\.png; give an image file or a data-set"):
        read_photo(tmp_path / "missing.png")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = run_cli("run", str(RECIPE), *TINY, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return Path(re.search(r"run folder: (\S+)", result.stdout).group(1))


def test_train_then_swap_writes_the_grid(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "swap.png"
    result = run_cli("swap", "--run", str(trained_run), "test:0", "test:17", "--out", str(out))
    assert result.returncode == 0, result.stderr
    grid = Image.open(out)
    tile = 32 * swap.tile_scale(32)
    assert grid.size[1] == swap.GridLayout(1, tile).size[1] and grid.size[0] > swap.GridLayout(1, tile).size[0]
    # SynthFaces renders the true swaps: two more columns (true X1'', true X2'') next to the paper's six
    assert len(list((tmp_path / "swap").glob("pair0_*.png"))) == 8
    assert (tmp_path / "swap" / "pair0_x1_swap_true.png").is_file()
    # random pairs, and a photo file (centre square, resized): in-process, the same entry point
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((50, 70, 3), 180, dtype=np.uint8)).save(photo)
    assert main(["swap", "--run", str(trained_run), "--pairs", "3", "--out", str(tmp_path / "p.png")]) == 0
    assert Image.open(tmp_path / "p.png").size[1] == swap.GridLayout(3, tile).size[1]
    assert main(["swap", "--run", str(trained_run), str(photo), "val:2", "--out", str(tmp_path / "f.png")]) == 0


def _fails_cleanly(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_swap_bad_inputs_give_clear_messages_in_a_real_process(trained_run: Path, tmp_path: Path) -> None:
    _fails_cleanly(run_cli("swap", "--run", str(tmp_path / "nope"), "test:0", "test:1"), "run folder not found")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 120, 3), 128, dtype=np.uint8)).save(blank)
    _fails_cleanly(run_cli("swap", "--run", str(trained_run), str(blank), "test:1", "--align"), "no face found")


def test_swap_on_a_run_without_decoder_or_with_an_unreadable_image(trained_run: Path, tmp_path: Path, capsys) -> None:
    no_decoder = tmp_path / "no-decoder"
    no_decoder.mkdir()
    (no_decoder / "recipe.toml").write_text(load_recipe(ROOT / "recipes" / "quickstart.toml").to_toml())
    assert main(["swap", "--run", str(no_decoder), "test:0", "test:1"]) == 2
    assert "no [decoder] section" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    assert main(["swap", "--run", str(trained_run), str(broken), "test:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, words",
    [
        (["missing.png", "test:1"], "image not found"),
        (["test:0"], "takes two images"),
        (["test:0", "test:99999"], "has 32 samples"),
        (["test:0", "test:1", "--codes", "pose"], "the run's codes are"),
        ([], "--pairs N"),
    ],
)
def test_swap_usage_errors(trained_run: Path, capsys, args: list[str], words: str) -> None:
    assert main(["swap", "--run", str(trained_run), *args]) == 2
    assert words in capsys.readouterr().err


def test_eval_swap_writes_swap_scores(trained_run: Path) -> None:
    result = run_cli("eval", str(trained_run), "--no-probes", "--swap", "4", "--max-samples", "64")
    assert result.returncode == 0, result.stderr
    scores = json.loads((trained_run / "swap_scores.json").read_text())
    assert scores["split"] == "test" and scores["pairs"] == 4
    assert set(scores["accuracy"]) == {"swap", "reconstruction", "x1", "x2", "truth"}
    assert "PSNR" in result.stdout


def test_swap_out_must_be_an_image_file_name(trained_run: Path, tmp_path: Path) -> None:
    result = run_cli("swap", "--run", str(trained_run), "test:0", "test:1", "--out", str(tmp_path / "grid"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "give an image file name such as swap.png" in " ".join(result.stderr.split())


def test_swap_errors_benchmark_splits_the_error_between_background_and_face(trained_run: Path) -> None:
    import subprocess
    import sys

    script = [sys.executable, str(ROOT / "benchmarks" / "swap_errors.py")]
    proc = subprocess.run([*script, str(trained_run), "--samples", "40"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {trained_run.name} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    means = [float(c.split(" ± ")[0]) for c in cells[2:]]
    psnr, bg_pixels, bg_error, psnr_perfect_bg, r2 = means
    assert cells[1] == "1" and 5 < psnr < 40
    assert 0.2 < bg_pixels < 0.95 and 0.0 < bg_error < 1.0  # a real mask: neither empty nor the whole image
    assert psnr_perfect_bg > psnr  # removing the background's error can only raise PSNR
    assert math.isfinite(r2) and r2 < 1.0  # scored on held-out test images: a number, never a perfect fit
    bad = subprocess.run([*script, str(trained_run / "nope")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no such folder" in bad.stderr and "Traceback" not in bad.stderr
