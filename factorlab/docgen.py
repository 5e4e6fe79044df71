"""Generate docs/reference/recipe.md from the pydantic models (the recipe reference is never written twice).

    python -m factorlab.docgen > docs/reference/recipe.md

A test checks that the committed page equals this output.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from factorlab import recipe as r

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _type(annotation: Any) -> str:
    """A readable type: `one of "a", "b"` for literals, `int or None` for unions, names otherwise."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # a constrained type: `int >= 1` (pydantic keeps the bounds in `metadata`)
        base, *extra = args
        marks = [m for e in extra for m in getattr(e, "metadata", [e])]
        bounds = [f"{op} {getattr(m, key)}" for m in marks for key, op in _BOUNDS if getattr(m, key, None) is not None]
        return " ".join([_type(base), ", ".join(bounds)]) if bounds else _type(base)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type(a) for a in args)}]"
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
        if isinstance(value, (str, Path)):
            return f'`"{value}"`'
        return f"`{value!r}`"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(table)" if isinstance(value, BaseModel) else f"`{value!r}`"
    return "**required**"


def fields_table(model: type[BaseModel]) -> list[str]:
    """A Markdown table of a model's fields: key, type, default, description."""
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        lines.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {field.description or ''} |")
    return lines


SECTIONS = [
    ("[run]", r.RunSection),
    ("[data]", r.DataSection),
    ("[data.augment]", r.AugmentSection),
    ("[encoder]", r.EncoderSection),
    ("[codes.NAME]", r.CodeSection),
    ("[[heads]]", r.HeadSection),
    ("[[adversaries]]", r.AdversarySection),
    ("[decoder]", r.DecoderSection),
    ("[loss]", r.LossSection),
    ("[optim]", r.OptimSection),
    ("[optim.main] and [optim.adversary]", r.OptimizerSection),
    ("[eval]", r.EvalSection),
]

PART_SECTIONS = [
    ("datasets", "[data] keys of data set"),
    ("encoders", "[encoder] keys of encoder"),
    ("branches", "[codes.NAME] keys of branch"),
    ("heads", "[[heads]] keys of head"),
    ("adversaries", "[[adversaries]] keys of adversary"),
    ("decoders", "[decoder] keys of decoder"),
    ("losses", "reconstruction loss"),
    ("factors", "[factors.NAME] keys of factor"),
    ("metrics", "[eval.options.NAME] keys of metric"),
]


def recipe_reference() -> str:
    """The whole recipe reference page as Markdown."""
    from factorlab.plugins import load_plugins

    host = load_plugins()
    out = [
        "# Recipe reference",
        "",
        "Generated from the pydantic models by `python -m factorlab.docgen`; do not edit by hand.",
        "Every section rejects unknown keys. A part's own keys sit in its section beside the key that names it.",
        "",
    ]
    for title, model in SECTIONS:
        out += [f"## `{title}`", "", (model.__doc__ or "").strip(), "", *fields_table(model), ""]
    out += ["# Registered parts", ""]
    bundled = {info.name for info in host.plugins if info.module.startswith("factorlab")}  # core and plugins/*
    for kind, title in PART_SECTIONS:
        for entry in host.registry(kind):
            if entry.plugin not in bundled:
                continue
            out += [f"## {title} `{entry.name}`", "", f"{entry.description} (plugin `{entry.plugin}`)", ""]
            if entry.config.model_fields:
                out += [*fields_table(entry.config), ""]
            else:
                out += ["No options.", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(recipe_reference())
