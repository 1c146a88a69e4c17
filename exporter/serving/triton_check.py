"""``rfconv-deploy triton --check REPO``: a model repository checked the way Triton would load it, without Triton.

Each rule is one step of Triton's loading that refuses the model (or, for ``accelerator-kind``,
silently drops a setting), re-stated from Triton's sources; :data:`RULES` names the source file
of each. A rule that needs something the repository does not hold (a plan's build sidecar,
``1/model.plan.json``) is reported as not checked, never as passed.

Sources (GitHub, ``triton-inference-server/``): ``core`` ``src/constants.h``,
``src/model_config_utils.cc``, ``src/model_repository_manager/model_repository_manager.cc``,
``src/filesystem/api.cc``; ``backend`` ``src/backend_common.cc`` (``CompareDimsSupported``);
``onnxruntime_backend`` ``src/onnxruntime.cc``; ``tensorrt_backend`` ``src/model_state.cc``,
``src/instance_state.cc``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from exporter.serving.datatypes import triton_type
from exporter.serving.model_config import TRITON_PRECISION_MODES, TRITON_TRT_PARAMETERS, model_config_pb2, parse_config
from plugins.library import AUTOREG_NAME, LIBRARY_NAME

CONFIG_FILE = "config.pbtxt"  # core src/constants.h kModelConfigPbTxt
MODEL_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}  # kOnnxRuntimeOnnxFilename, ...
BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}
SIDECAR = "model.plan.json"
GPU_ACCELERATORS = ("tensorrt", "cuda")  # onnxruntime.cc: kTensorRTExecutionAccelerator, "cuda"
CPU_ACCELERATORS = ("openvino",)  # onnxruntime.cc: kOpenVINOExecutionAccelerator (the "CPU execution providers" loop)
PLUGIN_OP = "RFConvRectify"


@dataclass(frozen=True)
class Rule:
    """One check: what Triton requires, and the source file where Triton requires it."""

    name: str
    requires: str
    source: str


RULES = {rule.name: rule for rule in (
    Rule("layout", "NAME/config.pbtxt and NAME/1/<default model file of the platform> exist as regular files",
         "core src/constants.h (kModelConfigPbTxt, kOnnxRuntimeOnnxFilename, kTensorRTPlanFilename); "
         "core src/model_config_utils.cc GetNormalizedModelConfig"),
    Rule("schema", "config.pbtxt parses as inference.ModelConfig (protobuf text format)",
         "core src/filesystem/api.cc ReadTextProto; common protobuf/model_config.proto"),
    Rule("name", "the config's name equals the model's directory name",
         "core src/model_repository_manager/model_repository_manager.cc ('directory name must equal model name')"),
    Rule("platform", "platform and backend are a known pair and match the model file in 1/",
         "core src/model_config_utils.cc ValidateModelConfig ('unexpected platform and backend pair') and "
         "GetNormalizedModelConfig (default_model_filename per platform)"),
    Rule("version", "version 1 (the one written) is among the versions Triton serves: numeric folders, the highest "
                    "num_versions of them under the default policy latest { num_versions: 1 }",
         "core src/model_config_utils.cc GetNormalizedModelConfig (default version policy); "
         "src/model_repository_manager/model_lifecycle.cc VersionsToLoad"),
    Rule("io", "max_batch_size >= 0; every input and output has a name, a data_type and dims of ints >= 1 or -1",
         "core src/model_config_utils.cc ValidateModelConfig, ValidateIOShape"),
    Rule("onnx-io", "an ONNX model's inputs and outputs: same names and count, same data types, a dynamic first "
                    "dim when max_batch_size > 0, and config dims equal to the model's fixed dims",
         "onnxruntime_backend src/onnxruntime.cc ValidateInputs/ValidateOutputs; backend src/backend_common.cc "
         "CompareDimsSupported"),
    Rule("plan-batch", "a plan's max_batch_size is at most its profile's max batch, and its profile's min batch is 1 "
                       "(a request of one row is in range)",
         "tensorrt_backend src/model_state.cc ('configuration specified max-batch ... but TensorRT engine only "
         "supports max-batch ...'); src/instance_state.cc ValidateDimension"),
    Rule("plan-dims", "a plan's config dims lie within its profile's min..max shapes",
         "tensorrt_backend src/instance_state.cc ConfigureInputDimensions / ValidateDimension"),
    Rule("accelerator", "GPU execution accelerators are 'tensorrt' or 'cuda'; the tensorrt accelerator's parameters "
                        "are keys the onnxruntime backend reads, precision_mode one of FP32, FP16, BF16, INT8",
         "onnxruntime_backend src/onnxruntime.cc ('unknown parameter ... for TensorRT Execution Accelerator', "
         "'unsupported precision mode', 'unknown Execution Accelerator')"),
    Rule("accelerator-precision", "the tensorrt accelerator's precision_mode is the file's precision (INT8 for a "
                                  "Q/DQ file, FP16 for an fp16 file): the EP builds a weakly typed network",
         "onnxruntime_backend src/onnxruntime.cc (precision_mode -> trt_fp16_enable / trt_int8_enable); "
         "exporter/onnx/precision.py"),
    Rule("accelerator-kind", "GPU execution accelerators only on KIND_GPU (or KIND_AUTO) instances; on KIND_CPU "
                             "the backend ignores them",
         "onnxruntime_backend src/onnxruntime.cc (gpu_execution_accelerator read only for KIND_GPU / KIND_AUTO)"),
    Rule("cpu-accelerator", "CPU execution accelerators are 'openvino' only, with no parameters (the backend reads "
                            "none), for the onnxruntime backend, on KIND_CPU instances only: on KIND_GPU / "
                            "KIND_AUTO the CUDA EP is appended first and takes the graph, so OpenVINO would not run it",
         "onnxruntime_backend src/onnxruntime.cc (the 'CPU execution providers' loop: kOpenVINOExecutionAccelerator, "
         "OrtOpenVINOProviderOptions device_type CPU, else 'unknown Execution Accelerator'; the GPU providers are "
         "appended before it for KIND_GPU / KIND_AUTO)"),
    Rule("plugin-library", "every plugin library the model names exists: trt_extra_plugin_lib_paths, and for a plan "
                           "that needs the RFConvRectify library, a library carried in NAME/",
         "onnxruntime_backend src/onnxruntime.cc (trt_extra_plugin_lib_paths); tensorrt_backend src/tensorrt.cc "
         "(backend-config plugins=)"),
    Rule("no-plugin-op", "no RFConvRectify node in a model for the onnxruntime backend (ONNX Runtime has no kernel "
                         "for it; its TensorRT EP takes TensorRT plugins only as custom ops of domain trt.plugins)",
         "microsoft/onnxruntime onnxruntime/core/providers/tensorrt/tensorrt_execution_provider_custom_ops.cc"),
)}


@dataclass(frozen=True)
class Finding:
    """A rule a model breaks (or, in ``CheckReport.unchecked``, could not be checked), and why."""

    rule: str
    model: str
    message: str

    def __str__(self) -> str:
        return f"{self.model}: [{self.rule}] {self.message} (Triton: {RULES[self.rule].source})"


@dataclass
class CheckReport:
    """What :func:`check_repository` found: models checked, rules run per model, failures, and the
    rules that could not run (with why)."""

    repo: Path
    models: list[str] = field(default_factory=list)
    ran: dict[str, list[str]] = field(default_factory=dict)
    failures: list[Finding] = field(default_factory=list)
    unchecked: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        """ValueError listing every failure, when there is one."""
        if self.failures:
            raise ValueError(f"Triton would not load the repository {self.repo} as written: "
                             + "; ".join(map(str, self.failures)))


class _Model:
    def __init__(self, report: CheckReport, model_dir: Path):
        self.report, self.dir, self.name = report, model_dir, model_dir.name
        self.ran = report.ran.setdefault(self.name, [])

    def fail(self, rule: str, message: str) -> None:
        self.report.failures.append(Finding(rule, self.name, message))

    def skip(self, rule: str, message: str) -> None:
        self.report.unchecked.append(Finding(rule, self.name, message))

    def done(self, rule: str) -> None:
        self.ran.append(rule)


def plugin_nodes(model) -> int:
    """How many RFConvRectify nodes an ``onnx.ModelProto`` holds (main graph), whatever their domain."""
    return sum(1 for node in model.graph.node if node.op_type == PLUGIN_OP)


def check_repository(repo: str | Path, models: list[str] | None = None) -> CheckReport:
    """Check every model folder of ``repo`` (or those named in ``models``) against :data:`RULES`.

    A model folder is a directory holding ``config.pbtxt``, or any directory named in ``models``.
    FileNotFoundError when ``repo`` is not a directory or holds no model.
    """
    repo = Path(repo)
    if not repo.is_dir():
        raise FileNotFoundError(f"model repository {repo} is not a directory")
    report = CheckReport(repo)
    if models is None:
        folders = sorted(p for p in repo.iterdir() if p.is_dir() and (p / CONFIG_FILE).exists())
        if not folders:
            raise FileNotFoundError(f"{repo} holds no model folder (NAME/{CONFIG_FILE}); is it the repository root?")
    else:
        folders = [repo / name for name in models]
    for folder in folders:
        report.models.append(folder.name)
        _check_model(_Model(report, folder))
    return report


def _check_model(m: _Model) -> None:
    config_path = m.dir / CONFIG_FILE
    if not config_path.is_file():
        m.fail("layout", f"{config_path} is not a file")
        return
    try:
        config = parse_config(config_path.read_text(), str(config_path))
    except (ValueError, UnicodeDecodeError) as err:
        m.fail("schema", str(err))
        return
    m.done("schema")
    if config.name != m.name:
        m.fail("name", f"config name {config.name!r} differs from its directory {m.name!r}")
    m.done("name")
    platform = config.platform or {b: p for p, b in BACKENDS.items()}.get(config.backend, "")
    if platform not in MODEL_FILES:
        for rule in ("platform", "layout", "version", "io", "onnx-io", "plan-batch", "plan-dims"):
            m.skip(rule, f"platform {config.platform!r} / backend {config.backend!r}: rules here cover "
                         + " and ".join(f"{p} ({b})" for p, b in BACKENDS.items()))
        return
    if config.backend and BACKENDS[platform] != config.backend:
        m.fail("platform", f"platform {platform!r} with backend {config.backend!r}: Triton pairs it with "
                           f"{BACKENDS[platform]!r}")
        return
    if not _serves_version_one(m, config):
        return
    model_file = m.dir / "1" / (config.default_model_filename or MODEL_FILES[platform])
    others = [m.dir / "1" / f for p, f in MODEL_FILES.items() if p != platform]
    if not model_file.is_file() or model_file.is_symlink():
        found = [p.name for p in others if p.exists()]
        m.fail("platform" if found else "layout",
               f"platform {platform} loads {model_file}, which is not a regular file"
               + (f" (1/ holds {', '.join(found)}: the platform does not match the file)" if found else ""))
        return
    m.done("layout")
    m.done("platform")
    _check_io(m, config)
    _check_accelerators(m, config, platform)
    if platform == "onnxruntime_onnx":
        _check_onnx(m, config, model_file)
    else:
        _check_plan(m, config, model_file)


def _serves_version_one(m: _Model, config) -> bool:
    """Whether Triton's version policy loads folder ``1``; records the ``version`` rule."""
    versions = sorted(int(p.name) for p in m.dir.iterdir() if p.is_dir() and p.name.isdigit())
    policy = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else "latest"
    if policy == "all":
        served = versions
    elif policy == "specific":
        served = [v for v in versions if v in set(config.version_policy.specific.versions)]
    else:
        count = config.version_policy.latest.num_versions if config.HasField("version_policy") else 1
        served = versions[-max(count, 1):] if versions else []
    if 1 not in served:
        m.fail("version" if versions else "layout",
               f"Triton serves version(s) {served} of {m.dir}, not 1 (the one checked and written here)"
               if versions else f"{m.dir} has no version folder 1/")
        return False
    for version in served:
        if version != 1:
            m.skip("version", f"Triton also serves version {version}; only version 1 is checked")
    m.done("version")
    return True


def _check_io(m: _Model, config) -> None:
    if config.max_batch_size < 0:
        m.fail("io", f"max_batch_size {config.max_batch_size} is negative")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        for tensor in tensors:
            if not tensor.name:
                m.fail("io", f"an {kind} has no name")
            elif tensor.data_type == model_config_pb2().TYPE_INVALID:
                m.fail("io", f"{kind} {tensor.name!r} has no data_type")
            elif not tensor.dims:
                m.fail("io", f"{kind} {tensor.name!r} has no dims")
            elif any(d < 1 and d != -1 for d in tensor.dims):
                m.fail("io", f"{kind} {tensor.name!r} dims {list(tensor.dims)}: each must be >= 1 or -1")
    m.done("io")


def _check_cpu_accelerators(m: _Model, config, platform: str) -> None:
    pb = model_config_pb2()
    accelerators = config.optimization.execution_accelerators.cpu_execution_accelerator
    for accelerator in accelerators:
        if accelerator.name not in CPU_ACCELERATORS:
            m.fail("cpu-accelerator", f"unknown CPU execution accelerator {accelerator.name!r}; the onnxruntime "
                                      f"backend knows {', '.join(repr(a) for a in CPU_ACCELERATORS)} only")
        elif accelerator.parameters:
            m.fail("cpu-accelerator", f"the {accelerator.name} accelerator takes no parameters; the backend ignores "
                                      f"{sorted(accelerator.parameters)}")
    if accelerators and platform != "onnxruntime_onnx":
        m.fail("cpu-accelerator", "cpu_execution_accelerator is for the onnxruntime backend")
    not_cpu = [g for g in config.instance_group if g.kind != pb.ModelInstanceGroup.KIND_CPU]
    if accelerators and (not_cpu or not config.instance_group):
        kinds = ", ".join(pb.ModelInstanceGroup.Kind.Name(g.kind) for g in not_cpu) or "no instance_group (KIND_AUTO)"
        m.fail("cpu-accelerator", f"the OpenVINO CPU accelerator on {kinds} instances: ONNX Runtime's CUDA EP comes "
                                  "first there and OpenVINO would not run the model; use instance_group "
                                  "[{ kind: KIND_CPU }]")
    m.done("cpu-accelerator")


def _check_accelerators(m: _Model, config, platform: str) -> None:
    pb = model_config_pb2()
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    for accelerator in accelerators:
        if accelerator.name not in GPU_ACCELERATORS:
            m.fail("accelerator", f"unknown GPU execution accelerator {accelerator.name!r}")
        elif accelerator.name == "tensorrt":
            unknown = sorted(set(accelerator.parameters) - TRITON_TRT_PARAMETERS)
            if unknown:
                m.fail("accelerator", f"tensorrt accelerator parameters {unknown} are not read by the onnxruntime "
                                      "backend (Triton refuses the model)")
            mode = accelerator.parameters.get("precision_mode", "FP32")
            if mode not in TRITON_PRECISION_MODES:
                m.fail("accelerator", f"precision_mode {mode!r} is not one of {', '.join(TRITON_PRECISION_MODES)}")
    if accelerators and platform != "onnxruntime_onnx":
        m.fail("accelerator", "gpu_execution_accelerator is for the onnxruntime backend; a plan is already an engine")
    m.done("accelerator")
    on_cpu = [g for g in config.instance_group if g.kind == pb.ModelInstanceGroup.KIND_CPU]
    if accelerators and on_cpu:
        m.fail("accelerator-kind", "KIND_CPU instances with a GPU execution accelerator: the backend ignores it there")
    m.done("accelerator-kind")
    _check_cpu_accelerators(m, config, platform)
    for accelerator in accelerators:
        paths = accelerator.parameters.get("trt_extra_plugin_lib_paths", "")
        for path in filter(None, paths.split(";")):
            if not Path(path).is_file():
                m.fail("plugin-library", f"trt_extra_plugin_lib_paths names {path}, which does not exist here")


def _dims_fit(model_dims: tuple[int, ...], config_dims: list[int]) -> bool:
    return len(model_dims) == len(config_dims) and all(d == -1 or d == c for d, c in zip(model_dims, config_dims,
                                                                                          strict=True))


def _check_onnx(m: _Model, config, model_file: Path) -> None:
    import onnx

    from exporter.onnx.precision import file_precision
    from exporter.serving.model_io import _spec

    try:
        model = onnx.load(str(model_file), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf decode errors have no common base
        m.fail("onnx-io", f"{model_file} is not a readable ONNX model: {err}")
        return
    count = plugin_nodes(model)
    if count:
        m.fail("no-plugin-op", f"{model_file} has {count} {PLUGIN_OP} nodes, which ONNX Runtime cannot run: build a "
                               "TensorRT plan from it, or export the Conv->Mul form (export --mode static)")
    m.done("no-plugin-op")
    weights = {t.name for t in model.graph.initializer}
    try:
        graph = {"input": [_spec(v) for v in model.graph.input if v.name not in weights],
                 "output": [_spec(v) for v in model.graph.output]}
    except ValueError as err:
        m.fail("onnx-io", str(err))
        return
    batching = config.max_batch_size > 0
    for kind, tensors in (("input", config.input), ("output", config.output)):
        specs = {spec.name: spec for spec in graph[kind]}
        if tensors and len(tensors) != len(specs):
            m.fail("onnx-io", f"the config has {len(tensors)} {kind}s, the model {len(specs)}")
        for tensor in tensors:
            spec = specs.get(tensor.name)
            if spec is None:
                m.fail("onnx-io", f"{kind} {tensor.name!r} is not one of the model's {sorted(specs)}")
                continue
            wanted = model_config_pb2().DataType.Value(triton_type(spec.datatype))
            if tensor.data_type != wanted:
                m.fail("onnx-io", f"{kind} {tensor.name!r}: config data_type "
                                  f"{model_config_pb2().DataType.Name(tensor.data_type)}, model "
                                  f"{model_config_pb2().DataType.Name(wanted)}")
            shape = spec.shape
            if batching:
                if not shape or shape[0] != -1:
                    m.fail("onnx-io", f"{kind} {tensor.name!r} has a fixed first dim {list(shape)}, but max_batch_size "
                                      f"{config.max_batch_size} makes Triton add a batch dim")
                    continue
                shape = shape[1:]
            if not _dims_fit(shape, list(tensor.dims)):
                m.fail("onnx-io", f"{kind} {tensor.name!r}: config dims {list(tensor.dims)} do not fit the model's "
                                  f"{list(shape)}" + (" (batch left out)" if batching else ""))
    m.done("onnx-io")
    precision = file_precision(model)
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if accelerator.name != "tensorrt":
            continue
        want = {"int8": "INT8", "fp16": "FP16"}.get(precision)
        mode = accelerator.parameters.get("precision_mode", "FP32")
        if want is not None and mode != want:
            m.fail("accelerator-precision", f"the file is {precision} but precision_mode is {mode}: the TensorRT "
                                            f"EP would build it in {mode} (set precision_mode {want})")
    m.done("accelerator-precision")
    m.done("plugin-library")


def _check_plan(m: _Model, config, model_file: Path) -> None:
    sidecar_path = model_file.with_name(SIDECAR)
    if not sidecar_path.is_file():
        for rule in ("plan-batch", "plan-dims"):
            m.skip(rule, f"no {SIDECAR} (the build sidecar) beside the plan: its profile is unknown here; Triton "
                         "checks it against the engine when it loads")
        m.skip("plugin-library", f"no {SIDECAR}: whether the plan needs the RFConvRectify library is unknown")
        return
    try:
        sidecar = json.loads(sidecar_path.read_text())
        profiles = {p["name"]: (tuple(p["min"]), tuple(p["max"])) for p in sidecar.get("inputs") or []}
    except (ValueError, KeyError, TypeError) as err:
        m.fail("plan-batch", f"{sidecar_path} is not the sidecar rfconv-deploy build writes: {err}")
        return
    batching = config.max_batch_size > 0
    if batching and profiles:
        high = min(hi[0] for _, hi in profiles.values())
        low = max(lo[0] for lo, _ in profiles.values())
        if config.max_batch_size > high:
            m.fail("plan-batch", f"max_batch_size {config.max_batch_size} but the engine's profile runs batches of at "
                                 f"most {high}")
        if low != 1:
            m.fail("plan-batch", f"the engine's profile starts at batch {low}: a request of one row is out of its "
                                 "range (build it with --min-shape of batch 1)")
    m.done("plan-batch")
    for tensor in config.input:
        if tensor.name not in profiles:
            if profiles:
                m.fail("plan-dims", f"input {tensor.name!r} is not an input of the engine ({sorted(profiles)})")
            continue
        lo, hi = profiles[tensor.name]
        lo, hi = (lo[1:], hi[1:]) if batching else (lo, hi)
        dims = list(tensor.dims)
        if len(dims) != len(lo) or any(d != -1 and not a <= d <= b for d, a, b in zip(dims, lo, hi, strict=True)):
            m.fail("plan-dims", f"input {tensor.name!r}: config dims {dims} outside the engine's profile "
                                f"{list(lo)}..{list(hi)}" + (" (batch left out)" if batching else ""))
    m.done("plan-dims")
    needs_library = not sidecar.get("version_compatible") and sidecar.get("plugin_nodes", 1) != 0
    if needs_library:
        libraries = sorted(p.name for p in m.dir.glob("*.so*") if p.is_file())
        if not libraries:
            m.skip("plugin-library", "the plan needs the RFConvRectify library and the repository carries none: "
                                     "it must reach Triton by --backend-config=tensorrt,plugins= or LD_PRELOAD")
            return
        for name in libraries:
            if (m.dir / name).read_bytes()[:4] != b"\x7fELF":
                m.fail("plugin-library", f"{m.dir / name} is not a shared library (no ELF header)")
        if AUTOREG_NAME in libraries and LIBRARY_NAME not in libraries:
            m.fail("plugin-library", f"{m.dir / AUTOREG_NAME} loads {LIBRARY_NAME} from its own folder, and "
                                     f"{m.dir} has none")
    m.done("plugin-library")
