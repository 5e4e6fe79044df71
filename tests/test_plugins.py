"""Plugin discovery through real entry-point metadata, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import factorlab
from factorlab.errors import PluginError, UnknownNameError
from factorlab.plugins import get_host, load_plugins
from factorlab.registry import Registry
from factorlab.testing import registered_plugin, run_cli, write_plugin_distribution

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"

GOOD = '''
import torch
from pydantic import BaseModel, ConfigDict
import factorlab

class TinyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0

def tiny_branch(config, *, in_shape):
    """A branch that flattens and scales."""
    return torch.nn.Flatten()

@factorlab.hookimpl
def factorlab_register_branches(register):
    register("tiny", tiny_branch, config=TinyConfig, description="flatten (test plugin)")


def hello_command(parser):
    parser.add_argument("who")

    def handle(args):
        print(f"hello {args.who}")
        return 0

    return handle


@factorlab.hookimpl
def factorlab_register_commands(register):
    register("hello", hello_command, description="greet (test plugin)")
'''

BROKEN_IMPORT = "raise ImportError('this plugin is broken on purpose')\n"

DUPLICATE = """
import factorlab

@factorlab.hookimpl
def factorlab_register_branches(register):
    register("conv4", lambda config, *, in_shape: None)
"""


def _env(site: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}


def _plugins_json(env: dict[str, str]) -> dict[str, dict]:
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {info["name"]: info for info in json.loads(result.stdout)}


CORE = ("core.encoders", "core.parts", "core.datasets", "core.metrics", "core.commands")


def test_builtin_and_bundled_plugins_load_with_what_they_register() -> None:
    infos = _plugins_json({})
    assert {*CORE, "expression", "identity"} <= set(infos)
    assert all(infos[n]["status"] == "loaded" for n in (*CORE, "expression", "identity"))
    assert infos["expression"]["registered"]["factors"] == ["expression"]
    assert infos["identity"]["registered"]["factors"] == ["identity"]
    assert "inception_resnet_v1" in infos["core.encoders"]["registered"]["encoders"]
    assert "conv4" in infos["core.parts"]["registered"]["branches"]
    assert "synthfaces" in infos["core.datasets"]["registered"]["datasets"]
    assert "run" in infos["core.commands"]["registered"]["commands"]
    assert {"probes", "dci"} <= set(infos["core.metrics"]["registered"]["metrics"])


def test_a_built_in_plugin_can_be_disabled_like_any_other() -> None:
    infos = _plugins_json({"FACTORLAB_DISABLE_PLUGINS": "core.metrics"})
    assert infos["core.metrics"]["status"] == "disabled" and infos["core.parts"]["status"] == "loaded"


def test_listing_parts_imports_no_torch() -> None:
    code = "import sys\nfrom factorlab.cli import main\nmain(['ls'])\nprint(sorted(m for m in ('torch', 'timm', 'facenet_pytorch', 'sklearn') if m in sys.modules), file=sys.stderr)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_third_party_distribution_is_discovered_and_usable_from_a_recipe(tmp_path: Path) -> None:
    site = write_plugin_distribution(tmp_path / "site", "factorlab-tiny", "factorlab_tiny", GOOD)
    infos = _plugins_json(_env(site))
    assert infos["factorlab-tiny"]["version"] == "1.0"
    assert infos["factorlab-tiny"]["registered"] == {"branches": ["tiny"], "commands": ["hello"]}
    hello = run_cli("hello", "world", env=_env(site))
    assert hello.returncode == 0 and hello.stdout.strip() == "hello world"
    recipe = tmp_path / "tiny.toml"
    text = QUICKSTART.read_text()
    section = text[text.index("[codes.exp]") : text.index("[codes.nonexp]")]
    recipe.write_text(text.replace(section, '[codes.exp]\nbranch = "tiny"\nscale = 2.0\n\n'))
    result = run_cli("validate", str(recipe), "--print", env=_env(site))
    assert result.returncode == 0, result.stderr
    assert 'branch = "tiny"' in result.stdout and "scale = 2.0" in result.stdout
    bad = run_cli("validate", str(recipe), "codes.exp.scal=2.0", env=_env(site))
    assert bad.returncode == 2 and "codes.exp.scal: unknown key" in bad.stderr


def test_broken_plugin_is_reported_by_name_and_the_rest_still_load(tmp_path: Path) -> None:
    site = write_plugin_distribution(tmp_path / "site", "factorlab-broken", "factorlab_broken", BROKEN_IMPORT)
    result = run_cli("plugins", "--json", env=_env(site))
    assert result.returncode == 0
    assert (
        "plugin 'factorlab-broken' (factorlab_broken) not loaded: import failed: ImportError: this plugin is broken on purpose"
        in " ".join(result.stderr.split())
    )
    infos = {info["name"]: info for info in json.loads(result.stdout)}
    assert infos["factorlab-broken"]["status"] == "failed"
    assert infos["core.parts"]["status"] == infos["expression"]["status"] == "loaded"


def test_duplicate_name_is_an_error_naming_both_plugins(tmp_path: Path) -> None:
    site = write_plugin_distribution(tmp_path / "site", "factorlab-dup", "factorlab_dup", DUPLICATE)
    result = run_cli("plugins", env=_env(site))
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "duplicate branch name 'conv4': registered by plugin 'core.parts' and by plugin 'factorlab-dup'" in message
    assert "Traceback" not in result.stderr


def test_disable_plugins_by_name(tmp_path: Path) -> None:
    site = write_plugin_distribution(tmp_path / "site", "factorlab-dup", "factorlab_dup", DUPLICATE)
    infos = _plugins_json(_env(site, FACTORLAB_DISABLE_PLUGINS="factorlab-dup,identity"))
    assert infos["factorlab-dup"]["status"] == "disabled"
    assert infos["identity"]["status"] == "disabled"
    assert infos["expression"]["status"] == "loaded"
    result = run_cli("validate", str(QUICKSTART), env={"FACTORLAB_DISABLE_PLUGINS": "expression"})
    assert result.returncode == 2 and "unknown factor 'expression'" in result.stderr


def test_misspelt_hook_fails_that_plugin_loudly() -> None:
    class Misspelt:
        @factorlab.hookimpl
        def factorlab_register_branchez(self, register):  # noqa: D102 - the typo is the test
            pass

    host = load_plugins(extra={"misspelt": Misspelt()})
    info = next(i for i in host.plugins if i.name == "misspelt")
    assert info.status == "failed" and "factorlab_register_branchez" in info.error
    assert "conv4" in host.registry("branches")


def test_registered_plugin_fixture_helper_adds_and_removes_parts() -> None:
    class Extra:
        @factorlab.hookimpl
        def factorlab_register_heads(self, register):
            register("zero_head", lambda config, *, in_features, num_classes: None, description="test")

    with registered_plugin("extra", Extra()) as host:
        assert host.get("heads", "zero_head").plugin == "extra"
        assert get_host() is host
    assert "zero_head" not in get_host().registry("heads")


def test_registry_unknown_name_suggests_and_lists() -> None:
    registry = Registry("encoders")
    registry.add("small_cnn", lambda c: None, plugin="core")
    registry.add("timm", lambda c: None, plugin="core")
    with pytest.raises(
        UnknownNameError,
        match=r"unknown encoder 'smal_cnn'\. Did you mean 'small_cnn'\? Registered encoders: 'small_cnn', 'timm'",
    ):
        registry.get("smal_cnn")
    with pytest.raises(PluginError, match="registered by plugin 'core' and by plugin 'other'"):
        registry.add("timm", lambda c: None, plugin="other")
    assert registry.get("timm").description == "" and len(registry) == 2


def test_two_distributions_claiming_one_plugin_name_is_an_error(tmp_path: Path) -> None:
    site = write_plugin_distribution(tmp_path / "site", "factorlab-one", "factorlab_one", GOOD, entry="expression")
    result = run_cli("plugins", env=_env(site))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "two plugins are named 'expression'" in message and "factorlab_one (factorlab-one)" in message


# A plugin written against 0.1, as people wrote them from the 0.1 docs: internal import paths, an
# Adversary subclass with only `encoder_loss`, a FactorDataset subclass, plain register() calls.
PLUGIN_0_1 = """
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

import factorlab
from factorlab.adversaries import Adversary
from factorlab.data.base import FactorDataset
from factorlab.losses import uniform_confusion


class OldAdversary(Adversary):
    def encoder_loss(self, code, target, progress):
        return uniform_confusion(self(code))


def old_adversary(config, *, in_features, num_classes):
    return OldAdversary(torch.nn.Linear(in_features, num_classes))


class StripesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 64


class Stripes(FactorDataset):
    def __init__(self, n, split, size):
        rng = np.random.default_rng({"train": 0, "val": 1, "test": 2}[split])
        self.expression = rng.integers(0, 8, n)
        self.size = size
        self.classes = {"expression": ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]}

    def __len__(self):
        return len(self.expression)

    def image(self, index):
        image = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        image[:, : 4 * (1 + self.expression[index])] = 255
        return image

    def labels(self, factor):
        return self.expression


def stripes(config, *, split, image_size, factors):
    return Stripes(config.n, split, image_size)


@factorlab.hookimpl
def factorlab_register_adversaries(register):
    register("old_uniform", old_adversary, description="a 0.1 adversary")


@factorlab.hookimpl
def factorlab_register_datasets(register):
    register("stripes", stripes, config=StripesConfig, description="a 0.1 data set")
"""


def test_a_plugin_written_against_0_1_still_loads_and_trains(tmp_path: Path) -> None:
    site = write_plugin_distribution(tmp_path / "site", "factorlab-old", "factorlab_old", PLUGIN_0_1, entry="old")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    text = QUICKSTART.read_text(encoding="utf-8")
    recipe = tmp_path / "old.toml"
    recipe.write_text(
        text.replace(
            text[text.index("[data]") : text.index("[encoder]")], '[data]\ndataset = "stripes"\nimage_size = 32\n\n'
        ),
        encoding="utf-8",
    )
    result = run_cli(
        "run",
        str(recipe),
        "adversaries.0.type=old_uniform",
        "run.epochs=1",
        "run.batch_size=16",
        f"run.output={tmp_path / 'runs'}",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (rundir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((rundir / "summary.json").read_text())
    assert "adversary/expression/nonexp/accuracy" in summary["splits"]["test"]
    records = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train and "adversary/expression/nonexp/loss" in train[0]  # the default adversary step trained it
    assert "Traceback" not in result.stderr
