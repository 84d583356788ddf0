"""The layering docs/architecture.md describes, checked on the source.

- converters/ import only ``onnxgate.plugins`` (and themselves): a converter
  written here is written exactly as a third-party plugin would be;
- plugins/ never import the engine (``onnxgate.pipeline``), except the
  contract kit, which drives the engine the way a plugin author's tests do;
- no import cycles between onnxgate's modules, lazy imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"converters": "onnxgate.converters", "pipeline": "onnxgate.pipeline", "plugins": "onnxgate.plugins"}


def module_files() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """onnxgate modules that ``name`` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def test_converters_import_only_the_plugin_surface():
    offenders = {
        name: sorted(t for t in targets if not t.startswith(("onnxgate.plugins", "onnxgate.converters")))
        for name, targets in graph().items()
        if name.startswith("onnxgate.converters")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_plugins_do_not_import_the_engine():
    allowed = {"onnxgate.plugins.testing"}  # the contract kit runs the engine, as an author's tests do
    offenders = {
        name: sorted(t for t in targets if t.startswith("onnxgate.pipeline"))
        for name, targets in graph().items()
        if name.startswith("onnxgate.plugins") and name not in allowed
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    edges = graph()
    # a package's __init__ re-exporting its own modules is not a cycle of the design
    for name in edges:
        edges[name] = {t for t in edges[name] if not name.startswith(t + ".")}
    assert _cycles(edges) == []


def test_architecture_doc_names_files_that_exist():
    """docs/architecture.md's tables point newcomers at files: they must be there."""
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:pipeline|plugins|converters|tests|docs)/[\w/.-]+\.(?:py|json|md))`", doc))
    named |= {
        f"pipeline/{m}"
        for m in re.findall(r"`((?:conversion|gate|report|deployment|envs|core|cli|batch)/[\w.]+\.py)`", doc)
    }
    named = {p for p in named if "NAME" not in p}  # placeholders of the "to add X" table
    assert len(named) >= 5
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
