"""No import cycles in `src/llmkit`, not even through a function-level import or a `TYPE_CHECKING` block: when two
modules need each other, the shared piece belongs in a third (STYLE.md, convention 12)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import llmkit

PACKAGE = Path(llmkit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The llmkit modules `path` imports anywhere in its body, functions and `TYPE_CHECKING` blocks included."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            # `from pkg import sub` imports pkg.sub; `from pkg import name` imports pkg (its __init__).
            names = submodules if all(name in modules for name in submodules) else [base, *submodules]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> nx.DiGraph:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in files.items():
        graph.add_node(name)
        graph.add_edges_from((name, target) for target in imported_modules(path, set(files)) if target != name)
    return graph


def test_no_module_imports_itself_back() -> None:
    cycles = [sorted(component) for component in nx.strongly_connected_components(import_graph()) if len(component) > 1]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)
