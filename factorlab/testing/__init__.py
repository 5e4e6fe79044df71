"""Helpers for testing factorlab and factorlab plugins (plugin authors import these in their own tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factorlab.plugins import PluginHost, get_host, load_plugins, reset_host

#: Overrides that make a SynthFaces recipe train in seconds (12 identities, 32 px, 3 steps of 16 images).
TINY_SYNTH = [
    "data.identities=12",
    "data.samples_per_identity=16",
    "data.image_size=32",
    "run.batch_size=16",
    "run.epochs=1",
    "run.max_steps_per_epoch=3",
]
#: A little larger than TINY_SYNTH: two epochs of four steps over 12 x 24 images (learning is visible).
SMALL_SYNTH = [
    "data.identities=12",
    "data.samples_per_identity=24",
    "data.image_size=32",
    "run.batch_size=16",
    "run.epochs=2",
    "run.max_steps_per_epoch=4",
]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `python -m factorlab ARGS` in a real subprocess; returns the completed process (text output)."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "factorlab", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


def write_plugin_distribution(
    site: Path, dist: str, module: str, source: str | Path, *, entry: str | None = None, version: str = "1.0"
) -> Path:
    """Write an installed-looking distribution (module + `*.dist-info` with entry points) into `site`.

    `source` is the text of a single-module plugin, or the folder of a plugin package (copied whole as
    `site/<module>/`). Put `site` on PYTHONPATH (or sys.path) and the plugin is discovered through real
    entry-point metadata, exactly as a pip-installed plugin would be.
    """
    site.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path):
        if not (source / "__init__.py").is_file():
            raise ValueError(f"{source} is not a package folder (no __init__.py)")
        shutil.copytree(source, site / module, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[factorlab]\n{entry or dist} = {module}\n", encoding="utf-8")
    return site


@contextlib.contextmanager
def registered_plugin(name: str, plugin: Any) -> Iterator[PluginHost]:
    """Load the installed plugins plus `plugin` (a module or object with hookimpls) for the duration of a block."""
    previous = get_host()
    host = load_plugins(extra={name: plugin})
    reset_host(host)
    try:
        yield host
    finally:
        reset_host(previous)


def snapshot(module) -> dict:
    """A copy of a module's floating-point state (parameters and buffers), to check later what moved."""
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.dtype.is_floating_point}


def changed(before: dict, module) -> set[str]:
    """The entries of a `snapshot` that differ now: e.g. an adversary step must change only adversaries."""
    import torch

    after = module.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def one_batch_trainer(recipe_path, overrides=(), *, seed: int = 0):
    """A Trainer for a recipe (with overrides) on the CPU and one batch of its train split: (trainer, (images, labels)).

    For tests of what one step moves (with `snapshot` / `changed`).
    """
    import torch

    from factorlab.data.loading import build_dataset, to_device
    from factorlab.factors import resolve_factors
    from factorlab.model import build_model
    from factorlab.recipe import load_recipe
    from factorlab.train import Trainer

    torch.manual_seed(seed)
    recipe = load_recipe(recipe_path, list(overrides))
    dataset = build_dataset(recipe, "train", resolve_factors(recipe))
    model = build_model(recipe, classes=dataset.classes)
    trainer = Trainer(recipe, model, torch.device("cpu"), total_steps=10)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=recipe.run.batch_size)))
    return trainer, to_device(batch, torch.device("cpu"))


def internal_imports(package: Path | str) -> list[str]:
    """`file: module` for each import in a plugin package's modules that is not the plugin API (`factorlab` and
    the names of `factorlab.__all__`) nor the package itself; a plugin should have none."""
    import ast

    import factorlab

    package = Path(package)
    found = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("factorlab"):
                if node.module.split(".")[0] == package.name:
                    continue  # its own modules
                names = {alias.name for alias in node.names}
                if node.module != "factorlab" or not names <= set(factorlab.__all__):
                    found.append(f"{path.name}: from {node.module} import {', '.join(sorted(names))}")
            if isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("factorlab.")]
    return found
