"""The shape of `pipeline_lib`, read from its source (ast): packages import only the layers below them, no module
imports another's private names, nothing imports Prefect, and every package says what it owns."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline_lib

PACKAGE = Path(pipeline_lib.__file__).resolve().parent
OWN_PACKAGES = ("pipeline_lib", "flows", "tasks")  # tunepipe's own code: the library, the flows and the tasks
# Lowest first: a package may import its own modules and those of the layers before it, never after.
LAYERS = (
    "core",  # config, layout, environment, hardware, roots (the top-level modules)
    "data",
    "task_types",
    "training",
    "runtime",
    "report",
    "registry",
    "gates",
    "scoring",
    "serving",
    "monitoring",
    "steps",
    "commands",
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> dict[str, set[tuple[str, str | None]]]:
    """Per module of the package at `root`: every (module, name) it imports, at any depth of its code."""
    modules = {module_name(path, root): path for path in root.rglob("*.py")}
    found: dict[str, set[tuple[str, str | None]]] = {}
    for module, path in modules.items():
        edges: set[tuple[str, str | None]] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update((alias.name, None) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    edges.add((submodule, None) if submodule in modules else (node.module, alias.name))
        found[module] = edges
    return found


def internal_graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's own modules it imports."""
    names = set(imports(root))
    return {
        module: {target for target, _ in edges if target in names and target != module}
        for module, edges in imports(root).items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], node, target] if target in path else [node, target]
            if not state.get(target) and (loop := visit(target, [*path, node])):
                return loop
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node) and (loop := visit(node, [])):
            return loop
    return None


def layer(module: str) -> str:
    """The package a module belongs to (`pipeline_lib.data.readers` → data), or core for the top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else "core"


def test_no_import_loops_between_modules():
    assert find_cycle(internal_graph(PACKAGE)) is None


def test_packages_import_only_the_layers_below_them():
    wrong = []
    for module, targets in internal_graph(PACKAGE).items():
        own = layer(module)
        for target in targets:
            if LAYERS.index(layer(target)) > LAYERS.index(own):
                wrong.append(f"{module} ({own}) imports {target} ({layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_every_package_is_a_known_layer_with_a_docstring():
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert set(packages) == set(LAYERS) - {"core"}
    for name in packages:
        docstring = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 80, f"pipeline_lib/{name}/__init__.py should say what it owns"


def private_imports(edges: dict[str, set[tuple[str, str | None]]]) -> list[str]:
    """`module imports the private target._name` for every private name one of tunepipe's modules takes from another."""
    return [
        f"{module} imports the private {target}.{name}"
        for module, targets in edges.items()
        for target, name in targets
        if target.split(".")[0] in OWN_PACKAGES and name and name.startswith("_") and target != module
    ]


def test_no_prefect_in_the_library():
    prefect = [
        module for module, edges in imports(PACKAGE).items() if any(t.split(".")[0] == "prefect" for t, _ in edges)
    ]
    assert not prefect, f"pipeline_lib stays free of Prefect: {prefect}"


@pytest.mark.parametrize("package", OWN_PACKAGES)
def test_no_module_imports_another_ones_private_names(package: str):
    assert not private_imports(imports(PACKAGE.parent / package))


@pytest.fixture
def looping_package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg.sub import b\n")
    (root / "sub" / "b.py").write_text("def f():\n    from pkg.a import x  # a lazy import still counts\n")
    (root / "c.py").write_text("from pkg.sub.b import _hidden\nimport prefect\n")
    return root


def test_the_checks_see_a_lazy_loop_a_private_name_and_prefect(looping_package: Path):
    loop = find_cycle(internal_graph(looping_package))
    assert loop is not None and set(loop) == {"pkg.a", "pkg.sub.b"}
    edges = imports(looping_package)["pkg.c"]
    assert ("pkg.sub.b", "_hidden") in edges and ("prefect", None) in edges
    own = {"flows.cli_score": {("flows.cli", "_load"), ("flows.cli", "load"), ("typer", "_private")}}
    assert private_imports(own) == ["flows.cli_score imports the private flows.cli._load"]


HEAVY = ("mlflow", "sklearn", "torch", "transformers", "optuna", "great_expectations", "onnxruntime", "pandas")


def test_the_cli_and_the_flows_start_without_the_heavy_libraries():
    """Every `tunepipe` command imports the CLI first, `run` and `tune` their flows: the libraries a step needs load in
    that step, so `tunepipe lineage`, `ledger` or `--help` never wait for them."""
    code = (
        "import sys, flows.cli, flows.retrain, flows.tune; "
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not loaded, f"imported at start: {', '.join(loaded)}"
