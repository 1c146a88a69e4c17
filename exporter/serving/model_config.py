"""Triton's ``ModelConfig`` of a model: the one description written to ``config.pbtxt`` by the
repository writer (:mod:`.triton_repo`) and answered by ``serve`` (``/v2/models/NAME/config``).

The message is Triton's own schema (``model_config.proto``, shipped as
``tritonclient.grpc.model_config_pb2``). ONNX Runtime's TensorRT EP options are defined once, with
ONNX Runtime's option names (:func:`exporter.backends.ort.tensorrt_ep_options`: profile, precision
switches, workspace); the TensorRT
accelerator's parameters are translated from them by :func:`triton_accelerator_parameters`, using
the keys Triton's onnxruntime backend reads (``onnxruntime_backend/src/onnxruntime.cc``, the
``TensorRT Execution Accelerator`` parameter loop).
"""

from __future__ import annotations

from exporter.backends.ort import TRT_WORKSPACE_BYTES, tensorrt_ep_options
from exporter.serving.datatypes import triton_type
from exporter.serving.session import TensorSpec, leading_dims_dynamic
from exporter.shapes import InputProfile

__all__ = ["TRT_WORKSPACE_BYTES"]  # the TensorRT EP's workspace, defined with its other options
ACCELERATORS = ("tensorrt", "cuda", "cpu", "openvino")
CPU_ACCELERATORS = ("cpu", "openvino")
OPENVINO_ACCELERATOR = "openvino"
"""The onnxruntime backend's one CPU execution accelerator (``src/onnxruntime.cc``
``kOpenVINOExecutionAccelerator``): ONNX Runtime's OpenVINO EP on the CPU; it reads no parameters."""

# onnxruntime_backend src/onnxruntime.cc: Triton parameter key -> the ORT TensorRT EP option it sets.
# ``precision_mode`` is handled apart (FP32, FP16, BF16, INT8 -> trt_{fp16,bf16,int8}_enable); any
# other key is refused there with "unknown parameter '...' is provided for TensorRT Execution Accelerator".
TRITON_TO_ORT_TRT = {
    "max_workspace_size_bytes": "trt_max_workspace_size",
    "int8_calibration_table_name": "trt_int8_calibration_table_name",
    "int8_use_native_calibration_table": "trt_int8_use_native_calibration_table",
    **{key: key for key in (
        "trt_max_partition_iterations", "trt_min_subgraph_size", "trt_dla_enable", "trt_dla_core",
        "trt_engine_cache_enable", "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_dump_subgraphs",
        "trt_force_sequential_engine_build", "trt_context_memory_sharing_enable", "trt_layer_norm_fp32_fallback",
        "trt_timing_cache_enable", "trt_timing_cache_path", "trt_force_timing_cache", "trt_detailed_build_log",
        "trt_build_heuristics_enable", "trt_sparsity_enable", "trt_builder_optimization_level",
        "trt_auxiliary_streams", "trt_tactic_sources", "trt_extra_plugin_lib_paths", "trt_profile_min_shapes",
        "trt_profile_max_shapes", "trt_profile_opt_shapes", "trt_cuda_graph_enable", "trt_dump_ep_context_model",
        "trt_ep_context_file_path", "trt_ep_context_embed_mode")},
}
ORT_TO_TRITON_TRT = {ort: triton for triton, ort in TRITON_TO_ORT_TRT.items()}
PRECISION_MODES = {"trt_fp16_enable": "FP16", "trt_bf16_enable": "BF16", "trt_int8_enable": "INT8"}
TRITON_PRECISION_MODES = ("FP32", *PRECISION_MODES.values())
TRITON_TRT_PARAMETERS = frozenset({"precision_mode", *TRITON_TO_ORT_TRT})


def model_config_pb2():
    """Triton's model-config protobuf module, or RuntimeError saying what to install."""
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as err:
        raise RuntimeError(
            "writing a Triton config needs Triton's model-config protobuf from tritonclient's grpc part: "
            "pip install 'tritonclient[grpc]'"
        ) from err
    return model_config_pb2


def _on(value: str) -> bool:
    return str(value).strip().lower() in ("1", "true")


def triton_accelerator_parameters(ort_options: dict[str, str]) -> dict[str, str]:
    """Triton's TensorRT accelerator ``parameters`` that make its onnxruntime backend set ``ort_options``
    (ONNX Runtime TensorRT EP option names and string values).

    The precision switches (``trt_fp16_enable``, ``trt_bf16_enable``, ``trt_int8_enable``) become the
    one ``precision_mode`` (``FP32`` when none is on); the rest map key by key. ValueError for an
    option Triton cannot pass on, or for two precision switches on at once (``precision_mode`` holds one).
    """
    parameters: dict[str, str] = {}
    modes = [PRECISION_MODES[key] for key, value in ort_options.items() if key in PRECISION_MODES and _on(value)]
    if len(modes) > 1:
        raise ValueError(f"Triton's precision_mode takes one of {', '.join(TRITON_PRECISION_MODES)}; the TensorRT EP "
                         f"options turn on {' and '.join(modes)}")
    parameters["precision_mode"] = modes[0] if modes else "FP32"
    for key, value in ort_options.items():
        if key in PRECISION_MODES:
            continue
        if key not in ORT_TO_TRITON_TRT:
            raise ValueError(f"TensorRT EP option {key!r} has no parameter in Triton's onnxruntime backend "
                             "(onnxruntime_backend src/onnxruntime.cc)")
        parameters[ORT_TO_TRITON_TRT[key]] = str(value)
    return parameters


def accelerator_ep_options(inputs: list[TensorSpec], max_batch: int, profiles: tuple[InputProfile, ...],
                           precision: str, batches: bool) -> dict[str, str]:
    """The ONNX Runtime TensorRT EP options a file of ``precision`` is served with: its precision
    switch (a Q/DQ file: int8; an fp16 file: fp16), its workspace, and one optimization profile for
    every batch (and size) served, as ``serve``'s."""
    return tensorrt_ep_options(inputs if batches or profiles else (), max_batch, profiles, precision=precision)


def batched(max_batch: int, inputs: list[TensorSpec] | None, outputs: list[TensorSpec] | None) -> bool:
    """Whether Triton batches the model: ``max_batch > 0`` and every tensor's first dim dynamic
    (``inputs`` None: a plan whose tensors Triton completes, batched as asked)."""
    return max_batch > 0 and (inputs is None or leading_dims_dynamic(inputs + (outputs or [])))


def build_config(
    name: str,
    inputs: list[TensorSpec] | None,
    outputs: list[TensorSpec] | None,
    *,
    plan: bool,
    max_batch: int,
    max_delay_us: int,
    accelerator: str = "tensorrt",
    instance_kind: str | None = None,
    queue_policy: tuple[int, int] | None = None,
    precision: str = "fp32",
    profiles: tuple[InputProfile, ...] = (),
):
    """A Triton ``ModelConfig`` message: the one description of a model.

    ``inputs``/``outputs`` None leaves them for Triton to complete (plans only). ``accelerator``
    (ONNX only): ``tensorrt`` puts ONNX Runtime's TensorRT EP first, ``cuda`` leaves the CUDA EP,
    ``cpu`` runs on CPU instances with no GPU accelerator, ``openvino`` on CPU instances with the
    OpenVINO CPU execution accelerator (ONNX Runtime's OpenVINO EP). ``instance_kind`` ``gpu`` or
    ``cpu`` (``KIND_GPU`` / ``KIND_CPU``; default: ``cpu`` for the CPU accelerators, else ``gpu``).
    ``queue_policy`` ``(max_queue_size, timeout_us)``, for batched models: the dynamic batcher's
    default queue policy, rejecting past either bound and letting a request's own timeout shorten
    the wait. ``precision`` (:func:`exporter.onnx.precision.file_precision`) sets the TensorRT
    accelerator's ``precision_mode`` (``int8``: INT8, ``fp16``: FP16). The accelerator gets the
    EP's optimization profile (:func:`exporter.backends.ort.tensorrt_ep_options`): ``profiles`` when given,
    else for a batched file with fixed other dims batches of 1 to ``max_batch``. ValueError for an
    unknown accelerator or instance kind, a plan on CPU, or a GPU accelerator on CPU instances.
    """
    pb = model_config_pb2()
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator {accelerator!r} is not one of {', '.join(ACCELERATORS)}")
    instance_kind = instance_kind or ("cpu" if accelerator in CPU_ACCELERATORS else "gpu")
    kinds = {"gpu": pb.ModelInstanceGroup.KIND_GPU, "cpu": pb.ModelInstanceGroup.KIND_CPU}
    if instance_kind not in kinds:
        raise ValueError(f"instance_kind {instance_kind!r} is not one of {', '.join(kinds)}")
    if plan and instance_kind == "cpu":
        raise ValueError(f"a TensorRT plan runs on a GPU only; accelerator={accelerator!r} is for ONNX models")
    if accelerator in CPU_ACCELERATORS and instance_kind != "cpu":
        raise ValueError(f"accelerator={accelerator!r} runs on CPU instances (instance_kind='cpu')")
    config = pb.ModelConfig(name=name)
    if plan:
        config.platform, config.backend = "tensorrt_plan", "tensorrt"
    else:
        config.platform, config.backend = "onnxruntime_onnx", "onnxruntime"
    batches = batched(max_batch, inputs, outputs)
    config.max_batch_size = max_batch if batches else 0
    for specs, field in ((inputs or [], config.input), (outputs or [], config.output)):
        for spec in specs:
            field.add(
                name=spec.name,
                data_type=pb.DataType.Value(triton_type(spec.datatype)),
                dims=spec.shape[1:] if batches else spec.shape,
            )
    if batches:
        config.dynamic_batching.max_queue_delay_microseconds = max_delay_us
        if queue_policy is not None:
            policy = config.dynamic_batching.default_queue_policy
            policy.max_queue_size, policy.default_timeout_microseconds = queue_policy
            policy.timeout_action = pb.ModelQueuePolicy.REJECT
            policy.allow_timeout_override = True
    config.instance_group.add(kind=kinds[instance_kind], count=1)
    if not plan and accelerator == "tensorrt" and instance_kind == "gpu":
        trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        options = accelerator_ep_options(inputs or [], max_batch, profiles, precision, batches)
        trt.parameters.update(triton_accelerator_parameters(options))
    if not plan and accelerator == OPENVINO_ACCELERATOR:
        config.optimization.execution_accelerators.cpu_execution_accelerator.add(name=OPENVINO_ACCELERATOR)
    return config


def config_text(config) -> str:
    """``config`` in protobuf text format, as ``config.pbtxt`` holds it."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str, source: str = "config.pbtxt"):
    """Parse ``config.pbtxt`` text into Triton's ``ModelConfig``; ValueError naming ``source`` when
    it does not fit the schema (Triton's own loader parses it with the same message type)."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_config_pb2().ModelConfig())
    except text_format.ParseError as err:
        raise ValueError(f"{source} does not parse as Triton's ModelConfig: {err}") from err
