"""The training loop: alternating adversary and main steps (paper eq. 1-3), evaluation, checkpoints.

Per batch, the codes are computed once. Adversary step: each adversary is updated alone on the
DETACHED codes with cross-entropy to the true labels (L_adv). Main step: encoder, branches, heads
(and decoder) are updated with beta_rec L_r + beta_cls sum L_cls + beta_adv sum L_adv_En, the
adversaries frozen (their parameters get no gradient) while gradient flows through them to the codes.
Computing the codes once is exact: the encoder does not change during the adversary step.
When the reconstruction loss owns a discriminator (`patchgan`, factorlab.image_losses), a discriminator
step between the two updates it alone on the real images and the detached reconstructions; it is frozen
in the main step. Without one, the step is exactly the paper's.

Works unchanged under `torchrun --nproc_per_node=N -m factorlab run ...` (DistributedDataParallel).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from factorlab import losses
from factorlab.data.base import FactorDataset
from factorlab.data.loading import build_dataset, dataset_images, eval_loader, make_loader, to_device
from factorlab.data.sampling import FaceAugment, epoch_order
from factorlab.errors import DataError, FactorlabError
from factorlab.files import atomic_write, atomic_write_text
from factorlab.model import Disentangler, build_model, resolve_factors
from factorlab.progress import task
from factorlab.recipe import Recipe, load_recipe
from factorlab.rundir import (  # CHECKPOINTS, RunLock, load_checkpoint re-exported: their home is rundir
    CHECKPOINTS,
    RunLock,
    checkpoint_info,
    checkpoint_path,
    load_checkpoint,
)
from factorlab.runfolders import discard_unused_run_dir, new_run_dir  # new_run_dir re-exported
from factorlab.runtime import (  # re-exported: their home is runtime
    Dist,
    autocast,
    init_distributed,
    resolve_auto,
    resolve_device,
    seed_everything,
    use_deterministic,
)


class NonFiniteLoss(FactorlabError):
    """A loss became NaN or Inf."""


# ---------------------------------------------------------------------------------------------
# Optimisation


def make_optimizer(params, config) -> torch.optim.Optimizer:
    """An optimiser from an [optim.main] / [optim.adversary] section."""
    params = [p for p in params if p.requires_grad]
    if config.name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, betas=(config.momentum, 0.999), weight_decay=config.weight_decay)


def make_schedule(optimizer, optim, total_steps: int, steps_per_epoch: int):
    """Per-step learning-rate multiplier: warm-up, then constant / cosine / step decay."""

    def factor(step: int) -> float:
        if optim.warmup_steps and step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "cosine":
            progress = (step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if optim.schedule == "step":
            return 0.1 ** (step // max(1, optim.step_epochs * steps_per_epoch))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------------
# The step


@dataclass
class Trainer:
    """Holds the model, the optimisers and the loss modules; `step` runs one alternating update."""

    recipe: Recipe
    model: Disentangler
    device: torch.device
    dist_info: Dist = field(default_factory=Dist)
    total_steps: int = 1

    def __post_init__(self) -> None:
        recipe = self.recipe
        resolve_auto(recipe.run, self.device)
        self.model.to(self.device)
        if recipe.run.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = self.model.net
        self.adv: nn.Module = self.model.adversaries
        # the adversaries' trainable parameters: what the adversary step updates and the main step freezes
        self.adv_params = [p for p in self.model.adversaries.parameters() if p.requires_grad]
        if self.dist_info.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            read = {link.code for link in [*self.model.net.head_links, *self.model.adversaries.links]}
            unread = self.model.net.decoder is None and bool(set(self.model.net.branches) - read)
            self.net = nn.parallel.DistributedDataParallel(
                self.model.net, device_ids=ids, find_unused_parameters=unread
            )
            if self.adv_params:
                self.adv = nn.parallel.DistributedDataParallel(self.model.adversaries, device_ids=ids)
        if recipe.run.compile:
            self.net = torch.compile(self.net)
        self.main_opt = make_optimizer(self.model.net.parameters(), recipe.optim.main)
        self.adv_opt = make_optimizer(self.adv_params, recipe.optim.adversary) if self.adv_params else None
        scaler_on = recipe.run.precision == "fp16" and self.device.type == "cuda"
        self.main_scaler = torch.amp.GradScaler(self.device.type, enabled=scaler_on)
        self.adv_scaler = torch.amp.GradScaler(self.device.type, enabled=scaler_on)
        self.disc_scaler = torch.amp.GradScaler(self.device.type, enabled=scaler_on)  # the discriminator's own step
        self.classification = losses.ClassificationLoss()
        self.reconstruction = reconstruction_module(recipe).to(self.device) if recipe.uses_decoder else None
        # a reconstruction loss with trainable parameters (an image discriminator) is trained in its own step
        self.disc_params = (
            [p for p in self.reconstruction.parameters() if p.requires_grad] if self.reconstruction else []
        )
        if self.disc_params and self.dist_info.active:
            raise FactorlabError(
                f"loss.reconstruction = {recipe.loss.reconstruction!r} trains a discriminator, which torchrun does not "
                "synchronise yet; train it in one process, or use losses without a discriminator (l1, ssim, perceptual)"
            )
        self.disc_opt = make_optimizer(self.disc_params, recipe.optim.adversary) if self.disc_params else None
        self.step_count = 0

    def step(self, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One alternating update; returns detached per-term losses and correct counts (on the device)."""
        with autocast(self.device, self.recipe.run.precision):
            out = self.net(images)
        stats = self.adversary_step(out["codes"], labels)
        if self.disc_opt is not None:
            stats.update(self.discriminator_step(images, out["reconstruction"]))
        stats.update(self.main_step(images, out, labels))
        self.step_count += 1
        return stats

    def adversary_step(
        self, codes: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Update each adversary alone on the detached codes with its own loss (L_adv_exp); nothing else moves."""
        links = self.model.adversaries.links
        stats: dict[str, torch.Tensor] = {}
        if not links:
            return stats
        detached = {name: code.detach() for name, code in codes.items()}
        for _ in range(self.recipe.optim.adversary_steps):
            with autocast(self.device, self.recipe.run.precision):
                result = self.adv(detached, labels)
            trained = [loss for loss, _ in result.values() if loss is not None and loss.requires_grad]
            if not trained or self.adv_opt is None:
                break  # classifier-free adversaries: nothing to train in this step
            self.adv_opt.zero_grad(set_to_none=True)
            self.adv_scaler.scale(sum(trained)).backward()
            self.adv_scaler.step(self.adv_opt)
            self.adv_scaler.update()
        for link in links:
            loss, logits = result[link.key]
            prefix = f"adversary/{link.factor}/{link.code}"
            if loss is not None:
                stats[f"{prefix}/loss"] = loss.detach()
            if logits is not None:
                stats[f"{prefix}/correct"] = _correct(logits, labels[link.factor])
        return stats

    def discriminator_step(self, images: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update the reconstruction loss's discriminator alone on real images and detached reconstructions."""
        with autocast(self.device, self.recipe.run.precision):
            loss = self.reconstruction.discriminator_loss(images, reconstruction.detach())
        self.disc_opt.zero_grad(set_to_none=True)
        self.disc_scaler.scale(loss).backward()
        self.disc_scaler.step(self.disc_opt)
        self.disc_scaler.update()
        return {"discriminator/loss": loss.detach()}

    def main_step(self, images: torch.Tensor, out: dict, labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Update encoder, branches, heads (and decoder) with beta_rec L_r + beta_cls L_cls + beta_adv L_adv_En.

        The adversaries are frozen: their parameters get no gradient, which flows through them to the codes.
        """
        recipe, model = self.recipe, self.model
        codes, links = out["codes"], model.adversaries.links
        progress = min(1.0, self.step_count / max(1, self.total_steps))
        stats: dict[str, torch.Tensor] = {}
        total = images.new_zeros((), dtype=torch.float32)
        for link, section in zip(model.net.head_links, recipe.heads, strict=True):
            loss = self.classification(out["logits"][link.key], labels[link.factor])
            stats[f"head/{link.factor}/{link.code}/loss"] = loss.detach()
            stats[f"head/{link.factor}/{link.code}/correct"] = _correct(out["logits"][link.key], labels[link.factor])
            total = total + recipe.loss.beta_cls * section.weight * loss
        frozen = [*self.adv_params, *self.disc_params]  # the discriminator too: gradient flows through to the image
        for p in frozen:
            p.requires_grad_(False)
        try:
            for link, section in zip(links, recipe.adversaries, strict=True):
                adversary = model.adversaries.adversaries[link.key]
                with autocast(self.device, recipe.run.precision):
                    loss = adversary.encoder_loss(codes[link.code].flatten(1), labels[link.factor], progress)
                stats[f"encoder_adv/{link.factor}/{link.code}/loss"] = loss.detach()
                total = total + recipe.loss.beta_adv * section.weight * loss
            if self.reconstruction is not None:
                loss = self.reconstruction(images, out["reconstruction"].float())
                stats["reconstruction/loss"] = loss.detach()
                total = total + recipe.loss.beta_rec * loss
            stats["total/loss"] = total.detach()
            self.main_opt.zero_grad(set_to_none=True)
            self.main_scaler.scale(total).backward()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        if recipe.optim.clip_grad_norm:
            self.main_scaler.unscale_(self.main_opt)
            nn.utils.clip_grad_norm_(self.model.net.parameters(), recipe.optim.clip_grad_norm)
        self.main_scaler.step(self.main_opt)
        self.main_scaler.update()
        return stats

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "main_opt": self.main_opt.state_dict(),
            "adv_opt": self.adv_opt.state_dict() if self.adv_opt else None,
            "main_scaler": self.main_scaler.state_dict(),
            "adv_scaler": self.adv_scaler.state_dict(),
            "step": self.step_count,
            **(
                {
                    "discriminator": self.reconstruction.state_dict(),
                    "disc_opt": self.disc_opt.state_dict(),
                    "disc_scaler": self.disc_scaler.state_dict(),
                }
                if self.disc_opt
                else {}
            ),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.main_opt.load_state_dict(state["main_opt"])
        if self.adv_opt and state.get("adv_opt"):
            self.adv_opt.load_state_dict(state["adv_opt"])
        # a disabled scaler (CPU, fp32) saves {}, and checkpoints older than the discriminator's have none of it:
        # those start their scale afresh (a run resumed with fp16 on a GPU)
        for key in ("main_scaler", "adv_scaler", "disc_scaler"):
            if state.get(key):
                getattr(self, key).load_state_dict(state[key])
        self.step_count = state["step"]
        if self.disc_opt and state.get("disc_opt"):
            self.reconstruction.load_state_dict(state["discriminator"])
            self.disc_opt.load_state_dict(state["disc_opt"])


def reconstruction_module(recipe: Recipe) -> nn.Module:
    """The recipe's reconstruction loss (loss.reconstruction with loss.reconstruction_options)."""
    from factorlab.plugins import get_host

    entry = get_host().get("losses", recipe.loss.reconstruction)
    return entry.factory(entry.config.model_validate(recipe.loss.reconstruction_options))


def _correct(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(dim=1) == target).sum()


# ---------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(model: Disentangler, dataset, recipe: Recipe, device: torch.device) -> dict[str, float]:
    """Accuracy of every head and adversary and the mean of each loss term over a split."""
    was_training = model.training
    model.eval()
    # eval mode: a loss's GAN term is 0 here (a fresh discriminator would only add noise to the logged loss)
    reconstruction = reconstruction_module(recipe).to(device).eval() if model.net.decoder is not None else None
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for batch in eval_loader(dataset, recipe.run.batch_size, num_workers=recipe.run.num_workers):
        images, labels = to_device(batch, device, channels_last=recipe.run.channels_last)
        n = images.shape[0]
        with autocast(device, recipe.run.precision):
            out = model.net(images)
            adv_logits = model.adversaries(out["codes"]) if model.adversaries.links else {}
        parts = [("head", link, out["logits"]) for link in model.net.head_links]
        parts += [("adversary", link, adv_logits) for link in model.adversaries.links]
        for kind, link, logits in parts:
            if link.key not in logits:  # an adversary without a classifier has no accuracy
                continue
            prefix = f"{kind}/{link.factor}/{link.code}"
            # a negative label is a class the train split does not show (a held-out identity): not scored
            known = labels[link.factor] >= 0
            target, k = labels[link.factor][known], known.sum()
            _add(sums, f"{prefix}/correct", _correct(logits[link.key][known], target))
            if k:
                _add(sums, f"{prefix}/loss", losses.classification_loss(logits[link.key][known], target) * k)
            _add(sums, f"{prefix}/scored", k)
        for link in model.adversaries.links:
            adversary = model.adversaries.adversaries[link.key]
            known = labels[link.factor] >= 0
            if known.any():
                code = out["codes"][link.code].flatten(1)[known]
                with autocast(device, recipe.run.precision):  # as in the main step: the codes may be bf16/fp16
                    loss = adversary.encoder_loss(code, labels[link.factor][known], 1.0)
                _add(sums, f"encoder_adv/{link.factor}/{link.code}/loss", loss * known.sum())
            _add(sums, f"encoder_adv/{link.factor}/{link.code}/scored", known.sum())
        if "reconstruction" in out:
            _add(sums, "reconstruction/loss", reconstruction(images, out["reconstruction"].float()) * n)
        count += n
    model.train(was_training)
    return _per_scored_sample(_finish(sums, count))


def _per_scored_sample(metrics: dict[str, float]) -> dict[str, float]:
    """Means over the samples each metric scored (`<prefix>/scored` = their fraction); none scored -> left out."""
    out = {}
    for key, value in metrics.items():
        if key.endswith("/scored"):
            continue
        fraction = metrics.get(key.rsplit("/", 1)[0] + "/scored", 1.0)
        if fraction > 0:
            out[key] = value / fraction
    return out


def _add(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    sums[key] = sums[key] + value.detach().float() if key in sums else value.detach().float()


def _finish(sums: dict[str, torch.Tensor], count: int, all_ranks: bool = False) -> dict[str, float]:
    """Sums over `count` samples -> means; `.../correct` becomes `.../accuracy`. One host sync.

    With `all_ranks` (a collective), the sums and counts of every process are added first.
    """
    if not sums:
        return {}
    keys = list(sums)
    stacked = torch.stack([sums[k] for k in keys])
    if all_ranks:
        dist.all_reduce(stacked)
        count *= dist.get_world_size()
    values = stacked.cpu().tolist()
    out = {}
    for key, value in zip(keys, values, strict=True):
        name = key[: -len("/correct")] + "/accuracy" if key.endswith("/correct") else key
        out[name] = value / max(1, count)
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoints and run folders


def _rng_state() -> dict:
    # numpy's global generator is not used (epoch order has its own seeded generator) and its state
    # would need unpickling of numpy objects: checkpoints load with weights_only=True.
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(obj, path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: a full disk raises ENOSPC, not torch's "unexpected pos"
            torch.save(obj, f)

    atomic_write(path, write)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class Splits:
    """The recipe's data: the three splits, sharing one label space."""

    train: FactorDataset
    val: FactorDataset
    test: FactorDataset


@dataclass
class Training:
    """Everything the epochs change: model, trainer, schedules, where the loop stands, and what it has seen."""

    recipe: Recipe
    model: Disentangler
    trainer: Trainer
    main_sched: torch.optim.lr_scheduler.LambdaLR
    adv_sched: torch.optim.lr_scheduler.LambdaLR | None
    steps_per_epoch: int
    best_key: str
    start_epoch: int = 0
    best: float = -math.inf
    images_seen: int = 0
    train_time: float = 0.0
    last_val: dict[str, float] | None = None  # the final epoch's val metrics: the model the summary describes


def run_recipe(recipe: Recipe, rundir: Path | None = None, *, resume: dict | None = None) -> Path:
    """Train a recipe into a run folder and return it, in named phases.

    `rundir`: None makes a new run folder; an existing one without recipe.toml (made by `new_run_dir`, as the
    CLI does before importing torch, to name it at once) is filled as a new run; else it is resumed.
    """
    from factorlab.progress import Reporter, announce, task

    new_folder = rundir is None or not (Path(rundir) / "recipe.toml").exists()
    lock = None
    try:
        dist_info, device = setup_runtime(recipe)
        rundir, lock = open_run_dir(recipe, rundir, dist_info)  # first, so the first line says where results go
        if dist_info.main:
            announce(rundir)
        with task("data", f"loading the data ({recipe.data.dataset})"):
            splits = load_splits(recipe)
        training = build_training(recipe, splits, dist_info, device)
        if resume is not None:
            restore(training, resume)
    except BaseException:
        if lock:
            lock.release()
        if new_folder and rundir is not None and int(os.environ.get("RANK", "0") or 0) == 0:
            discard_unused_run_dir(Path(rundir))
        raise
    reporter = Reporter(
        rundir, enabled=dist_info.main, total_epochs=recipe.run.epochs, steps_per_epoch=training.steps_per_epoch
    )
    # the objects that live for the whole run (modules, libraries, the data) leave the collector's generations, so
    # its full collections during training traverse only what the steps create (measured: 2-3% of the quickstart)
    gc.freeze()
    started = time.perf_counter()
    try:
        for epoch in range(training.start_epoch, recipe.run.epochs):
            train_metrics = train_epoch(training, splits.train, epoch, dist_info, device, reporter, rundir)
            if dist_info.main:
                end_epoch(training, splits.val, epoch, train_metrics, device, reporter, rundir)
            if dist_info.active:
                dist.barrier()
        finish_run(training, splits, time.perf_counter() - started, dist_info, device, reporter, rundir)
    except BaseException:
        reporter.close()  # stop the live progress display before the error is printed
        raise
    finally:
        gc.unfreeze()  # the next run in this process (--seeds, tests) starts from a collectable heap
        if lock:
            lock.release()
    if dist_info.active:
        dist.barrier()
    return rundir


def setup_runtime(recipe: Recipe) -> tuple[Dist, torch.device]:
    """Phase 1: this process's device and place in a torchrun group, determinism, seeds."""
    dist_info = init_distributed(resolve_device(recipe.run.device).type)
    device = resolve_device(recipe.run.device, dist_info.local_rank, dist_info.active)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if recipe.run.deterministic and device.type == "cpu":
        use_deterministic(compile=recipe.run.compile)
    if recipe.run.batch_size % dist_info.world:
        raise FactorlabError(
            f"run.batch_size = {recipe.run.batch_size} is not divisible by the {dist_info.world} processes; "
            "the global batch is split evenly across them"
        )
    seed_everything(recipe.run.seed)
    return dist_info, device


def load_splits(recipe: Recipe) -> Splits:
    """Phase 2: the three splits (test too: a broken test split fails now, not after hours of training)."""
    factors = resolve_factors(recipe)
    splits = Splits(*(build_dataset(recipe, split, factors) for split in ("train", "val", "test")))
    for split, dataset in (("val", splits.val), ("test", splits.test)):
        if dataset.classes != splits.train.classes:
            raise DataError(
                f"data set {recipe.data.dataset!r}: the classes of its {split} split differ from the train split's; "
                "every split must share one label space"
            )
    return splits


def build_training(recipe: Recipe, splits: Splits, dist_info: Dist, device: torch.device) -> Training:
    """Phase 3: the model, its trainer (optimisers, losses) and the learning-rate schedules."""
    model = build_model(recipe, classes=splits.train.classes)
    steps_per_epoch = len(splits.train) // recipe.run.batch_size
    if recipe.run.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, recipe.run.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise FactorlabError(
            f"the train split has {len(splits.train)} samples, fewer than one batch of "
            f"run.batch_size = {recipe.run.batch_size}"
        )
    trainer = Trainer(recipe, model, device, dist_info, total_steps=steps_per_epoch * recipe.run.epochs)
    main_sched = make_schedule(trainer.main_opt, recipe.optim, trainer.total_steps, steps_per_epoch)
    adv_sched = (
        make_schedule(trainer.adv_opt, recipe.optim, trainer.total_steps, steps_per_epoch) if trainer.adv_opt else None
    )
    best_key = recipe.run.best_metric or f"head/{recipe.heads[0].factor}/{recipe.heads[0].code}/accuracy"
    return Training(recipe, model, trainer, main_sched, adv_sched, steps_per_epoch, best_key)


def restore(training: Training, resume: dict) -> None:
    """Phase 3b (resume): weights, optimisers, schedules, RNG and the epoch to continue from."""
    training.trainer.load_state_dict(resume["trainer"])
    training.main_sched.load_state_dict(resume["main_sched"])
    if training.adv_sched and resume.get("adv_sched"):
        training.adv_sched.load_state_dict(resume["adv_sched"])
    training.start_epoch, training.best = resume["epoch"] + 1, resume["best"]
    _set_rng_state(resume["rng"])


def open_run_dir(recipe: Recipe, rundir: Path | None, dist_info: Dist) -> tuple[Path, RunLock | None]:
    """Phase 4: the run folder (new, or the resumed one), locked for this writer, with the resolved recipe."""
    if rundir is None:
        rundir = new_run_dir(recipe) if dist_info.main else None
        if dist_info.active:
            holder = [str(rundir) if rundir else None]
            dist.broadcast_object_list(holder, src=0)
            rundir = Path(holder[0])
    rundir = Path(rundir)
    lock = RunLock(rundir).acquire() if dist_info.main else None  # one writer per run folder
    if dist_info.main:
        atomic_write_text(rundir / "recipe.toml", recipe.to_toml())
    return rundir, lock


def train_epoch(
    training: Training, train_set: FactorDataset, epoch: int, dist_info: Dist, device: torch.device, reporter, rundir
) -> dict[str, float]:
    """Phase 5: one epoch of alternating steps over this process's share of the epoch order."""
    recipe, trainer = training.recipe, training.trainer
    labels_for_balance = None
    if recipe.data.sampler == "balanced":
        labels_for_balance = train_set.labels(recipe.data.balance_factor or recipe.heads[0].factor)
    augment = FaceAugment(**recipe.data.augment.model_dump())
    augment_on = augment.flip or augment.crop > 0 or augment.color_jitter > 0
    steps_per_epoch = training.steps_per_epoch
    order = epoch_order(
        labels_for_balance, len(train_set), seed=recipe.run.seed, epoch=epoch, balanced=labels_for_balance is not None
    )
    order = order[: steps_per_epoch * recipe.run.batch_size][dist_info.rank :: dist_info.world]
    loader = make_loader(
        train_set,
        order,
        recipe.run.batch_size // dist_info.world,
        num_workers=recipe.run.num_workers,
        pin_memory=device.type == "cuda",
    )
    training.model.train()
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    reporter.start_epoch(epoch)
    epoch_start = time.perf_counter()
    for i, batch in enumerate(loader):
        images, labels = to_device(batch, device, channels_last=recipe.run.channels_last)
        if augment_on:
            generator = torch.Generator(device=device).manual_seed(hash((recipe.run.seed, epoch, i, dist_info.rank)))
            images = augment(images, generator)
        stats = trainer.step(images, labels)
        training.main_sched.step()
        if training.adv_sched:
            training.adv_sched.step()
        n = images.shape[0]
        seen += n
        bad = ~torch.isfinite(stats["total/loss"])
        first_bad = torch.where((first_bad < 0) & bad, torch.full_like(first_bad, trainer.step_count - 1), first_bad)
        for key, value in stats.items():
            _add(sums, key, value * n if key.endswith("/loss") else value)
        if (i + 1) % recipe.run.log_every == 0 or i + 1 == steps_per_epoch:  # the last step always logs
            _check_finite(first_bad, sums, rundir)
            train_metrics = _finish(sums, seen, all_ranks=dist_info.active)
            reporter.step(i + 1, train_metrics, seen * dist_info.world / (time.perf_counter() - epoch_start), epoch)
    training.train_time += time.perf_counter() - epoch_start
    training.images_seen += seen * dist_info.world
    return train_metrics


def end_epoch(
    training: Training, val_set: FactorDataset, epoch: int, train_metrics: dict, device: torch.device, reporter, rundir
) -> None:
    """Phase 6 (main process): log the epoch, validate when due, keep best.pt and last.pt."""
    recipe, model = training.recipe, training.model
    reporter.log({"epoch": epoch, "split": "train", **train_metrics})
    val_metrics: dict[str, float] = {}
    if (epoch + 1) % recipe.run.eval_every == 0 or epoch + 1 == recipe.run.epochs:
        val_metrics = training.last_val = evaluate(model, val_set, recipe, device)
        reporter.log({"epoch": epoch, "split": "val", **val_metrics})
        if reporter.writer is not None:
            log_images(reporter, model, val_set, epoch, device)
    score = -math.inf  # epochs without evaluation never replace best.pt
    if training.best_key in val_metrics:
        value = val_metrics[training.best_key]
        score = -value if training.best_key.endswith("/loss") else value
    improved, training.best = score > training.best, max(training.best, score)
    state = {
        "trainer": training.trainer.state_dict(),
        "main_sched": training.main_sched.state_dict(),
        "adv_sched": training.adv_sched.state_dict() if training.adv_sched else None,
        "epoch": epoch,
        "best": training.best,
        "rng": _rng_state(),
        "classes": model.classes,
    }
    if improved:
        best = {
            "model": state["trainer"]["model"],
            "epoch": epoch,
            "classes": model.classes,
            "metric": training.best_key,
            "value": val_metrics.get(training.best_key),
        }
        _save_checkpoint(best, rundir / CHECKPOINTS / "best.pt")
    _save_checkpoint(state, rundir / CHECKPOINTS / "last.pt")
    reporter.end_epoch(epoch, train_metrics, val_metrics)


def finish_run(
    training: Training, splits: Splits, wall: float, dist_info: Dist, device: torch.device, reporter, rundir
) -> None:
    """Phase 7: score the checkpoint `factorlab eval` loads by default on val and test; summary and model card."""
    from factorlab.evaluate import quick_leakage  # evaluate imports matplotlib only when plotting
    from factorlab.modelcard import write_model_card

    recipe, model = training.recipe, training.model
    rank_gap = rank_weight_gap(model) if dist_info.active else 0.0  # a collective: every rank takes part
    if not dist_info.main:
        return
    summary = {
        "name": recipe.run.name,
        "rundir": str(rundir),
        "recipe": recipe.to_dict(),
        "splits": {},
        "wall_time_s": wall,
        "images_per_s": training.images_seen / training.train_time if training.train_time > 0 else 0.0,
        "epochs": recipe.run.epochs,
        "classes": model.classes,
        "world_size": dist_info.world,
        "max_weight_difference_across_ranks": rank_gap,
    }
    # the test number is the model `factorlab eval` loads by default (run.checkpoint), chosen on val only
    last_val = training.last_val
    scored = checkpoint_path(rundir, recipe.run.checkpoint)
    if scored.name != "last.pt":
        state = load_checkpoint(scored)
        model.load_state_dict(state["model"])
        last_val = None
    else:  # the model in memory is last.pt's: its epoch is the last one, no need to read the trainer state
        state = {"epoch": recipe.run.epochs - 1}
    summary["checkpoint"] = checkpoint_info(rundir, recipe.run.checkpoint, training.best_key, state=state)

    with task("score", f"scoring checkpoint {scored.name} on val and test"):
        summary["splits"]["val"] = last_val if last_val is not None else evaluate(model, splits.val, recipe, device)
        summary["splits"]["test"] = evaluate(model, splits.test, recipe, device)
    # next to the adversary's test accuracy (seconds): test only, the split `factorlab runs` and `compare` read
    with task("leakage", "a linear probe per adversary's code"):
        quick = quick_leakage(model, splits.train, {"test": splits.test}, device)
    for split, probes in quick.items():
        summary["splits"][split].update(probes)
    atomic_write_text(rundir / "summary.json", json.dumps(summary, indent=2))
    write_model_card(rundir)
    reporter.finish(summary, decoder=model.net.decoder is not None)


@torch.no_grad()
def log_images(reporter, model: Disentangler, dataset, epoch: int, device: torch.device, count: int = 8) -> None:
    """TensorBoard pictures: example inputs once, and with a decoder the swap grid of the paper's Fig. 2."""
    from torchvision.utils import make_grid

    images = dataset_images(dataset, range(min(2 * count, len(dataset))))
    if reporter.first_images:
        reporter.add_image("examples/inputs", make_grid(images, nrow=count), epoch)
        reporter.first_images = False
    if model.net.decoder is None or len(images) < 2:
        return
    from factorlab.synthesis import swap_grid, synthesize

    was_training = model.training
    model.eval()
    half = len(images) // 2
    grid = swap_grid(synthesize(model, images[:half].to(device), images[half : 2 * half].to(device)))
    model.train(was_training)
    reporter.add_image("examples/swaps", torch.from_numpy(np.array(grid.convert("RGB"))).permute(2, 0, 1), epoch)


def rank_weight_gap(model: nn.Module) -> float:
    """Largest absolute difference between this rank's weights and rank 0's, over all ranks (a collective)."""
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    gap = (flat - reference).abs().max()
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap)


def _check_finite(first_bad: torch.Tensor, sums: dict[str, torch.Tensor], rundir: Path) -> None:
    """Stop the run (on every process) once a loss was NaN or Inf, naming the step and the terms."""
    if dist.is_available() and dist.is_initialized():
        first_bad = first_bad.clone()
        dist.all_reduce(first_bad, op=dist.ReduceOp.MAX)  # every rank stops together
    step = int(first_bad.item())
    if step < 0:
        return
    terms = [key for key, value in sums.items() if key.endswith("/loss") and not torch.isfinite(value)]
    last = rundir / CHECKPOINTS / "last.pt"
    kept = (
        f"The last good checkpoint is {last}; after changing the recipe, continue with "
        f"`factorlab run --resume {rundir} key=value`."
        if last.is_file()
        else "No checkpoint was written yet (it failed in the first epoch)."
    )
    raise NonFiniteLoss(
        f"the loss became non-finite at step {step} (terms: {', '.join(terms) or 'total/loss'}); the run stopped. "
        f"{kept} Try a lower optim.main.lr, optim.clip_grad_norm, or run.precision=fp32."
    )


def resume_run(rundir: Path, overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Continue a run from its last checkpoint, in the same run folder."""
    from factorlab.progress import console
    from factorlab.rundir import check_resume_state, check_run_dir, check_same_architecture, read_metrics

    rundir = check_run_dir(rundir)
    main = int(os.environ.get("RANK", "0")) == 0
    with RunLock(rundir) if main else contextlib.nullcontext():  # refused while another process writes it
        path = rundir / CHECKPOINTS / "last.pt"
        state = check_resume_state(load_checkpoint(path), path)
        recipe = load_recipe(rundir / "recipe.toml", overrides)
        check_same_architecture(load_recipe(rundir / "recipe.toml"), recipe, state, path)
        done = state["epoch"] + 1
        if recipe.run.epochs < done:  # it would lower recipe.toml's epochs below what the checkpoint holds
            raise FactorlabError(
                f"run.epochs={recipe.run.epochs}: {rundir} has trained {done} epochs already; resume with "
                f"run.epochs above {done} to train more (nothing was changed)"
            )
        metrics = rundir / "metrics.jsonl"
        if main and metrics.is_file():  # drop what the killed epoch logged after the checkpoint
            records = read_metrics(metrics, warn=lambda message: console.print(f"note: {message}"))
            kept = [r for r in records if r.get("epoch", -1) <= state["epoch"]]
            atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))
        return run_recipe(recipe, rundir, resume=state)
