"""The documentation: the generated recipe reference is current, every hook is documented, the site builds strictly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factorlab import hookspecs
from factorlab.docgen import recipe_reference

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_reference_is_generated_from_the_models() -> None:
    committed = (ROOT / "docs" / "reference" / "recipe.md").read_text()
    assert committed == recipe_reference(), "regenerate it: python -m factorlab.docgen > docs/reference/recipe.md"


def test_constrained_types_read_as_their_bounds() -> None:
    from typing import Annotated

    import annotated_types
    from pydantic import Field

    from factorlab.docgen import _type

    assert _type(list[Annotated[int, Field(ge=1)]]) == "list[int >= 1]"
    assert _type(Annotated[float, Field(gt=0, le=1)]) == "float > 0, <= 1"
    assert _type(Annotated[int, annotated_types.Interval(ge=1)]) == "int >= 1"  # conint's form: unset bounds are None
    assert "Annotated[" not in recipe_reference()


def test_every_hook_has_a_docstring_and_a_row_in_the_plugin_guide() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for kind in hookspecs.KINDS:
        hook = getattr(hookspecs, f"factorlab_register_{kind}")
        assert hook.__doc__ and "Collecting" in hook.__doc__, kind
        assert f"| {kind} |" in guide, f"docs/plugins.md has no row for {kind}"


def test_readme_quick_start_has_exactly_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start")
    section = readme[start : readme.index("\n## ", start + 1)]
    commands = [line for line in section.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert commands[0].endswith("factorlab run recipes/quickstart.toml")
    assert commands[1].endswith("python -m pytest")
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs is installed by the [test] extra")  # fmt: skip
def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    command = [str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
