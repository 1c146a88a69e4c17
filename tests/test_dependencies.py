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


def _extras() -> dict[str, list[Requirement]]:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return {name: [Requirement(d) for d in deps] for name, deps in extras.items()}


ORT_PACKAGES = ("onnxruntime", "onnxruntime-gpu")


def test_one_onnxruntime_package_per_install():
    """Both wheels ship the ``onnxruntime`` module: installed together, the CPU wheel's files land on
    top of the GPU wheel's and the CUDA and TensorRT providers vanish. No core dependency names
    either; ``cpu`` brings only onnxruntime, ``gpu`` only onnxruntime-gpu, ``dev`` neither (the
    ``make`` environment installs ``.[dev,gpu]``)."""
    core = [Requirement(d).name for d in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]
    assert not set(core) & set(ORT_PACKAGES)
    extras = _extras()
    assert [r.name for r in extras["cpu"] if r.name in ORT_PACKAGES] == ["onnxruntime"]
    assert [r.name for r in extras["gpu"] if r.name in ORT_PACKAGES] == ["onnxruntime-gpu"]
    assert not {r.name for r in extras["dev"]} & set(ORT_PACKAGES)
    assert "'.[dev,gpu]'" in (PYPROJECT.parent / "Makefile").read_text()


def test_this_environment_has_one_onnxruntime_package():
    installed = []
    for name in ORT_PACKAGES:
        try:
            installed.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    assert len(installed) == 1, f"installed: {installed or 'none'}; pip uninstall both, then install one"
