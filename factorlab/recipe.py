"""Recipes: TOML files -> validated pydantic models, with `key.path=value` overrides and errors for people.

Validation has two passes. The first checks the recipe's own shape (sections, generic keys, types).
The second, after plugins are loaded, looks up every part (`encoder.type`, `codes.<name>.branch`,
`heads[i].type`, ...) in its registry and validates the rest of that part's section against the
config model the part's plugin registered. Every error names the file, the line where the key is
written (or the command-line override it came from), the dotted key and what to do.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from factorlab.errors import RecipeError, UnknownNameError

# ---------------------------------------------------------------------------------------------
# Sections


class Section(BaseModel):
    """A recipe section whose keys are all known: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class PartSection(BaseModel):
    """A section naming a registered part; the part's own keys are checked against its config model."""

    model_config = ConfigDict(extra="allow")
    _options: BaseModel | None = PrivateAttr(default=None)

    @property
    def options(self) -> BaseModel:
        """The part's validated config (set by `resolve_parts`)."""
        if self._options is None:
            raise RuntimeError("recipe parts are not resolved yet: call factorlab.load_recipe")
        return self._options

    def part_keys(self) -> dict[str, Any]:
        """The keys that belong to the part's own config model."""
        return dict(self.model_extra or {})


#: A layer width, channel count or stride in a part's config: a positive whole number.
Size = Annotated[int, Field(ge=1)]
MAX_SEED = 2**63 - 1  # torch.manual_seed takes 64-bit seeds; larger ones overflow
DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")
DEVICE_HELP = "use one of auto, cpu, cuda, cuda:N (e.g. cuda:1), mps"


class RunSection(Section):
    """Run-wide settings: naming, seed, length, device and speed options."""

    name: str = Field(
        "run",
        min_length=1,
        max_length=200,
        description="Run name; the run folder is `<output>/<name>-<timestamp>` (no path separators, not '..').",
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="Seed for model initialisation, data order and augmentation (0 to 2**63-1)."
    )
    epochs: int = Field(10, ge=1, description="Number of passes over the training split.")
    batch_size: int = Field(64, ge=2, description="Global batch size (split across processes under torchrun).")
    max_steps_per_epoch: int | None = Field(
        None, ge=1, description="Cap on training steps per epoch (smoke tests, quick looks); None = the whole split."
    )
    device: str = Field("auto", description='"auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:N" or "mps".')
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision of the forward passes (losses are computed in float32); "
        "'auto' = bf16 on a GPU, fp32 on the CPU.",
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="Use the channels_last memory format; 'auto' = on a GPU (faster convs there), not on the CPU.",
    )
    compile: bool = Field(False, description="torch.compile the model (GPU; slow to start on CPU).")
    num_workers: int = Field(
        0, ge=0, le=128, description="DataLoader worker processes per rank (at most 128: each is a process)."
    )
    log_every: int = Field(20, ge=1, description="Steps between progress/metric updates (host syncs happen only here).")
    eval_every: int = Field(1, ge=1, description="Epochs between evaluations on the val split.")
    best_metric: str | None = Field(
        None,
        description="Metric that selects the `best` checkpoint, e.g. 'head/expression/exp/accuracy' (higher is "
        "better); None = the first head's accuracy.",
    )
    checkpoint: Literal["best", "last"] = Field(
        "best",
        description="The checkpoint summary.json scores on val and test and `factorlab eval` loads by default: "
        "'best' (the epoch with the best val `best_metric`; test is never looked at) or 'last' (the final epoch).",
    )
    output: Path = Field(Path("runs"), description="Folder that receives run folders.")
    deterministic: bool = Field(True, description="Use deterministic algorithms where the device offers them.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\0" in name:
            raise ValueError(
                f"{name!r} is not a plain folder name: no '/' or '\\', not starting with '.'; the run folder is "
                "<run.output>/<run.name>-<timestamp>, so choose the folder with run.output (or --out) instead"
            )
        return name

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not DEVICE.fullmatch(device):
            raise ValueError(f"unknown device {device!r}; {DEVICE_HELP}")
        return device


class AugmentSection(Section):
    """Training-time augmentation, applied on the device to uint8 batches."""

    flip: bool = Field(False, description="Random horizontal flip (expressions are left-right symmetric classes).")
    crop: float = Field(
        0.0, ge=0.0, le=0.5, description="Random crop: up to this fraction of the side is cut, resized back."
    )
    color_jitter: float = Field(0.0, ge=0.0, le=1.0, description="Brightness/contrast/saturation jitter strength.")


class DataSection(PartSection):
    """The data set (`dataset` is a registered data set; its own keys follow) and how it is fed."""

    dataset: str = Field(description="A registered data set, e.g. 'synthfaces', 'affectnet'.")
    image_size: int = Field(64, ge=32, le=512, description="Side of the square images fed to the encoder.")
    sampler: Literal["random", "balanced"] = Field(
        "random", description="'balanced' draws each class of `balance_factor` equally often (AffectNet is ~35:1)."
    )
    balance_factor: str | None = Field(
        None, description="Factor that 'balanced' sampling balances; None = first head's."
    )
    augment: AugmentSection = Field(default_factory=AugmentSection)


DATA_KEYS = frozenset(DataSection.model_fields)  # the generic [data] keys; the rest belong to the data set


class EncoderSection(PartSection):
    """The shared trunk (`type` is a registered encoder; its own keys follow)."""

    type: str = Field(description="A registered encoder, e.g. 'inception_resnet_v1', 'timm', 'small_cnn'.")


class CodeSection(PartSection):
    """One code: the branch that computes it from the trunk's features (its own keys follow)."""

    branch: str = Field(description="A registered branch, e.g. 'conv4' (the paper's), 'mlp', 'identity'.")


class HeadSection(PartSection):
    """A supervised classifier of one factor from one code."""

    factor: str = Field(description="The factor this head predicts.")
    code: str = Field(description="The code it reads.")
    type: str = Field("linear", description="A registered head, e.g. 'linear' (the paper's C_exp), 'mlp'.")
    weight: float = Field(
        1.0, ge=0.0, description="Multiplies this head's loss (on top of loss.beta_cls); 0 turns it off."
    )


class AdversarySection(PartSection):
    """A classifier that must fail to read `factor` from `code`, and the rule training the encoder against it."""

    factor: str = Field(description="The factor that must NOT be readable from the code.")
    code: str = Field(description="The code the adversary reads.")
    type: str = Field("uniform", description="'uniform' (the paper, eq. 2) or 'grl' (gradient reversal).")
    weight: float = Field(
        1.0,
        ge=0.0,
        description="Multiplies this adversary's encoder loss (on top of loss.beta_adv); 0 leaves the adversary "
        "as a pure probe that is still trained but never pushes the encoder (e.g. adversaries.1.weight=0).",
    )


class DecoderSection(PartSection):
    """The decoder (built only when loss.beta_rec > 0)."""

    type: str = Field("deconv6", description="A registered decoder, e.g. 'deconv6' (the paper's).")


class LossSection(Section):
    """Weights of the loss terms (paper eq. 3) and the reconstruction loss."""

    beta_rec: float = Field(0.0, ge=0.0, description="beta1: weight of the reconstruction loss L_r (paper: 0).")
    beta_cls: float = Field(1.0, ge=0.0, description="beta2: weight of the classification losses (paper: 1).")
    beta_adv: float = Field(1.0, ge=0.0, description="beta3: weight of the adversarial encoder losses (paper: 1).")
    reconstruction: str = Field(
        "l2",
        description="A registered reconstruction loss: 'l2' (paper), 'l1', 'ssim', 'perceptual', 'patchgan', "
        "or 'sum' of several (docs/swap.md).",
    )
    reconstruction_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Options of the reconstruction loss, e.g. { reduction = "image_sum" } for the paper\'s literal '
        "per-image sum of squares (default: mean over pixels).",
    )


class OptimizerSection(Section):
    """One optimiser."""

    name: Literal["adam", "adamw", "sgd"] = Field("adam", description="Optimiser.")
    lr: float = Field(1e-4, gt=0.0, description="Learning rate (for the global batch).")
    weight_decay: float = Field(0.0, ge=0.0, description="Weight decay.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum / Adam beta1.")


class OptimSection(Section):
    """The two optimisers (main: encoder, branches, heads, decoder; adversary: adversaries) and the schedule."""

    main: OptimizerSection = Field(default_factory=OptimizerSection)
    adversary: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: Literal["constant", "cosine", "step"] = Field(
        "constant", description="Learning-rate schedule (per step)."
    )
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    step_epochs: int = Field(10, ge=1, description="'step' schedule: epochs between x0.1 decays.")
    clip_grad_norm: float | None = Field(None, gt=0.0, description="Clip the main step's gradient norm (None = off).")
    adversary_steps: int = Field(1, ge=1, description="Adversary updates per batch before each main update.")


class FactorSection(PartSection):
    """Options of one factor (keys from the factor's own config model, e.g. expression: classes = 7)."""


class EvalSection(Section):
    """`factorlab eval`: which registered metrics run (`factorlab ls metrics`) and their options."""

    metrics: list[str] | None = Field(
        None,
        description="The registered metrics `factorlab eval` runs, in this order, e.g. ['probes', 'dci']; "
        "None = every registered metric (`--metrics` on the command line replaces this list).",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options per metric, one table each, e.g. [eval.options.dci] with max_train = 1000 (keys: the "
        "metric's own, listed under 'Registered parts'); `--metric-option dci.max_train=1000` sets one on top.",
    )

    _options: dict[str, BaseModel] = PrivateAttr(default_factory=dict)

    def config(self, name: str, entry: Any) -> BaseModel:
        """The validated options of metric `name` (its registry `entry`'s defaults when the recipe sets none)."""
        return self._options.get(name) or entry.config()


class Recipe(Section):
    """A whole experiment."""

    run: RunSection = Field(default_factory=RunSection)
    data: DataSection
    encoder: EncoderSection
    codes: dict[str, CodeSection] = Field(description="Named codes, e.g. [codes.exp] and [codes.nonexp].")
    heads: list[HeadSection] = Field(default_factory=list)
    adversaries: list[AdversarySection] = Field(default_factory=list)
    decoder: DecoderSection | None = None
    loss: LossSection = Field(default_factory=LossSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    factors: dict[str, FactorSection] = Field(default_factory=dict)
    eval: EvalSection | None = None

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("codes")
    @classmethod
    def _some_codes(cls, codes: dict[str, CodeSection]) -> dict[str, CodeSection]:
        if not codes:
            raise ValueError("a recipe needs at least one code, e.g. [codes.exp] with branch = 'conv4'")
        return codes

    @property
    def source(self) -> Path | None:
        """The TOML file this recipe came from."""
        return self._source

    def factor_names(self) -> list[str]:
        """Every factor named by a head or an adversary, in order of first use."""
        names: list[str] = []
        for part in [*self.heads, *self.adversaries]:
            if part.factor not in names:
                names.append(part.factor)
        return names

    @property
    def uses_decoder(self) -> bool:
        """Whether the decoder is built (it is only when beta_rec > 0)."""
        return self.decoder is not None and self.loss.beta_rec > 0

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data (part defaults filled in), ready for TOML."""
        data = self.model_dump(mode="json", exclude_none=True)
        parts: list[tuple[dict, PartSection | None]] = [(data["data"], self.data), (data["encoder"], self.encoder)]
        parts += [(data["codes"][name], code) for name, code in self.codes.items()]
        parts += list(zip(data.get("heads", []), self.heads, strict=True))
        parts += list(zip(data.get("adversaries", []), self.adversaries, strict=True))
        parts += [(data["factors"][name], factor) for name, factor in self.factors.items()]
        if self.decoder is not None:
            parts.append((data["decoder"], self.decoder))
        for target, section in parts:
            if section is not None and section._options is not None:
                target.update(section._options.model_dump(mode="json", exclude_none=True))
        return data

    def to_toml(self) -> str:
        """The resolved recipe as TOML text that loads back to the same recipe."""
        return dump_toml(self.to_dict())


# ---------------------------------------------------------------------------------------------
# Loading


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override, validate and resolve a recipe; raise RecipeError with a message for people."""
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        raise RecipeError(
            f"recipe file not found: {path}{hint}. Give the path to a .toml recipe, e.g. recipes/quickstart.toml"
        )
    text = read_text_file(path, "recipe", "save the recipe as UTF-8 text (TOML files are UTF-8)")
    return parse_recipe(text, overrides, source=path)


def read_text_file(path: Path, what: str, fix: str) -> str:
    """A text file's UTF-8 content, or a RecipeError naming the file, where it stops being text, and `fix`."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise RecipeError(f"{what} {path} is a folder, not a file") from None
    except PermissionError:
        raise RecipeError(f"{what} {path} cannot be read (permission denied)") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        kind = "a binary file, not text" if b"\0" in data[:4096] else "not UTF-8 text"
        raise RecipeError(
            f"{what} {path} is {kind} (byte 0x{data[err.start]:02x} at line {line} cannot be decoded as UTF-8); {fix}"
        ) from None


def check_output(recipe: Recipe) -> None:
    """An error now, not after the data is loaded, when run.output cannot receive a run folder."""
    from factorlab.files import check_writable_dir

    check_writable_dir(recipe.run.output, "run.output")


def parse_recipe(text: str, overrides: list[str] | tuple[str, ...] = (), *, source: Path | None = None) -> Recipe:
    """Validate recipe TOML text (see load_recipe)."""
    where = str(source) if source else "<recipe>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(_toml_error(where, exc)) from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise RecipeError(f"{where}: arrays or tables nested too deeply to read; no recipe nests that far") from None
    origins: dict[tuple, str] = {}
    for override in overrides:
        key, value = parse_override(override)
        apply_override(data, key, value, override)
        origins[key] = override
    context = ErrorContext(where, text, origins)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(context.validation_message(exc)) from None
    recipe._source = source
    resolve_parts(recipe, context)
    return recipe


def parse_override(override: str) -> tuple[tuple[str | int, ...], Any]:
    """Split `a.b.c=value` into a key path and a value parsed as a TOML literal (bare text stays a string)."""
    if "=" not in override:
        raise RecipeError(
            f"override {override!r} has no '=': write key=value, e.g. run.epochs=3 or data.root=/path/to/data"
        )
    key, _, raw = override.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override {override!r}: the key before '=' must be a dotted path such as run.epochs")
    try:  # a command line may carry any bytes (Python keeps the others as surrogates); recipe.toml is UTF-8 text
        override.encode("utf-8")
    except UnicodeEncodeError:
        raise RecipeError(
            f"override {ascii(override)}: the value holds bytes that are not UTF-8, and the run's recipe.toml "
            "(UTF-8 text) records it; choose a name or path in UTF-8"
        ) from None
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    except RecursionError:
        raise RecipeError(f"override {key!r}: its value is nested too deeply to read") from None
    if isinstance(value, (datetime.date, datetime.time)):  # a bare date is a name here, not a TOML date
        value = raw.strip()
    path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    return path, value


def apply_override(data: dict[str, Any], key: tuple[str | int, ...], value: Any, override: str) -> None:
    """Set `key` in the nested `data`, creating tables on the way; list entries are addressed by index."""
    node: Any = data
    for depth, part in enumerate(key[:-1]):
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise RecipeError(
                    f"override {override!r}: {'.'.join(map(str, key[:depth]))} has {len(node)} entries; "
                    f"address one by index, e.g. {'.'.join(map(str, key[:depth]))}.0.{key[-1]}"
                )
            node = node[part]
        else:
            nxt = node.setdefault(str(part), {})
            if not isinstance(nxt, (dict, list)):
                raise RecipeError(
                    f"override {override!r}: {'.'.join(map(str, key[: depth + 1]))} is a value, not a table"
                )
            node = nxt
    last = key[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise RecipeError(f"override {override!r}: no entry {last} in a list of {len(node)}")
        node[last] = value
    else:
        node[str(last)] = value


# ---------------------------------------------------------------------------------------------
# Second pass: the parts


def resolve_parts(recipe: Recipe, context: ErrorContext | None = None) -> None:
    """Look every part up in its registry and validate its own keys against its config model."""
    from factorlab.plugins import get_host

    context = context or ErrorContext(str(recipe.source or "<recipe>"), "", {})
    host = get_host()
    errors: list[str] = []

    def resolve(kind: str, name: str, section: PartSection, loc: tuple, name_key: str, skip: set[str]) -> None:
        try:
            entry = host.get(kind, name)
        except UnknownNameError as exc:
            errors.append(context.line((*loc, name_key), str(exc)))
            return
        keys = {k: v for k, v in section.part_keys().items() if k not in skip}
        try:
            section._options = entry.config.model_validate(keys)
        except ValidationError as exc:
            errors.extend(context.error_lines(exc, prefix=loc))

    resolve("datasets", recipe.data.dataset, recipe.data, ("data",), "dataset", DATA_KEYS)
    resolve("encoders", recipe.encoder.type, recipe.encoder, ("encoder",), "type", set())
    for name, code in recipe.codes.items():
        resolve("branches", code.branch, code, ("codes", name), "branch", set())
    for i, head in enumerate(recipe.heads):
        resolve("heads", head.type, head, ("heads", i), "type", set())
    for i, adversary in enumerate(recipe.adversaries):
        resolve("adversaries", adversary.type, adversary, ("adversaries", i), "type", set())
    if recipe.decoder is not None:
        resolve("decoders", recipe.decoder.type, recipe.decoder, ("decoder",), "type", set())
    if recipe.loss.reconstruction not in host.registry("losses"):
        errors.append(
            context.line(
                ("loss", "reconstruction"), host.registry("losses").unknown_message(recipe.loss.reconstruction)
            )
        )
    else:
        try:
            host.get("losses", recipe.loss.reconstruction).config.model_validate(recipe.loss.reconstruction_options)
        except ValidationError as exc:
            errors.extend(context.error_lines(exc, prefix=("loss", "reconstruction_options")))
    factor_names = recipe.factor_names()
    if recipe.data.balance_factor is not None and recipe.data.balance_factor not in factor_names:
        errors.append(
            context.line(
                ("data", "balance_factor"),
                f"{recipe.data.balance_factor!r} is not a factor of any head or adversary; use one of {factor_names}",
            )
        )
    if recipe.run.best_metric is not None and recipe.run.best_metric not in validation_metrics(recipe):
        errors.append(
            context.line(
                ("run", "best_metric"),
                f"{recipe.run.best_metric!r} is not measured on val; choose one of {sorted(validation_metrics(recipe))}",
            )
        )

    for factor in sorted(set(factor_names) | set(recipe.factors)):
        section = recipe.factors.get(factor) or FactorSection()
        if factor not in recipe.factors:
            recipe.factors[factor] = section
        try:
            entry = host.get("factors", factor)
        except UnknownNameError as exc:
            errors.append(context.line(("factors", factor), str(exc)))
            continue
        try:
            section._options = entry.config.model_validate(section.part_keys())
        except ValidationError as exc:
            errors.extend(context.error_lines(exc, prefix=("factors", factor)))

    if not errors and recipe.data.dataset in host.registry("datasets"):
        errors += check_dataset_labels(recipe, context, host)
    for kind, parts in (("heads", recipe.heads), ("adversaries", recipe.adversaries)):
        for i, part in enumerate(parts):
            if part.code not in recipe.codes:
                errors.append(
                    context.line(
                        (kind, i, "code"),
                        f"no code named {part.code!r}; the recipe defines {sorted(recipe.codes)} under [codes.<name>]",
                    )
                )
    if recipe.loss.beta_rec > 0 and recipe.decoder is None:
        errors.append(
            context.line(
                ("loss", "beta_rec"), "beta_rec > 0 needs a decoder: add a [decoder] section (type = 'deconv6')"
            )
        )
    if not recipe.heads:
        errors.append(context.line(("heads",), "a recipe needs at least one [[heads]] entry (factor, code, type)"))
    if recipe.eval is not None:
        errors += resolve_eval(recipe.eval, context, host)
    if errors:
        raise RecipeError(context.header() + "\n".join(f"  {e}" for e in errors))


def check_dataset_labels(recipe: Recipe, context: ErrorContext, host: Any) -> list[str]:
    """The recipe's data set can label every factor it uses (natively, or the factor derives it from ground truth)."""
    from factorlab.factors import dataset_label_info, label_check, resolve_factors

    entry = host.get("datasets", recipe.data.dataset)
    labels, truth = dataset_label_info(entry)
    errors = []
    for factor in resolve_factors(recipe).values():
        problem = label_check(recipe.data.dataset, labels, truth, factor)
        if problem:
            errors.append(context.line(("data", "dataset"), problem))
    return errors


def resolve_eval(section: EvalSection, context: ErrorContext, host: Any) -> list[str]:
    """Check the [eval] section's metric names against the registry and validate each metric's options."""
    registry = host.registry("metrics")
    errors: list[str] = []
    for i, name in enumerate(section.metrics or []):
        if name not in registry:
            errors.append(context.line(("eval", "metrics", i), registry.unknown_message(name)))
        elif section.metrics.index(name) != i:
            errors.append(context.line(("eval", "metrics", i), f"{name!r} is listed twice; list each metric once"))
    for name, keys in section.options.items():
        if name not in registry:
            errors.append(context.line(("eval", "options", name), registry.unknown_message(name)))
            continue
        config, loc = registry.get(name).config, ("eval", "options", name)
        try:
            section._options[name] = config.model_validate(keys)
        except ValidationError as exc:
            known = ", ".join(config.model_fields) or "none"
            for err, line in zip(exc.errors(), context.error_lines(exc, prefix=loc), strict=True):
                if err["type"] == "extra_forbidden":
                    line = context.line((*loc, *err["loc"]), f"unknown option of metric {name!r}; its options: {known}")
                errors.append(line)
    return errors


def validation_metrics(recipe: Recipe) -> set[str]:
    """The names of the metrics the trainer measures on the val split (candidates for run.best_metric)."""
    names = set()
    for kind, parts in (("head", recipe.heads), ("adversary", recipe.adversaries)):
        for part in parts:
            names |= {f"{kind}/{part.factor}/{part.code}/accuracy", f"{kind}/{part.factor}/{part.code}/loss"}
    names |= {f"encoder_adv/{part.factor}/{part.code}/loss" for part in recipe.adversaries}
    if recipe.uses_decoder:
        names.add("reconstruction/loss")
    return names


# ---------------------------------------------------------------------------------------------
# Errors for people


class ErrorContext:
    """Where recipe values came from: the file (and its text, to find lines) and the overrides."""

    def __init__(self, where: str, text: str, origins: dict[tuple, str], title: str = "invalid recipe") -> None:
        self.where, self.lines, self.origins, self.title = where, text.splitlines(), origins, title

    def header(self) -> str:
        return f"{self.title} {self.where}:\n"

    def line(self, loc: tuple, message: str) -> str:
        key = ".".join(str(p) for p in loc)
        for origin_key, override in self.origins.items():
            if tuple(loc[: len(origin_key)]) == origin_key or origin_key[: len(loc)] == tuple(loc):
                return f"{key}: {message} (from the command-line override {override!r})"
        lineno = _find_line(self.lines, loc)
        at = f"{self.where}:{lineno}: " if lineno else (f"{self.where}: " if self.lines else "")
        return f"{at}{key}: {message}"

    def error_lines(self, exc: ValidationError, prefix: tuple = ()) -> list[str]:
        out = []
        for err in exc.errors():
            loc = (*prefix, *err["loc"])
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown key; check its spelling (`factorlab ls` lists the parts, the docs their keys)"
            elif err["type"] == "missing":
                message = "required key is missing"
            elif err["type"] == "value_error":
                message = message.removeprefix("Value error, ")
            out.append(self.line(loc, message))
        return out

    def validation_message(self, exc: ValidationError) -> str:
        return self.header() + "\n".join(f"  {line}" for line in self.error_lines(exc))


def _toml_error(where: str, exc: tomllib.TOMLDecodeError) -> str:
    match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
    if match:
        return f"TOML syntax error in {where}:{match.group(1)}:{match.group(2)}: {message}"
    return f"TOML syntax error in {where}: {message}"


def _find_line(lines: list[str], loc: tuple) -> int | None:
    """Best effort: the 1-based line where the key `loc` is written in the TOML text."""
    # The longest table prefix that appears as a header, then the key below it (else the header).
    for cut in range(len(loc), 0, -1):
        header_line = _find_header(lines, loc[:cut])
        if header_line is None:
            continue
        if cut < len(loc):
            key = str(loc[cut])
            for i in range(header_line, len(lines)):
                text = lines[i].strip()
                if text.startswith("["):
                    break
                if re.match(rf"{re.escape(key)}\s*[=.]", text):
                    return i + 1
        return header_line
    # No header: a top-level (possibly dotted) key such as `run.epochs = 3`.
    dotted = ".".join(str(p) for p in loc if not isinstance(p, int))
    for i, text in enumerate(lines):
        if re.match(rf"\s*{re.escape(dotted)}\s*=", text):
            return i + 1
    return None


def _find_header(lines: list[str], head: tuple) -> int | None:
    if head and isinstance(head[-1], int):
        name, index = ".".join(str(p) for p in head[:-1]), head[-1]
        seen = -1
        for i, text in enumerate(lines):
            if re.match(rf"\s*\[\[\s*{re.escape(name)}\s*\]\]", text):
                seen += 1
                if seen == index:
                    return i + 1
        return None
    if any(isinstance(p, int) for p in head):
        return None
    name = ".".join(head)
    for i, text in enumerate(lines):
        if re.match(rf"\s*\[\s*{re.escape(name)}\s*\]", text):
            return i + 1
    return None


# ---------------------------------------------------------------------------------------------
# TOML output


def dump_toml(data: dict[str, Any]) -> str:
    """Write plain data (dicts, lists of dicts, scalars) as TOML."""
    out: list[str] = []
    _dump_table(data, (), out)
    return "\n".join(out).strip() + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _dump_table(table: dict[str, Any], path: tuple[str, ...], out: list[str], array: bool = False) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not _is_table_list(v)}
    if path and (scalars or array or not table):
        out.append("")
        name = ".".join(_key(p) for p in path)
        out.append(f"[[{name}]]" if array else f"[{name}]")
    for key, value in scalars.items():
        out.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _dump_table(value, (*path, key), out)
        elif _is_table_list(value):
            for item in value:
                _dump_table(item, (*path, key), out, array=True)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, float) or value == value else "nan"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Path):
        return _string(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
