"""The package has no import cycles: every module imports alone, and the import graph is acyclic.

Two checks, because each misses what the other catches:

- `test_every_module_imports_alone`: each module of `factorlab` and of the bundled plugins is
  imported first thing in a process of its own, in which no factorlab module was imported before. A
  cycle held together only by import order (module A works when B happens to be loaded first) fails
  here. The processes are forked from one driver process that has imported the heavy third-party
  packages (torch, ...) but no factorlab module, so ~80 fresh imports take well under a minute.
- `test_import_graph_has_no_cycle`: the graph of every `import factorlab...` statement, at module level
  AND inside functions, read with `ast`, has no cycle. An import inside a function only delays a
  cycle (that is how the former `records <-> align <-> cache` and `rundir -> train -> swap -> rundir`
  cycles were held together); lazy imports for start-up time are fine as long as they form no cycle.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# (folder that holds the package, package name): factorlab itself and the plugins shipped in this repository
PACKAGES = [(ROOT, "factorlab")] + [
    (folder, package.name)
    for folder in sorted((ROOT / "plugins").iterdir())
    if folder.is_dir()
    for package in sorted(folder.glob("factorlab_*"))
    if (package / "__init__.py").is_file()
]
# imported once by the driver before forking: third-party only (none of them imports factorlab)
PRELOAD = ["numpy", "torch", "torchvision", "PIL.Image", "pydantic", "pluggy", "rich.console"]
# also preloaded when installed, so no child imports them: the test took 52 s instead of 162 s (2 busy cores)
PRELOAD_OPTIONAL = [
    "scipy.stats",
    "sklearn.metrics",
    "matplotlib",
    "timm",
    "facenet_pytorch",
    "torch.utils.tensorboard",
]


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages in PACKAGES."""
    modules = {}
    for folder, package in PACKAGES:
        for path in sorted((folder / package).rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


DRIVER = r"""
import importlib, json, os, sys, tempfile, traceback

for name in PRELOAD:
    importlib.import_module(name)
for name in PRELOAD_OPTIONAL:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
loaded = sorted(m for m in sys.modules if m.split(".")[0] in PACKAGES)
if loaded:
    raise SystemExit(f"the driver must not have imported any module of the packages under test: {loaded}")
reports = tempfile.mkdtemp()
running, results = {}, {}


def reap():
    pid, status = os.wait()
    module, report = running.pop(pid)
    with open(report) as f:
        message = f.read()
    code = os.waitstatus_to_exitcode(status)
    results[module] = message if code == 0 else f"the process importing it exited with status {code}: {message}"


for k, module in enumerate(MODULES):
    while len(running) >= WORKERS:
        reap()
    report = os.path.join(reports, str(k))
    pid = os.fork()
    if pid == 0:  # the child: import exactly one module, first thing, then report ("" = imported)
        try:
            importlib.import_module(module)
            message = ""
        except BaseException:
            message = traceback.format_exc(limit=20)
        with open(report, "w") as f:
            f.write(message)
        os._exit(0)
    running[pid] = (module, report)
while running:
    reap()
print(json.dumps(results))
"""


@pytest.mark.slow
def test_every_module_imports_alone() -> None:
    # __main__ runs the CLI when imported; `python -m factorlab` is exercised by the CLI tests
    modules = sorted(m for m in module_files() if not m.endswith(".__main__"))
    assert "factorlab.data.records" in modules and "factorlab.synthesis" in modules  # the list is not empty
    workers = max(2, os.cpu_count() or 2)
    source = f"WORKERS = {workers}\nPRELOAD = {PRELOAD!r}\nPRELOAD_OPTIONAL = {PRELOAD_OPTIONAL!r}\nPACKAGES = {sorted({p for _, p in PACKAGES})!r}\nMODULES = {modules!r}\n{DRIVER}"
    proc = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(folder) for folder, _ in PACKAGES)},
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(results) == modules
    failed = {module: message for module, message in results.items() if message}
    assert not failed, "modules that fail to import alone:\n" + "\n".join(f"{m}:\n{t}" for m, t in failed.items())


# ---------------------------------------------------------------------------------------------
# the static graph


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of `modules` it imports anywhere in its file (module level or in functions).

    `from pkg import name` is an edge to `pkg.name` when that is a module, else to `pkg`; an import
    under `if TYPE_CHECKING:` never runs and is left out.
    """

    def target(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def type_checking_only(tree: ast.AST) -> set[int]:
        skip = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
        return skip

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = type_checking_only(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                edges |= {target(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges.add(full if full in modules else target(base))
        graph[module] = {edge for edge in edges if edge and edge != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_import_graph_has_no_cycle() -> None:
    modules = module_files()
    graph = import_graph(modules)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle (counting imports inside functions): " + " -> ".join(cycle)
    # the two former cycles are gone for good: the leaf modules import none of their former partners
    assert graph["factorlab.data.types"] == set()
    assert "factorlab.train" not in graph["factorlab.rundir"]
    assert "factorlab.swap" not in graph["factorlab.train"]  # the loop draws swap grids with synthesis only
    assert not graph["factorlab.synthesis"] & {"factorlab.swap", "factorlab.rundir", "factorlab.train"}


def test_find_cycle_finds_a_cycle_held_together_inside_a_function(tmp_path: Path) -> None:
    """The checker itself: a cycle through an import inside a function is reported, a chain is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import g\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text("def g():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("import pkg.b\n")
    modules = {f"pkg.{name}": package / f"{name}.py" for name in ("a", "b", "c")} | {"pkg": package / "__init__.py"}
    graph = import_graph(modules)
    assert graph["pkg.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.b"}
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])
    (package / "b.py").write_text("def g():\n    return 1\n")
    assert find_cycle(import_graph(modules)) is None
