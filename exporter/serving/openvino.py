"""The OpenVINO CPU model behind ``serve --provider openvino``: the interface of
:class:`exporter.serving.session.OrtModel` (``inputs``/``outputs`` specs, ``batchable``,
``providers``, ``device``, ``path``, ``run(feeds) -> dict``) on :mod:`exporter.backends.openvino`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from exporter.backends.openvino import compile_named, port_dtype, port_shape
from exporter.serving.config import OPENVINO_PROVIDER
from exporter.serving.datatypes import kserve_datatype
from exporter.serving.session import OrtModel, TensorSpec, existing_file, leading_dims_dynamic, served_profiles
from exporter.shapes import InputProfile

PROVIDER = OPENVINO_PROVIDER
"""What :attr:`OpenVinoModel.providers` lists (the server logs it)."""


def _spec(name: str, port) -> TensorSpec:
    return TensorSpec(name, kserve_datatype(port_dtype(port)), port_shape(port))


class OpenVinoModel:
    """An ONNX model compiled by OpenVINO for the CPU, run on host arrays.

    ``precision`` is ``"fp32"`` (default) or ``"bf16"`` (refused on a CPU without bf16);
    ``intra_op_threads`` is OpenVINO's ``INFERENCE_NUM_THREADS`` (0: its choice). Raises
    FileNotFoundError for a missing file, ValueError for a file OpenVINO cannot read or that has no
    inputs, and :class:`exporter.backends.openvino.OpenVinoRefused` (a RuntimeError) for a file or
    precision OpenVINO cannot run here (a plugin-mode export, bf16 without bf16).
    """

    def __init__(self, path: str | Path, *, precision: str = "fp32", intra_op_threads: int = 0):
        path = existing_file(path, "ONNX model")
        self.compiled, input_names, output_names = compile_named(path, precision, intra_op_threads)
        self.path = path
        self.precision = precision
        self.providers = [PROVIDER]
        self.device = "cpu"
        self.io_binding = False
        self.tf32 = None  # no TF32 on a CPU (the banner and /config read it)
        self.inputs = [_spec(name, port) for name, port in zip(input_names, self.compiled.inputs, strict=True)]
        self.outputs = [_spec(name, port) for name, port in zip(output_names, self.compiled.outputs, strict=True)]
        if not self.inputs:
            raise ValueError(f"ONNX model {path} has no inputs; there is nothing to serve")
        self._local = threading.local()  # an infer request is not thread-safe: one per thread

    warm_up = OrtModel.warm_up
    """Run once on zeros of each of the given shapes (as :meth:`OrtModel.warm_up`)."""

    @property
    def batchable(self) -> bool:
        """True when every input and output has a leading dimension of any size (the batch)."""
        return leading_dims_dynamic(self.inputs + self.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on host arrays; returns host arrays (copies) keyed by output name, in graph order."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        results = request.infer({name: np.ascontiguousarray(array) for name, array in feeds.items()})
        return {spec.name: np.array(results[port], copy=True)
                for spec, port in zip(self.outputs, self.compiled.outputs, strict=True)}


def load_openvino_model(model_path, max_batch: int, *, min_shapes: str | None = None, opt_shapes: str | None = None,
                        max_shapes: str | None = None) -> tuple[OpenVinoModel, tuple[InputProfile, ...]]:
    """The model behind ``serve --provider openvino`` (no ONNX Runtime provider choice, no TensorRT
    options) and its served shape range (:func:`~.session.served_profiles`, from the shape strings,
    empty without them). Raises FileNotFoundError for a missing file, RuntimeError (one line) when
    OpenVINO does not run here, and what :class:`OpenVinoModel` raises."""
    from exporter.backends.availability import ov_cpu

    existing_file(model_path, "ONNX model")
    found = ov_cpu()
    if not found.available:
        raise RuntimeError(f"provider openvino cannot run here: {found.detail}")
    model = OpenVinoModel(model_path)
    profiles = ()
    if any((min_shapes, opt_shapes, max_shapes)):
        profiles = served_profiles(model.inputs, max_batch, model.batchable, min_shapes, opt_shapes, max_shapes)
    return model, profiles
