"""The folder tree is the data path: no module imports a later step, and no import cycles.

Steps, earliest first: base (``exporter``, ``exporter.shapes``, ``exporter.config``, ``exporter.wire``,
``exporter.backends.availability``), model, plugins, onnx, quantize, trt / backend runners and
``exporter.backends.ort``, comparison / bench / serving, cli. A module may import its own package
and earlier steps. Every import counts, the ones inside functions too, except those under
``if TYPE_CHECKING:``, which never run (``exporter/__init__.py`` names its lazy public API there).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = (
    ("exporter", "exporter.shapes", "exporter.config", "exporter.wire", "exporter.backends.availability"),
    ("exporter.model",),
    ("plugins",),
    ("exporter.onnx",),
    ("exporter.quantize",),
    ("exporter.trt", "exporter.backends.runners", "exporter.backends.ort"),
    ("exporter.comparison", "exporter.bench", "exporter.serving"),
    ("exporter.cli",),
)


def _package(module: str) -> str:
    """The longest entry of :data:`STEPS` that ``module`` is or lies in."""
    return max((p for step in STEPS for p in step if module == p or module.startswith(p + ".")), key=len)


def _step(module: str) -> int:
    return next(i for i, step in enumerate(STEPS) if _package(module) in step)


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("exporter", "plugins"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(inner) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                   for statement in node.body for inner in ast.walk(statement)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    modules = _modules()
    return {name for name in found if name in modules and name != module}


def test_no_module_imports_a_later_step():
    late = []
    for module, path in _modules().items():
        for target in _imports(module, path):
            if _package(target) != _package(module) and _step(target) > _step(module):
                late.append(f"{module} imports {target}")
            elif _package(target) != _package(module) and _step(target) == _step(module) and _step(module) == 6:
                late.append(f"{module} imports its sibling step {target}")
    assert not late, "\n".join(sorted(late))


def test_no_import_cycles():
    graph = {module: _imports(module, path) for module, path in _modules().items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, module, target]))
            if target not in state:
                visit(target, [*trail, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
