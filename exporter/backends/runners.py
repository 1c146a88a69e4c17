"""Polygraphy runners for accuracy comparisons, and the backends they stand for.

Two runners of our own follow Polygraphy's ``BaseRunner`` contract (``activate_impl``,
``get_input_metadata_impl``, ``infer_impl`` setting ``self.inference_time``, ``deactivate_impl``):

* :class:`TorchRunner` runs an ``nn.Module`` on the CPU or a GPU (Polygraphy's ``PytRunner``
  always moves inputs to CUDA) and can *tap* intermediate module outputs for per-layer checks.
* :class:`OnnxReferenceRunner` runs ``onnx.reference.ReferenceEvaluator``, an independent,
  numpy-based ONNX runtime.

The ONNX Runtime backends use Polygraphy's ``OnnxrtRunner`` + ``SessionFromOnnx`` and the
TensorRT backend its ``TrtRunner`` + ``EngineFromNetwork(NetworkFromOnnxPath(...))``, imported
only once ``tensorrt`` is known to import; ``ov-cpu`` is OpenVINO's
:class:`~exporter.backends.openvino.OpenVinoRunner` (imported lazily). :func:`make_runner` builds
any of them by name, or raises :class:`BackendSkipped` with the reason it cannot run here.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx.reference.op_run import OpRun
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnx import util as onnx_util
from polygraphy.common import TensorMetadata
from polygraphy.datatype import DataType

from exporter.backends import availability
from exporter.backends.availability import BACKENDS, ORT_PROVIDERS, BackendSkipped
from plugins.spec import PLUGIN_DOMAIN, PLUGIN_NAME, RectifySpec

# Domains whose ops ONNX Runtime and onnx.reference implement; anything else is a custom op.
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
PLUGIN_OP = PLUGIN_NAME
"""The TensorRT plugin node of a plugin-mode export (see plugins/spec.py)."""


@dataclass(frozen=True)
class LayerTap:
    """Record an intermediate module output as an extra runner output.

    ``module`` is the qualified name in ``model.named_modules()``; the hooked output goes through
    ``transform`` (for example, to express it the way the ONNX graph holds that tensor) and is
    returned under ``output_name``.
    """

    module: str
    output_name: str
    transform: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda t: t)


class TorchRunner(BaseRunner):
    """Run a PyTorch module on ``device`` (``"cpu"`` or ``"cuda[:i]"``) without autograd.

    Inputs are fed positionally in ``input_metadata`` order, converted to the metadata's dtype;
    the module's outputs (a tensor, a tuple/list of tensors or a dict of tensors, in order) are
    named by ``output_names``. Taps add intermediate outputs after the model outputs.
    """

    def __init__(
        self,
        model: torch.nn.Module | Callable[[], torch.nn.Module],
        input_metadata: TensorMetadata,
        output_names: Sequence[str],
        device: str = "cpu",
        taps: Sequence[LayerTap] = (),
        name: str | None = None,
    ):
        super().__init__(name=name, prefix="torch-runner")
        self._model = model
        self.input_metadata = input_metadata
        self.output_names = list(output_names)
        self.device = torch.device(device)
        self.taps = list(taps)

    def activate_impl(self):
        model = self._model if isinstance(self._model, torch.nn.Module) else self._model()
        param = next(model.parameters(), None)
        if param is not None and param.device != self.device:
            model = copy.deepcopy(model)  # leave the caller's model on its own device
        modules = dict(model.named_modules())
        absent = [tap.module for tap in self.taps if tap.module not in modules]
        if absent:
            raise ValueError(f"{self.name}: the model has no submodule(s) {', '.join(absent)} to tap")
        self.model = model.to(self.device).eval()
        self.tapped = OrderedDict()
        self.hooks = [modules[tap.module].register_forward_hook(self._hook(tap)) for tap in self.taps]

    def _hook(self, tap: LayerTap):
        def record(_module, _inputs, output):
            if tap.output_name not in self.tapped:  # a module called twice keeps its first call
                self.tapped[tap.output_name] = tap.transform(output.detach())

        return record

    def get_input_metadata_impl(self):
        return self.input_metadata

    def infer_impl(self, feed_dict):
        inputs = feed_to_tensors(feed_dict, self.input_metadata, self.device)
        self.tapped.clear()
        with torch.inference_mode():
            self._synchronize()
            start = time.perf_counter()
            outputs = self.model(*inputs)
            self._synchronize()
            self.inference_time = time.perf_counter() - start
        tensors = _flatten_outputs(outputs)
        if len(tensors) != len(self.output_names):
            raise ValueError(
                f"{self.name}: the PyTorch model returned {len(tensors)} output(s) but the ONNX "
                f"model has {len(self.output_names)} ({', '.join(self.output_names)}); check that "
                "the PyTorch model matches the exported model"
            )
        named = OrderedDict(zip(self.output_names, tensors, strict=True))
        missing = [t.output_name for t in self.taps if t.output_name not in self.tapped]
        if missing:
            raise RuntimeError(f"{self.name}: tapped modules did not run: {', '.join(missing)}")
        named.update(self.tapped)
        # numpy has no bfloat16: such outputs are widened to float32; Polygraphy needs contiguous arrays
        return OrderedDict(
            (key, np.ascontiguousarray((value.float() if value.dtype == torch.bfloat16 else value).cpu().numpy()))
            for key, value in named.items()
        )

    def _synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def deactivate_impl(self):
        for hook in self.hooks:
            hook.remove()
        del self.model, self.tapped, self.hooks


def feed_to_tensors(feed_dict, metadata: TensorMetadata, device="cpu") -> list[torch.Tensor]:
    """The feed dict's arrays as tensors in ``metadata`` order and dtypes, on ``device``."""
    return [
        torch.from_numpy(np.ascontiguousarray(feed_dict[name])).to(
            device, dtype=DataType.to_dtype(meta.dtype, "torch"))
        for name, meta in metadata.items()
    ]


def _flatten_outputs(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for value in outputs.values() for t in _flatten_outputs(value)]
    if isinstance(outputs, (list, tuple)):
        return [t for value in outputs for t in _flatten_outputs(value)]
    raise TypeError(f"the PyTorch model returned a {type(outputs).__name__}, not tensors")


class RFConvRectify(OpRun):
    """The plugin node for ``onnx.reference``, computed by the plugin's own reference (float32,
    rounded once to the conv output's type, as the CUDA kernel does)."""

    op_domain = PLUGIN_DOMAIN

    def _run(self, conv_out, conv_in, bias=None, **attributes):
        from plugins.ort_reference import rectify_reference

        spec = RectifySpec.from_node_attributes(attributes)
        out = rectify_reference(conv_out, tuple(conv_in.shape[-2:]), spec, bias)
        return (out.astype(conv_out.dtype),)


class OnnxReferenceRunner(BaseRunner):
    """Run an ONNX model with ``onnx.reference.ReferenceEvaluator`` (pure numpy, slow, independent).

    ``model`` is a path, an ``onnx.ModelProto`` or a callable returning either. Plugin-mode
    ``RFConvRectify`` nodes run through :class:`RFConvRectify`.
    """

    def __init__(self, model, name: str | None = None):
        super().__init__(name=name, prefix="onnx-reference-runner")
        self._model = model

    def activate_impl(self):
        from onnx.reference import ReferenceEvaluator

        model = self._model() if callable(self._model) else self._model
        if not isinstance(model, onnx.ModelProto):
            model = onnx.load(str(model))
        self.graph = model.graph
        self.evaluator = ReferenceEvaluator(model, new_ops=[RFConvRectify])

    def get_input_metadata_impl(self):
        return onnx_util.get_input_metadata(self.graph)

    def infer_impl(self, feed_dict):
        feeds = {name: np.asarray(value) for name, value in feed_dict.items()}
        start = time.perf_counter()
        outputs = self.evaluator.run(None, feeds)
        self.inference_time = time.perf_counter() - start
        return OrderedDict(
            (out.name, np.ascontiguousarray(value))  # Polygraphy compares contiguous arrays only
            for out, value in zip(self.graph.output, outputs, strict=True)
        )

    def deactivate_impl(self):
        del self.graph, self.evaluator


@dataclass(frozen=True)
class RunnerOptions:
    """What every backend needs to know besides the ONNX file.

    ``model_precision`` is what the ONNX file holds (``"fp32"``/``"fp16"``/``"int8"``); ``precision`` is
    what was asked for: TensorRT builds an fp32 file in fp16 only when the two differ.
    ``plugin_library`` is the RFConvRectify TensorRT plugin (default: the built one, found by
    :func:`plugins.find_library`), loaded when the model has plugin nodes or when given.
    """

    precision: str = "fp32"
    model_precision: str = "fp32"
    torch_device: str = "cpu"
    plugin_library: str | None = None


def custom_ops(model: onnx.ModelProto) -> list[str]:
    """``domain.op_type`` of every node outside the standard domains (plugin nodes included)."""
    return sorted({
        f"{node.domain}.{node.op_type}" for node in model.graph.node if node.domain not in STANDARD_DOMAINS
    })


def _unsupported_ops(model: onnx.ModelProto, backend: str) -> list[str]:
    """Custom ops ``backend`` cannot run: ort-cpu and onnx-ref have a reference for the plugin node."""
    plugin = f"{PLUGIN_DOMAIN}.{PLUGIN_NAME}"
    return [op for op in custom_ops(model) if not (op == plugin and backend in ("ort-cpu", "onnx-ref"))]


def make_runner(
    backend: str,
    onnx_path: str,
    onnx_model: onnx.ModelProto,
    options: RunnerOptions,
    torch_model: torch.nn.Module | None = None,
    torch_inputs: TensorMetadata | None = None,
    taps: Sequence[LayerTap] = (),
) -> BaseRunner:
    """A runner named ``backend`` for the model at ``onnx_path`` (``onnx_model`` is its graph).

    The ``torch`` backend runs ``torch_model`` instead, fed per ``torch_inputs`` (default: the ONNX
    inputs in the model's dtype) and named after the ONNX outputs. Raises :class:`BackendSkipped`
    with a reason when the backend cannot run here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "torch":
        return _torch_runner(onnx_model, options, torch_model, torch_inputs, taps)
    if backend == "ov-cpu":  # OpenVINO refuses, with why, what it cannot run (plugin nodes, bf16-less CPUs)
        from exporter.backends import openvino as ov

        precision = options.precision if options.precision in ov.PRECISIONS else "fp32"
        try:
            return ov.make_ov_runner(onnx_path, onnx_model, precision)
        except ov.OpenVinoRefused as err:
            raise BackendSkipped(str(err)) from err
    unsupported = _unsupported_ops(onnx_model, backend)
    if unsupported and backend in ("ort-cpu", "ort-cuda", "ort-trt", "onnx-ref"):
        raise BackendSkipped(
            f"the model has custom ops ({', '.join(unsupported)}) that {backend} cannot run; "
            "compare a static-mode export on this backend"
        )
    if backend == "onnx-ref":
        return OnnxReferenceRunner(onnx_path, name=backend)
    plugin_nodes = any(node.op_type == PLUGIN_OP for node in onnx_model.graph.node)
    if backend in ORT_PROVIDERS:
        return _ort_runner(backend, onnx_path, options, plugin_nodes)
    return _trt_runner(onnx_path, options, plugin_nodes)


def torch_input_metadata(metadata: TensorMetadata, torch_model: torch.nn.Module) -> TensorMetadata:
    """The ONNX inputs' names and shapes (``metadata``) in the PyTorch model's floating dtype."""
    dtype = next((p.dtype for p in torch_model.parameters() if p.is_floating_point()), torch.float32)
    meta = TensorMetadata()
    for name, (onnx_dtype, shape) in metadata.items():
        meta.add(name, dtype if onnx_dtype.is_floating else onnx_dtype, shape)
    return meta


def _torch_runner(onnx_model, options, torch_model, torch_inputs, taps) -> TorchRunner:
    if torch_model is None:
        raise BackendSkipped("no PyTorch model given (the torch backend runs the model the file was exported from)")
    if torch_inputs is None:
        torch_inputs = torch_input_metadata(onnx_util.get_input_metadata(onnx_model.graph), torch_model)
    if options.torch_device.startswith("cuda"):
        cuda = availability.cuda()
        if not cuda.available:
            raise BackendSkipped(f"torch_device={options.torch_device!r}: {cuda.detail}")
    tapped = {tap.output_name for tap in taps}
    output_names = [out.name for out in onnx_model.graph.output if out.name not in tapped]
    return TorchRunner(torch_model, torch_inputs, output_names, device=options.torch_device,
                       taps=taps, name="torch")


def ort_session(onnx_path: str, providers: list, backend: str):
    """An ONNX Runtime session of ``onnx_path`` on ``providers`` for ``backend``, made by
    :func:`exporter.backends.ort.create_session` (no CPU fallback; ProviderUnavailable, a
    :class:`BackendSkipped`, when the backend's provider is not in the session). Worker threads do not
    spin: spinning threads wait for descheduled peers on shared cores, which distorts timings and
    costs CPU for nothing in a comparison."""
    from exporter.backends import ort

    return ort.create_session(onnx_path, providers, ort.session_options(spinning=False),
                              required=[ORT_PROVIDERS[backend]])


def ort_providers(backend: str, options: RunnerOptions) -> list:
    """The provider list of an ONNX Runtime backend: ``ort-cpu`` the CPU EP; ``ort-cuda`` the CUDA EP
    with TF32 off (the noise-floor verdict compares against fp32); ``ort-trt`` the TensorRT EP
    (:func:`exporter.backends.ort.tensorrt_ep_options` for the file's precision, fp16 built from an fp32
    file when ``options.precision`` asks for it), then CUDA (TF32 off) for the nodes TensorRT rejects."""
    from exporter.backends import ort

    if backend == "ort-cpu":
        return [availability.CPU_EP]
    cuda = (availability.CUDA_EP, ort.cuda_ep_options(tf32=False))
    if backend == "ort-cuda":
        return [cuda]
    build_fp16 = options.precision == "fp16" and options.model_precision == "fp32"
    trt_options = ort.tensorrt_ep_options((), 1, precision=options.model_precision, build_fp16=build_fp16)
    return [(availability.TENSORRT_EP, trt_options), cuda]


def _ort_runner(backend: str, onnx_path: str, options: RunnerOptions, plugin_nodes: bool) -> BaseRunner:
    from polygraphy.backend.onnxrt import OnnxrtRunner

    from exporter.backends import ort

    provider = ORT_PROVIDERS[backend]
    found = availability.ort_provider(provider, backend)
    if not found.available:
        raise ort.ProviderUnavailable(found.detail)
    if plugin_nodes:  # ort-cpu: RFConvRectify through the plugin's onnxruntime-extensions reference op
        from plugins.ort_reference import inference_session

        return OnnxrtRunner(lambda: inference_session(onnx_path), name=backend)
    if provider in availability.GPU_PROVIDERS:  # a provider library that does not load: skipped, with why
        ort.preload_cuda_libraries()
        reason = ort.provider_load_error(provider)
        if reason:
            raise ort.ProviderUnavailable(f"{backend}: {provider} does not load: {reason}")
    providers = ort_providers(backend, options)
    return OnnxrtRunner(lambda: ort_session(onnx_path, providers, backend), name=backend)


def _trt_runner(onnx_path: str, options: RunnerOptions, plugin_nodes: bool) -> BaseRunner:
    found = availability.tensorrt()
    if not found.available:
        raise BackendSkipped(found.detail)
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, TrtRunner

    major = int(trt.__version__.split(".")[0])
    build_fp16 = options.precision == "fp16" and options.model_precision == "fp32"
    if build_fp16 and major >= 11:
        raise BackendSkipped(
            f"TensorRT {trt.__version__} has no FP16 builder flag and takes precision from the "
            "ONNX types: export with precision='fp16' and compare that file"
        )
    if plugin_nodes or options.plugin_library is not None:
        from plugins import load_library

        try:
            load_library(options.plugin_library)
        except FileNotFoundError as err:
            raise BackendSkipped(str(err)) from err
    # Strongly typed when the file carries the precision (fp32, or an fp16 export); weakly typed
    # with the FP16 flag only for fp32 files built in fp16 (TensorRT 10).
    network = NetworkFromOnnxPath(onnx_path, strongly_typed=not build_fp16)
    engine = EngineFromNetwork(network, config=CreateConfig(fp16=build_fp16))
    return TrtRunner(engine, name="trt")
