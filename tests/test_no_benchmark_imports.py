"""Tests import nothing from ``benchmarks/``: what a test and a benchmark share lives in
``tests/helpers/`` (benchmarks may import it), so removing a finished study never breaks a test."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Files still importing a benchmark, each with why; the test below fails once one stops, so that
# its entry is removed with it.
PENDING: dict[str, str] = {}


def _benchmark_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        else:
            continue
        found += [f"line {node.lineno}: {name}" for name in names if name.split(".")[0] == "benchmarks"]
    return found


def test_no_test_imports_from_benchmarks():
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        relative = path.relative_to(TESTS).as_posix()
        found = _benchmark_imports(path)
        if found and relative not in PENDING:
            offenders[relative] = found
    assert offenders == {}, f"move what these tests need into tests/helpers/: {offenders}"


def test_pending_entries_still_import_a_benchmark():
    stale = [name for name in PENDING if not (TESTS / name).is_file() or not _benchmark_imports(TESTS / name)]
    assert stale == [], f"no longer import benchmarks: remove them from PENDING: {stale}"


def test_the_check_sees_every_kind_of_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import benchmarks.run\nfrom benchmarks import harness\nfrom benchmarks.x import y\n"
                     "import importlib\nimportlib.import_module('benchmarks.z')\n"
                     "import benchmarks_other\nfrom tests.helpers import int8_accuracy\nfrom . import benchmarks\n")
    assert [line.split(": ")[1] for line in _benchmark_imports(probe)] == [
        "benchmarks.run", "benchmarks", "benchmarks.x", "benchmarks.z"]
