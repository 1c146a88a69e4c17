"""Fixtures shared by the serving tests."""

import threading

import numpy as np
import pytest

from tests.helpers.serving_models import tiny_models


@pytest.fixture(scope="module")
def reference():
    """Direct ONNX Runtime on the tiny dynamic model file: ``reference(x) -> logits`` (thread-safe)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tiny_models().dynamic), providers=["CPUExecutionProvider"])
    lock = threading.Lock()

    def run(x: np.ndarray) -> np.ndarray:
        with lock:
            return session.run(["logits"], {"input": x})[0]

    return run
