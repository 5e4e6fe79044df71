"""The alternating training step, checkpoints and resume, distributed training, the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from factorlab.recipe import load_recipe
from factorlab.testing import SMALL_SYNTH, changed, one_batch_trainer, run_cli, snapshot
from factorlab.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"
SMALL = SMALL_SYNTH


def _setup(overrides=()):
    return one_batch_trainer(QUICKSTART, [*SMALL, *overrides])


def test_adversary_step_moves_only_the_adversaries() -> None:
    trainer, (images, labels) = _setup()
    out = trainer.net(images)  # (the forward pass itself updates BatchNorm statistics)
    net_before, adv_before = snapshot(trainer.model.net), snapshot(trainer.model.adversaries)
    trainer.adversary_step(out["codes"], labels)
    assert changed(net_before, trainer.model.net) == set()
    assert changed(adv_before, trainer.model.adversaries) == set(adv_before)


def test_main_step_freezes_the_adversaries_but_trains_through_them() -> None:
    # beta_cls = 0: the encoder can only move through the adversary's uniform-confusion loss.
    trainer, (images, labels) = _setup(["loss.beta_cls=0"])
    out = trainer.net(images)
    net_before, adv_before = snapshot(trainer.model.net), snapshot(trainer.model.adversaries)
    codes = out["codes"]
    for code in codes.values():
        code.retain_grad()
    trainer.main_step(images, out, labels)
    assert changed(adv_before, trainer.model.adversaries) == set()
    assert all(p.grad is None for p in trainer.model.adversaries.parameters())
    assert codes["nonexp"].grad is not None and codes["nonexp"].grad.abs().sum() > 0
    moved = changed(net_before, trainer.model.net)
    assert any(k.startswith("branches.nonexp") for k in moved) and any(k.startswith("encoder.") for k in moved)
    assert not any(k.startswith("branches.exp.") for k in moved), "the exp branch gets no gradient without L_cls"
    assert all(p.requires_grad for p in trainer.model.adversaries.parameters()), "adversaries are unfrozen again"


def test_step_runs_under_bf16_autocast_and_channels_last() -> None:
    trainer, (images, labels) = _setup(["run.precision=bf16", "run.channels_last=true"])
    stats = trainer.step(images.contiguous(memory_format=torch.channels_last), labels)
    assert torch.isfinite(stats["total/loss"]) and stats["total/loss"].dtype == torch.float32


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_validation_runs_under_autocast_too(precision: str) -> None:
    """The val pass scores the adversaries' encoder losses on autocast codes (it crashed outside autocast)."""
    from factorlab.data.loading import build_dataset
    from factorlab.factors import resolve_factors
    from factorlab.train import evaluate

    trainer, _ = _setup([f"run.precision={precision}"])
    val = build_dataset(trainer.recipe, "val", resolve_factors(trainer.recipe))
    metrics = evaluate(trainer.model, val, trainer.recipe, torch.device("cpu"))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    assert "encoder_adv/expression/nonexp/loss" in metrics


def _params(rundir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(rundir / "checkpoints" / "last.pt")["trainer"]["model"]


def test_quickstart_cli_end_to_end(tmp_path: Path) -> None:
    result = run_cli("run", str(QUICKSTART), *SMALL, "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rundir = Path(result.stdout.strip().splitlines()[-1].split("run folder: ")[1])
    summary = json.loads((rundir / "summary.json").read_text())
    for split in ("val", "test"):
        accuracy = summary["splits"][split]["head/expression/exp/accuracy"]
        assert 0.0 <= accuracy <= 1.0
        assert "adversary/expression/nonexp/accuracy" in summary["splits"][split]
    lines = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in lines] == [(0, "train"), (0, "val"), (1, "train"), (1, "val")]
    assert (rundir / "recipe.toml").is_file() and (rundir / "checkpoints" / "best.pt").is_file()
    assert load_recipe(rundir / "recipe.toml").run.epochs == 2
    assert "final metrics" in result.stdout


def test_resume_after_a_killed_run_gives_the_same_weights(tmp_path: Path) -> None:
    common = [*SMALL, "run.epochs=3", "data.augment.flip=true"]
    full = run_cli("run", str(QUICKSTART), *common, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    full_dir = next((tmp_path / "full").iterdir())
    # The same run, killed during its third epoch: emulate with a run of 2 epochs, then a resume
    # that extends it to 3 (the killed epoch left nothing behind but what the checkpoint holds).
    part = run_cli("run", str(QUICKSTART), *common, "run.epochs=2", "--out", str(tmp_path / "part"))
    assert part.returncode == 0, part.stderr
    part_dir = next((tmp_path / "part").iterdir())
    resumed = run_cli("run", "--resume", str(part_dir), "run.epochs=3")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _params(full_dir), _params(part_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_killed_mid_epoch_then_resumed(tmp_path: Path) -> None:
    """A real kill: SIGKILL the training process after its first checkpoint, then resume."""
    common = [*SMALL, "run.epochs=3", "run.max_steps_per_epoch=6"]
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "factorlab", "run", str(QUICKSTART), *common, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import time

    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("*/checkpoints/last.pt")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    rundir = next(out.iterdir())
    resumed = run_cli("run", "--resume", str(rundir))
    assert resumed.returncode == 0, resumed.stderr
    reference = run_cli("run", str(QUICKSTART), *common, "--out", str(tmp_path / "ref"))
    assert reference.returncode == 0
    a, b = _params(rundir), _params(next((tmp_path / "ref").iterdir()))
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [json.loads(line)["epoch"] for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == sorted(epochs) and epochs.count(2) == 2, "each epoch logged once (train + val)"


def test_nan_loss_stops_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli(
        "run",
        str(QUICKSTART),
        *SMALL,
        "optim.main.lr=1e30",
        "optim.adversary.lr=1e30",
        "run.log_every=1",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "the loss became non-finite at step" in message and "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    # GroupNorm: BatchNorm statistics over a per-process half batch would differ from one process.
    common = [*SMALL, "run.epochs=1", "run.max_steps_per_epoch=3", "run.device=cpu", "encoder.norm=group"]
    single = run_cli("run", str(QUICKSTART), *common, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",  # a free port on localhost
            "-m",
            "factorlab",
            "run",
            str(QUICKSTART),
            *common,
            "--out",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    summary = json.loads(next((tmp_path / "ddp").iterdir()).joinpath("summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["max_weight_difference_across_ranks"] == 0.0, "both ranks end with identical weights"
    a = _params(next((tmp_path / "single").iterdir()))
    b = _params(next((tmp_path / "ddp").iterdir()))
    for key in a:
        if a[key].dtype.is_floating_point:
            torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4, msg=key)


def test_adversary_weight_zero_leaves_the_encoder_alone() -> None:
    # beta_cls = 0 and the only adversary weighted 0: the main step has nothing to push the encoder with.
    trainer, (images, labels) = _setup(["loss.beta_cls=0", "adversaries.0.weight=0"])
    out = trainer.net(images)
    before = snapshot(trainer.model.net.branches)
    trainer.main_step(images, out, labels)
    assert changed(before, trainer.model.net.branches) == set()


def test_tensorboard_gets_scalars_inputs_and_swap_grids(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = ROOT / "recipes" / "synth" / "ablation.toml"
    result = run_cli("run", str(recipe), *SMALL, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(next(tmp_path.iterdir()) / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"examples/inputs", "examples/swaps"} <= set(tags["images"])
    assert len(events.Images("examples/swaps")) == 2, "one swap grid per evaluated epoch"
    assert {"val/head/expression/exp/accuracy", "train/reconstruction/loss"} <= set(tags["scalars"])


def test_deterministic_runs_set_torch_switch_without_inductor_or_nan_fill() -> None:
    """run.deterministic on the CPU: torch's deterministic switch is on (warn only), uninitialised memory is not
    NaN-filled (13% of the CPU step), and torch._inductor is not imported for it (2 s) unless the run compiles."""
    script = """
import sys, torch
from factorlab.recipe import load_recipe
from factorlab.train import setup_runtime
setup_runtime(load_recipe(sys.argv[1], ["run.device=cpu"] + sys.argv[2:]))
import torch.utils.deterministic
print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
      torch.utils.deterministic.fill_uninitialized_memory, "torch._inductor" in sys.modules)
"""

    def state(*overrides: str) -> str:
        recipe = str(Path(__file__).parents[1] / "recipes" / "quickstart.toml")
        done = subprocess.run(
            [sys.executable, "-c", script, recipe, *overrides], capture_output=True, text=True, check=True
        )
        return done.stdout.split()

    assert state() == ["True", "True", "False", "False"]
    assert state("run.compile=true") == ["True", "True", "False", "True"]  # inductor's own flag is set too
    assert state("run.deterministic=false") == ["False", "False", "True", "False"]
