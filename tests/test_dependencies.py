"""Dependency pins that guard against known breakage."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirement(name: str) -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in dependencies if Requirement(d).name == name)


def test_polygraphy_pin_excludes_releases_that_crash_on_provider_options():
    """Polygraphy before 0.49.24 crashes on ``(provider, options)`` tuples (issue 13, bug 3)."""
    pin = _requirement("polygraphy").specifier
    assert "0.49.23" not in pin and "0.49.0" not in pin
    assert "0.49.24" in pin and importlib.metadata.version("polygraphy") in pin
