"""Issue 18: the `resup` decoder, the decoder losses (ssim, perceptual, patchgan, sum), their training step, and
the true-swap column of the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from factorlab import swap
from factorlab.data.loading import build_dataset, dataset_images
from factorlab.model import build_model, resolve_factors
from factorlab.plugins import get_host
from factorlab.recipe import load_recipe
from factorlab.testing import TINY_SYNTH, changed, one_batch_trainer, snapshot
from factorlab.train import Trainer
from factorlab.weights import resolve

ROOT = Path(__file__).resolve().parents[1]
SWAP_RECIPE = ROOT / "recipes" / "synth" / "swap.toml"
TINY = TINY_SYNTH


def _part(kind: str, name: str, options: dict | None = None, **kwargs):
    entry = get_host().get(kind, name)
    return entry.factory(entry.config.model_validate(options or {}), **kwargs)


def _casia_present() -> bool:
    try:
        return resolve("casia-webface", allow_download=False).is_file()
    except Exception:
        return False


needs_casia = pytest.mark.skipif(not _casia_present(), reason="factorlab weights fetch casia-webface")


# ---------------------------------------------------------------------------------------------
# the resup decoder


@pytest.mark.parametrize("size", [64, 160])
@pytest.mark.parametrize("in_shape", [(256, 2, 2), (512,), (64, 8, 8)])
def test_resup_shapes_range_and_gradients(size: int, in_shape: tuple) -> None:
    torch.manual_seed(0)
    decoder = _part("decoders", "resup", {"widths": [32, 16, 16, 8]}, in_shape=in_shape, image_size=size)
    codes = torch.randn(3, *in_shape) * 5  # large codes: the sigmoid must still keep the output in [0, 1]
    images = decoder(codes)
    assert images.shape == (3, 3, size, size)
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0
    images.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in decoder.parameters())
    assert all(p.grad.abs().sum() > 0 for p in decoder.parameters()), "every layer gets a gradient"


def test_resup_decodes_an_image_alone_as_in_a_batch() -> None:
    # group norm: a swap decoded alone equals the same swap decoded among others (batch norm in train mode would not)
    torch.manual_seed(0)
    decoder = _part("decoders", "resup", {"widths": [32, 16]}, in_shape=(16, 2, 2), image_size=24).train()
    codes = torch.randn(4, 16, 2, 2)
    torch.testing.assert_close(decoder(codes)[:1], decoder(codes[:1]))


def test_resup_and_deconv6_are_one_key_apart_in_a_recipe() -> None:
    recipe = load_recipe(ROOT / "recipes" / "identity-swap.toml")
    assert (
        recipe.decoder.type == "resup"
        and recipe.decoder.options.model_dump() == get_host().get("decoders", "resup").config().model_dump()
    ), "the CK+ recipe uses resup's defaults, so deconv6 is one key away"
    paper = load_recipe(ROOT / "recipes" / "identity-swap.toml", ["decoder.type=deconv6"])
    assert paper.decoder.options.model_dump() == get_host().get("decoders", "deconv6").config().model_dump()


# ---------------------------------------------------------------------------------------------
# the losses


def test_ssim_loss_of_two_flat_images_equals_the_closed_form() -> None:
    # flat images: both variances and the covariance are 0, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1), C1 = 0.01^2
    loss = _part("losses", "ssim")
    a, b = torch.full((2, 3, 32, 32), 0.2), torch.full((2, 3, 32, 32), 0.6)
    expected = 1 - (2 * 0.2 * 0.6 + 1e-4) / (0.2**2 + 0.6**2 + 1e-4)
    assert float(loss(a, b)) == pytest.approx(expected, abs=1e-6)
    assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-6)


def test_ssim_loss_equals_one_minus_the_scored_ssim() -> None:
    # factorlab.swap.ssim is tested window by window against the definition (tests/test_swap.py)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 40, 40, generator=generator)
    y = (x + 0.2 * torch.randn(4, 3, 40, 40, generator=generator)).clamp(0, 1).requires_grad_()
    value = _part("losses", "ssim")(x, y)
    assert float(value.detach()) == pytest.approx(1 - float(swap.ssim(x, y.detach()).mean()), abs=1e-5)
    value.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


@needs_casia
def test_perceptual_loss_equals_the_reference_on_the_casia_network() -> None:
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    from factorlab.weights import load_inception_resnet_v1

    layers = ["conv2d_2b", "conv2d_4a", "repeat_1"]
    loss = _part("losses", "perceptual", {"layers": layers})
    generator = torch.Generator().manual_seed(0)
    # 160 px: the whole network (the reference below) needs it; the loss itself stops at its last layer
    x = torch.rand(2, 3, 160, 160, generator=generator)
    y = (x + 0.1 * torch.randn(2, 3, 160, 160, generator=generator)).clamp(0, 1).requires_grad_()
    value = loss(x, y)
    # reference: the whole facenet-pytorch network with the same weights, features caught by forward hooks
    full = InceptionResnetV1().eval()
    load_inception_resnet_v1(full, "casia-webface")
    caught: dict[str, torch.Tensor] = {}
    for name in layers:
        getattr(full, name).register_forward_hook(lambda m, i, o, name=name: caught.__setitem__(name, o))

    def features(images):
        caught.clear()
        with torch.no_grad():
            full((images - 127.5 / 255) * 255 / 128)
        return [caught[name] / caught[name].norm(dim=1, keepdim=True) for name in layers]

    fx, fy = features(x), features(y.detach())
    expected = np.mean([float((a - b).square().sum(dim=1).mean()) for a, b in zip(fx, fy, strict=True)])
    assert float(value.detach()) == pytest.approx(expected, rel=1e-4)
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    value.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters()), "the face network stays frozen"
    loss.train()
    assert not loss.trunk.training, "its BatchNorm keeps its stored statistics"


@pytest.mark.parametrize("kind", ["hinge", "nonsaturating"])
@pytest.mark.parametrize("size", [64, 160])
def test_patchgan_losses_shapes_and_gradients(kind: str, size: int) -> None:
    torch.manual_seed(0)
    loss = _part("losses", "patchgan", {"loss": kind, "widths": [8, 16]})
    x, y = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size, requires_grad=True)
    scores = loss.discriminator(x)
    assert scores.shape == (2, 1, size // 4 - 1, size // 4 - 1), "one score per patch"
    generator_loss = loss(x, y)
    generator_loss.backward()
    assert generator_loss.shape == () and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    d_loss = loss.discriminator_loss(x, y.detach())
    if kind == "hinge":  # at D = 0 everywhere both hinge terms are 1
        assert float(d_loss.detach()) > 0
    d_loss.backward()
    assert all(p.grad is not None for p in loss.discriminator.parameters())
    assert float(loss.eval()(x, y)) == 0.0, "no GAN term in eval mode"


def test_sum_loss_weighs_its_terms_and_rejects_unknown_ones() -> None:
    from pydantic import ValidationError

    terms = [{"type": "l1", "weight": 2.0}, {"type": "ssim", "weight": 0.5}, {"type": "l2", "options": {}}]
    loss = _part("losses", "sum", {"terms": terms})
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    parts = loss.parts(x, y)
    assert float(loss(x, y)) == pytest.approx(
        2 * float(parts["0_l1"]) + 0.5 * float(parts["1_ssim"]) + float(parts["2_l2"]), rel=1e-6
    )
    assert float(parts["0_l1"]) == pytest.approx(float((x - y).abs().mean()), rel=1e-6)
    assert loss.discriminator_loss(x, y) is None, "no discriminator among the terms"
    config = get_host().get("losses", "sum").config
    for bad, words in [
        ({"terms": [{"type": "l3"}]}, "unknown loss 'l3'"),
        ({"terms": [{"type": "ssim", "options": {"window": 4}}]}, "odd"),
        ({"terms": [{"type": "sum", "options": {}}]}, "cannot be a term of itself"),
        ({"terms": []}, "at least 1"),
    ]:
        with pytest.raises(ValidationError, match=words):
            config.model_validate(bad)


# ---------------------------------------------------------------------------------------------
# the discriminator's own step


_GAN_TERMS = 'loss.reconstruction_options={terms = [{type = "l1"}, {type = "patchgan", weight = 0.1}]}'


def _gan_trainer():
    return one_batch_trainer(SWAP_RECIPE, [*TINY, _GAN_TERMS])


def test_discriminator_step_moves_only_the_discriminator() -> None:
    trainer, (images, labels) = _gan_trainer()
    assert trainer.disc_opt is not None
    out = trainer.net(images)
    net_before, disc_before = snapshot(trainer.model.net), snapshot(trainer.reconstruction)
    adv_before = snapshot(trainer.model.adversaries)
    stats = trainer.discriminator_step(images, out["reconstruction"])
    assert torch.isfinite(stats["discriminator/loss"])
    assert changed(net_before, trainer.model.net) == set()
    assert changed(adv_before, trainer.model.adversaries) == set()
    assert changed(disc_before, trainer.reconstruction), "the discriminator moved"


def test_main_step_freezes_the_discriminator_but_trains_the_decoder_through_it() -> None:
    trainer, (images, labels) = _gan_trainer()
    out = trainer.net(images)
    net_before, disc_before = snapshot(trainer.model.net), snapshot(trainer.reconstruction)
    stats = trainer.main_step(images, out, labels)
    assert torch.isfinite(stats["reconstruction/loss"])
    assert changed(disc_before, trainer.reconstruction) == set()
    assert all(p.grad is None for p in trainer.disc_params), "no gradient reached the discriminator"
    assert any(k.startswith("decoder.") for k in changed(net_before, trainer.model.net))
    assert all(p.requires_grad for p in trainer.disc_params), "the discriminator is unfrozen again"
    # the full step runs both and keeps the discriminator's state with the trainer's (resume)
    trainer.step(images, labels)
    state = trainer.state_dict()
    assert "disc_opt" in state and any(k.startswith("terms.1.discriminator") for k in state["discriminator"])


def test_without_a_discriminator_the_step_is_the_papers() -> None:
    recipe = load_recipe(ROOT / "recipes" / "synth" / "identity-swap.toml", TINY)
    dataset = build_dataset(recipe, "train", resolve_factors(recipe))
    trainer = Trainer(recipe, build_model(recipe, classes=dataset.classes), torch.device("cpu"), total_steps=10)
    assert trainer.disc_opt is None and trainer.disc_params == []
    assert "disc_opt" not in trainer.state_dict()


# ---------------------------------------------------------------------------------------------
# the true swap in the grid


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    recipe = load_recipe(SWAP_RECIPE, TINY)
    dataset = build_dataset(recipe, "test", resolve_factors(recipe))
    return recipe, build_model(recipe, classes=dataset.classes).eval(), dataset


def test_grid_has_the_true_swap_columns_for_synthfaces(tiny_model) -> None:
    _, model, dataset = tiny_model
    pairs = [(0, 20), (1, 21)]
    result = swap.synthesize(model, dataset_images(dataset, [0, 1]), dataset_images(dataset, [20, 21]))
    result = swap.add_truth(result, model, dataset, pairs)
    expected = dataset.render_with(1, 21, factors=("expression",))
    np.testing.assert_array_equal(swap.to_uint8(result.truth1)[1], expected)
    np.testing.assert_array_equal(swap.to_uint8(result.truth2)[0], dataset.render_with(20, 0, factors=("expression",)))
    assert [label for label, _, _ in result.columns()][-2:] == ["true X1''", "true X2''"]
    grid = np.asarray(swap.swap_grid(result))
    scale = swap.tile_scale(32)
    layout = swap.GridLayout(2, 32 * scale, 0, columns=8)
    assert (grid.shape[1], grid.shape[0]) == layout.size
    x0, y0, x1, y1 = layout.box(1, 6)
    np.testing.assert_array_equal(grid[y0:y1, x0:x1], expected.repeat(scale, axis=0).repeat(scale, axis=1))


def test_grid_has_no_true_swap_for_real_data(tiny_model, tmp_path) -> None:
    from factorlab.data import ckplus
    from factorlab.factors import Factor
    from factorlab.testing.layouts import EXPRESSION_8, write_ckplus

    _, model, _ = tiny_model
    config = ckplus.CKPlusConfig(root=write_ckplus(tmp_path / "ck"), align="none", folds=3, fold=1)
    real = ckplus.build(
        config, split="train", image_size=32, factors={"expression": Factor("expression", EXPRESSION_8)}
    )
    images = dataset_images(real, [0, 1])
    result = swap.add_truth(swap.synthesize(model, images[:1], images[1:]), model, real, [(0, 1)])
    assert result.truth1 is None and len(result.columns()) == 6
    assert np.asarray(swap.swap_grid(result)).shape[1] == swap.GridLayout(1, 32 * swap.tile_scale(32)).size[0]


# ---------------------------------------------------------------------------------------------
# the benchmarks of docs/swap.md


def _bench(*args: str) -> str:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _swap_scores_group(group: Path, rows: list[tuple[float, float]]) -> Path:
    """A seed group folder whose seed-*/swap_scores.json hold these (swap PSNR, expression accuracy) rows."""
    import json

    for seed, (psnr, expression) in enumerate(rows):
        image = {"psnr": psnr, "ssim": 0.5}
        accuracy = {"expression": expression, "identity": 0.4}
        scores = {
            "pairs": 500,
            "image": {"swap": image, "reconstruction": image, "x1": image, "x2": image},
            "accuracy": {a: accuracy for a in ("swap", "reconstruction", "x1", "x2")}
            | {"truth": {"expression": 0.5, "identity": 0.8}},
        }
        (group / f"seed-{seed}").mkdir(parents=True)
        (group / f"seed-{seed}" / "swap_scores.json").write_text(json.dumps(scores))
    return group


def test_swap_seeds_averages_the_seeds_swap_scores(tmp_path) -> None:
    group = _swap_scores_group(tmp_path / "group", [(15.0, 0.2), (16.0, 0.3)])
    out = _bench("benchmarks/swap_seeds.py", str(group))
    assert "2 seeds, 500 pairs" in out
    assert "| swap | 15.50 ± 0.71 | 0.500 ± 0.000 | 0.250 ± 0.071 | 0.400 ± 0.000 |" in out
    assert "| swap / ceiling | | | 0.500 ± 0.141 | 0.500 ± 0.000 |" in out
    other = _swap_scores_group(tmp_path / "other", [(17.0, 0.4), (18.0, 0.5)])
    pooled = _bench("benchmarks/swap_seeds.py", str(group), str(other), "--pool")  # two groups: 4 distinct seeds
    assert "group + other: 4 seeds" in pooled
    assert "| swap | 16.50 ± 1.29 | 0.500 ± 0.000 | 0.350 ± 0.129 | 0.400 ± 0.000 |" in pooled


def test_swap_seeds_refuses_to_pool_a_group_with_itself(tmp_path, monkeypatch) -> None:
    import subprocess
    import sys

    group = _swap_scores_group(tmp_path / "group", [(15.0, 0.2), (16.0, 0.3)])
    monkeypatch.chdir(tmp_path)
    script = str(ROOT / "benchmarks" / "swap_seeds.py")
    # the same folder spelled two ways (absolute and relative) is still the same group
    proc = subprocess.run(
        [sys.executable, script, str(group), "group", "--pool"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "--pool was given a group more than once: group (the same folder as " in proc.stderr
    assert "counts its seeds twice; name each group folder once" in proc.stderr


@pytest.mark.parametrize(
    ("text", "words"), [("{not json", "is not valid JSON"), ("[1, 2]", "is not a swap_scores.json")]
)
def test_swap_seeds_names_a_broken_scores_file(tmp_path, text: str, words: str) -> None:
    import subprocess
    import sys

    group = _swap_scores_group(tmp_path / "group", [(15.0, 0.2), (16.0, 0.3)])
    (group / "seed-1" / "swap_scores.json").write_text(text)
    script = str(ROOT / "benchmarks" / "swap_seeds.py")
    proc = subprocess.run([sys.executable, script, str(group)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "seed-1/swap_scores.json" in proc.stderr and words in proc.stderr


def test_decoder_losses_benchmark_runs_every_variant() -> None:
    out = _bench("benchmarks/decoder_losses.py", "--smoke")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 4 and all(float(row.rsplit("|", 2)[1]) > 0 for row in rows)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ('loss.reconstruction_options={terms=[{type="l3"}]}', "terms.0.type: unknown loss 'l3'"),
        ('loss.reconstruction_options={terms=[{type="patchgan", options={loss="wgan"}}]}', "terms.0.options"),
        ("decoder.norm=layer", "decoder.norm"),
    ],
)
def test_bad_decoder_and_loss_options_exit_2_naming_the_key(override: str, words: str) -> None:
    from factorlab.testing import run_cli

    result = run_cli("validate", str(SWAP_RECIPE), override)
    assert result.returncode == 2 and words in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_the_discriminator_resumes_with_the_trainer() -> None:
    trainer, (images, labels) = _gan_trainer()
    trainer.step(images, labels)
    state = trainer.state_dict()
    # another seed: the fresh discriminator starts from other weights, so only a restore can make them equal
    fresh, _ = one_batch_trainer(SWAP_RECIPE, [*TINY, _GAN_TERMS], seed=1)
    saved, before = trainer.reconstruction.state_dict(), fresh.reconstruction.state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in saved.items()), "the seeds give different discriminators"
    assert not fresh.disc_opt.state_dict()["state"]
    fresh.load_state_dict(state)
    assert all(torch.equal(v, fresh.reconstruction.state_dict()[k]) for k, v in saved.items())
    moments, restored = trainer.disc_opt.state_dict()["state"], fresh.disc_opt.state_dict()["state"]
    assert moments and restored.keys() == moments.keys(), "the discriminator's Adam moments came back"
    for p, values in moments.items():
        assert all(torch.equal(v, restored[p][name]) for name, v in values.items())
    assert state["disc_scaler"] == trainer.disc_scaler.state_dict()  # its loss scale (fp16 on a GPU) is kept too


def test_a_checkpoint_without_the_discriminator_scaler_still_resumes() -> None:
    trainer, (images, labels) = _gan_trainer()
    trainer.step(images, labels)
    state = {k: v for k, v in trainer.state_dict().items() if k != "disc_scaler"}  # written before it existed
    fresh, _ = one_batch_trainer(SWAP_RECIPE, [*TINY, _GAN_TERMS], seed=1)
    fresh.load_state_dict(state)
    saved = trainer.reconstruction.state_dict()
    assert all(torch.equal(v, fresh.reconstruction.state_dict()[k]) for k, v in saved.items())


def test_a_cpu_checkpoint_resumes_into_enabled_scalers() -> None:
    # a disabled scaler (CPU or fp32) saves {}; resumed where the scalers are on (fp16 on a GPU) they start afresh
    trainer, (images, labels) = _gan_trainer()
    trainer.step(images, labels)
    state = trainer.state_dict()
    assert state["main_scaler"] == {} and state["disc_scaler"] == {}
    fresh, _ = one_batch_trainer(SWAP_RECIPE, [*TINY, _GAN_TERMS], seed=1)
    for name in ("main_scaler", "adv_scaler", "disc_scaler"):
        setattr(fresh, name, torch.amp.GradScaler("cpu", enabled=True))  # what fp16 on a GPU builds
    fresh.load_state_dict(state)
    assert fresh.step_count == trainer.step_count and fresh.main_scaler.get_scale() == 2.0**16
