"""OpenVINO on the CPU: the ``ov-cpu`` backend (compare, bench) and what serving runs on it.

OpenVINO reads an exported ONNX file as it is (its ONNX frontend), ``Conv -> Mul(scale)`` static
and dynamic-H/W exports, fp16 exports and Q/DQ int8 files included. It cannot run a plugin-mode
file: ``RFConvRectify`` is a TensorRT plugin node that OpenVINO has no op for (:func:`refusal`
says so in one line, with what to run instead).

Precision: ``"fp32"`` (default) compiles with ``INFERENCE_PRECISION_HINT f32``: OpenVINO's CPU
plugin otherwise computes in bf16 on CPUs that have it. ``"bf16"`` is opt-in and refused with
:class:`OpenVinoRefused` on a CPU whose ``OPTIMIZATION_CAPABILITIES`` lack ``BF16``
(:func:`cpu_capabilities`).

* :func:`ov_cpu` the availability probe (it lives in :mod:`exporter.backends.availability`).
* :func:`compile_model` an ``openvino.CompiledModel`` of a file, with extra outputs on request.
* :class:`OpenVinoRunner` a Polygraphy runner (``BaseRunner`` contract) for ``compare``, and
  :func:`make_ov_runner`, which refuses up front what cannot run (the backend factory's seam).

The serving adapter (same interface as ``OrtModel``) is :mod:`exporter.serving.openvino`.
``openvino`` is imported only inside functions: importing this module loads neither openvino,
torch nor onnx.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata
from polygraphy.datatype import DataType

from exporter.backends.availability import ov_cpu  # noqa: F401 - the probe, re-exported

BACKEND = "ov-cpu"
"""The backend name (``compare --backends``, ``bench --backends``)."""
DEVICE = "CPU"
PRECISIONS = ("fp32", "bf16")
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16"}
"""``precision`` -> OpenVINO's ``INFERENCE_PRECISION_HINT``."""
PLUGIN_OP = "RFConvRectify"
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
"""ONNX domains whose ops OpenVINO's ONNX frontend implements (``com.microsoft`` contrib ops only
in part, so they count as custom ops here)."""


class OpenVinoRefused(RuntimeError):
    """OpenVINO cannot run this file or precision here; ``str(err)`` is one line saying why and what
    to do instead (``compare``'s backend factory turns it into a skipped backend)."""


def cpu_capabilities() -> frozenset[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (``FP32``, ``BF16``, ``INT8``...)."""
    import openvino

    return frozenset(openvino.Core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


def check_precision(precision: str) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for ``precision``.

    ValueError for a precision not in :data:`PRECISIONS`; :class:`OpenVinoRefused` for ``"bf16"``
    on a CPU without bf16.
    """
    if precision not in INFERENCE_PRECISION:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)} for {BACKEND}")
    if precision == "bf16":
        capabilities = cpu_capabilities()
        if "BF16" not in capabilities:
            raise OpenVinoRefused(
                f"{BACKEND}: this CPU has no bf16 (OpenVINO's OPTIMIZATION_CAPABILITIES: "
                f"{', '.join(sorted(capabilities))}); use precision fp32"
            )
    return INFERENCE_PRECISION[precision]


def refusal(onnx_model) -> str | None:
    """Why OpenVINO cannot run ``onnx_model`` (an ``onnx.ModelProto``, external data need not be
    loaded), as one line with what to do instead; None when it can (Q/DQ int8 files included)."""
    custom = sorted({f"{node.domain}.{node.op_type}" for node in onnx_model.graph.node
                     if node.domain not in STANDARD_DOMAINS})
    if any(op.endswith(f".{PLUGIN_OP}") for op in custom):
        return (f"{BACKEND}: the file has {PLUGIN_OP} nodes (a plugin-mode export for TensorRT), which OpenVINO "
                "cannot run; export with --mode static (Conv -> Mul) for OpenVINO, or run this file on trt or ort-cpu")
    if custom:
        return f"{BACKEND}: the file has custom ops ({', '.join(custom)}) that OpenVINO cannot run"
    return None


def _refusal_of_file(path: Path) -> str | None:
    """:func:`refusal` of the file at ``path`` (read without its external data), or None when it
    does not parse as ONNX."""
    try:
        import onnx

        return refusal(onnx.load(str(path), load_external_data=False))
    except Exception:  # noqa: BLE001 - only used to explain a failure that is reported anyway
        return None


def compile_named(path, precision: str = "fp32", threads: int = 0, extra_outputs: Sequence[str] = (),
                  hint: str = "LATENCY") -> tuple[object, list[str], list[str]]:
    """:func:`compile_model`, with the input and output tensor names as the file declares them (in
    the compiled model's port order). OpenVINO's optimizations can merge tensors, so a compiled
    output port may carry several names (the output of a ``Mul`` by ones also answers to the
    ``Conv``'s name); the names are taken from the model as read, before it is compiled."""
    import openvino

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist")
    inference_precision = check_precision(precision)
    core = openvino.Core()
    try:
        model = core.read_model(str(path))
    except Exception as err:  # noqa: BLE001 - OpenVINO raises its own exception types
        why = _refusal_of_file(path)
        if why:
            raise OpenVinoRefused(why) from err
        raise ValueError(f"OpenVINO cannot read {path}: {_first_line(err)}") from err
    have = {name for port in model.outputs for name in port.get_names()}
    wanted = [name for name in dict.fromkeys(extra_outputs) if name not in have]
    if wanted:
        try:
            model.add_outputs(wanted)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{path}: cannot output the tensors {', '.join(wanted)}: {_first_line(err)}") from err
    inputs = [port_name(port) for port in model.inputs]
    outputs = [port_name(port, extra_outputs) for port in model.outputs]
    config = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(model, DEVICE, config)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"OpenVINO cannot compile {path} for the CPU: {_first_line(err)}") from err
    if len(compiled.outputs) != len(outputs) or len(compiled.inputs) != len(inputs):
        raise RuntimeError(f"OpenVINO compiled {path} into {len(compiled.inputs)} inputs and "
                           f"{len(compiled.outputs)} outputs, but the file has {len(inputs)} and {len(outputs)}")
    for index, (port, name) in enumerate(zip(compiled.outputs, outputs, strict=True)):
        if name not in port.get_names():
            raise RuntimeError(f"OpenVINO reordered the outputs of {path}: output {index} is "
                               f"{sorted(port.get_names())}, not {name!r}")
    return compiled, inputs, outputs


def compile_model(path, precision: str = "fp32", threads: int = 0, extra_outputs: Sequence[str] = (),
                  hint: str = "LATENCY"):
    """An ``openvino.CompiledModel`` of the ONNX file at ``path`` on the CPU.

    ``precision`` per :func:`check_precision`; ``threads`` (0: OpenVINO's choice) is
    ``INFERENCE_NUM_THREADS``; ``extra_outputs`` names intermediate tensors to output after the
    model's own (a name that is an output already is not repeated); ``hint`` is the
    ``PERFORMANCE_HINT`` (``LATENCY``: one stream). Raises FileNotFoundError for a missing file,
    :class:`OpenVinoRefused` for a file OpenVINO cannot run (:func:`refusal`), ValueError for an
    extra output the graph does not have or a file OpenVINO fails to read otherwise. Name outputs
    with :func:`compile_named`'s names, not the compiled ports' (they may carry merged names).
    """
    return compile_named(path, precision, threads, extra_outputs, hint)[0]


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip() and not line.startswith("Exception from src")]
    return lines[0].strip() if lines else type(err).__name__


def port_name(port, preferred: Sequence[str] = ()) -> str:
    """The tensor name of an OpenVINO port: one of ``preferred`` when the port carries it, else any."""
    names = port.get_names()
    return next((name for name in preferred if name in names), None) or port.get_any_name()


def port_shape(port) -> tuple[int, ...]:
    """The port's shape, ``-1`` for a dimension of any size (an unknown rank gives ``()``)."""
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return ()
    return tuple(dim.get_length() if dim.is_static else -1 for dim in shape)


def port_dtype(port) -> np.dtype:
    """The numpy dtype of the port's element type."""
    return np.dtype(port.get_element_type().to_dtype())


class OpenVinoRunner(BaseRunner):
    """Run an ONNX file on OpenVINO's CPU plugin, for Polygraphy's ``Comparator``.

    ``precision`` is ``"fp32"`` (``INFERENCE_PRECISION_HINT f32``) or ``"bf16"`` (refused on a CPU
    without bf16 when activated); ``extra_outputs`` names intermediate tensors returned after the
    model outputs (a file that declares them as graph outputs, as compare's per-layer file does,
    needs none). Outputs are float arrays keyed by tensor name, in the compiled model's order.
    Activation raises what :func:`compile_named` raises.
    """

    def __init__(self, onnx_path, precision: str = "fp32", extra_outputs: Sequence[str] = (), threads: int = 0,
                 name: str | None = None):
        super().__init__(name=name, prefix="openvino-runner")
        self.onnx_path = onnx_path
        self.precision = precision
        self.extra_outputs = list(extra_outputs)
        self.threads = threads

    def activate_impl(self):
        self.compiled, self.input_names, self.output_names = compile_named(
            self.onnx_path, self.precision, self.threads, self.extra_outputs)
        self.request = self.compiled.create_infer_request()

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for name, port in zip(self.input_names, self.compiled.inputs, strict=True):
            shape = [None if d < 0 else d for d in port_shape(port)]
            meta.add(name, DataType.from_dtype(port_dtype(port)), shape)
        return meta

    def infer_impl(self, feed_dict):
        feeds = {name: np.ascontiguousarray(value) for name, value in feed_dict.items()}
        start = time.perf_counter()
        results = self.request.infer(feeds)
        self.inference_time = time.perf_counter() - start
        return OrderedDict(
            (name, np.array(results[port], copy=True))  # the request reuses its output buffers
            for name, port in zip(self.output_names, self.compiled.outputs, strict=True)
        )

    def deactivate_impl(self):
        del self.request, self.compiled, self.input_names, self.output_names


def make_ov_runner(onnx_path, onnx_model, precision: str = "fp32", threads: int = 0,
                   name: str = BACKEND) -> OpenVinoRunner:
    """The ``ov-cpu`` runner for ``compare``'s backend factory, or :class:`OpenVinoRefused` with the
    one-line reason it cannot run here, checked before anything is compiled: OpenVINO missing
    (:func:`ov_cpu`), a file it cannot run (:func:`refusal` of ``onnx_model``, the loaded graph of
    ``onnx_path``), or a precision this CPU lacks (:func:`check_precision`; ``precision`` is what
    was asked for, ``"fp32"`` or ``"bf16"``)."""
    found = ov_cpu()
    if not found.available:
        raise OpenVinoRefused(found.detail)
    why = refusal(onnx_model)
    if why:
        raise OpenVinoRefused(why)
    if precision not in INFERENCE_PRECISION:
        raise OpenVinoRefused(f"{BACKEND} computes in {' or '.join(PRECISIONS)}, not {precision}; "
                              f"compare this backend with precision fp32 (or bf16 on a CPU that has it)")
    check_precision(precision)
    return OpenVinoRunner(onnx_path, precision=precision, threads=threads, name=name)
