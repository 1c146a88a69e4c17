"""Where the TensorRT headers are, for the tests that compile the plugin: ``TensorRT_INCLUDE_DIR``,
or ``TensorRT_ROOT``/include (the same variables CMake reads); None when neither is set."""

from __future__ import annotations

import os
from pathlib import Path


def tensorrt_include_dir() -> Path | None:
    if os.environ.get("TensorRT_INCLUDE_DIR"):
        return Path(os.environ["TensorRT_INCLUDE_DIR"])
    if os.environ.get("TensorRT_ROOT"):
        return Path(os.environ["TensorRT_ROOT"]) / "include"
    return None
