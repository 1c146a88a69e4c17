"""Markers for tests that need what CI machines lack; each skip reason is defined here, once.

* ``requires_cuda``: a CUDA device visible to torch.
* ``requires_tensorrt``: the ``tensorrt`` Python package (it cannot be installed on this project's
  machines; PyPI's wheels download the libraries from a host they cannot reach).

``python -m pytest -m requires_cuda`` runs exactly the GPU tests (``make gpu-check`` does).
"""

from __future__ import annotations

import functools

import pytest

from exporter.backends import availability


@functools.cache
def _skip_reasons() -> dict[str, str | None]:
    cuda, tensorrt = availability.cuda(), availability.tensorrt()
    return {
        "requires_cuda": None if cuda.available else f"needs a CUDA GPU visible to torch ({cuda.detail})",
        "requires_tensorrt": None if tensorrt.available else (
            f"needs TensorRT, which cannot be installed on this project's CI machines ({tensorrt.detail})"),
    }


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, reason in _skip_reasons().items():
            if reason is not None and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))
