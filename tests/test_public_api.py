"""The ``TYPE_CHECKING`` block of ``exporter/__init__.py`` names exactly the lazy public API."""

from __future__ import annotations

import ast
from pathlib import Path

import exporter

INIT = Path(exporter.__file__)


def _type_checking_imports() -> set[tuple[str, str]]:
    tree = ast.parse(INIT.read_text())
    blocks = [node for node in tree.body
              if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"]
    assert len(blocks) == 1, "exporter/__init__.py needs one `if TYPE_CHECKING:` block"
    pairs = set()
    for node in ast.walk(blocks[0]):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                # `from m import x as x` is the PEP 484 explicit re-export; `as y` would hide x.
                assert alias.asname == alias.name, f"write `{alias.name} as {alias.name}` (re-export)"
                pairs.add((node.module, alias.name))
    return pairs


def test_type_checking_block_matches_import_structure():
    expected = {(module, name) for module, names in exporter._IMPORT_STRUCTURE.items() for name in names}
    found = _type_checking_imports()
    assert found - expected == set(), "in the TYPE_CHECKING block but not in _IMPORT_STRUCTURE"
    assert expected - found == set(), "in _IMPORT_STRUCTURE but not in the TYPE_CHECKING block"
