"""TensorRT engines from ONNX: ``rfconv-deploy build model.onnx -o model.plan``.

The network is strongly typed: precision comes from the ONNX tensor types (an fp16 export gives
an fp16 engine; TensorRT 11 has no FP16 builder flag). Dynamic input dimensions get one
optimization profile from the config's min/opt/max shapes; a file whose only dynamic dim is the
batch gets batch 1 to ``max_batch`` when none is given (:func:`exporter.trt.options.default_shapes`).
Options are one :class:`exporter.trt.options.BuildConfig`. When the model holds
``RFConvRectify`` plugin nodes (``export --mode plugin``) or ``--plugin-lib`` is given, the plugin
library is registered and, by default, serialized into the plan. A JSON
sidecar ``<plan>.json`` records the TensorRT version, GPU, shapes and precision. TensorRT is
imported lazily: without it the command says so and exits non-zero.

TensorRT embeds plugin libraries (``plugins_to_serialize``) in *version-compatible* plans only, so
a plan with plugin nodes is built version compatible by default; deserialize it with
``runtime.engine_host_code_allowed = True``. ``--no-embed-plugin`` builds a plain plan instead (no
version-compatibility restrictions); the runtime must then load the library first
(``plugins.load_library()``, trtexec ``--dynamicPlugins``, Triton ``--backend-config=tensorrt,plugins=``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import onnx

from exporter.onnx.precision import file_precision
from exporter.shapes import InputProfile, parse_shapes, resolve_profiles
from exporter.trt.options import BuildConfig, default_shapes
from exporter.trt.sidecar import sidecar_path
from plugins.library import import_tensorrt, load_library
from plugins.spec import PLUGIN_NAME


@dataclass(frozen=True)
class OnnxSummary:
    """What the builder needs to know about an ONNX file before TensorRT sees it."""

    inputs: dict[str, tuple]  # name -> dims (int, or str/None for a dynamic dimension)
    plugin_nodes: int
    precision: str  # "fp32", "fp16", "int8" (Q/DQ) or "mixed" (exporter.onnx.precision.file_precision)


@dataclass
class BuildReport:
    """What :func:`build_engine` wrote (sizes in bytes, time in seconds); the sidecar holds the same."""

    plan: str
    onnx: str
    onnx_sha256: str
    tensorrt_version: str
    gpu: str
    precision: str
    strongly_typed: bool
    tf32: bool
    inputs: list[dict]
    outputs: list[dict]
    plugin_library: str | None
    plugin_nodes: int
    plugin_embedded: bool
    version_compatible: bool
    aliased_plugin_io: bool
    workspace_mb: int | None
    timing_cache: str | None
    plan_bytes: int
    build_seconds: float
    notes: list[str] = field(default_factory=list)


def summarize_onnx(path: Path) -> OnnxSummary:
    """Graph inputs, plugin node count and precision of an ONNX file (weights are not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        inputs[value.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    precision = file_precision(model)
    plugins = sum(1 for node in model.graph.node if node.op_type == PLUGIN_NAME)
    return OnnxSummary(inputs, plugins, precision)


def _gpu_name() -> str:
    import torch

    if not torch.cuda.is_available():
        return "unknown (torch sees no CUDA device)"
    major, minor = torch.cuda.get_device_capability(0)
    return f"{torch.cuda.get_device_name(0)} (sm_{major}{minor})"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _network_flags(trt) -> int:
    """Strongly typed network: a creation flag up to TensorRT 10, always on (flag deprecated) from 11."""
    if int(trt.__version__.split(".")[0]) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def plan_profiles(summary: OnnxSummary, config: BuildConfig) -> tuple[list[InputProfile], list[str]]:
    """The optimization profile of each input and notes on how it was chosen, without TensorRT.

    The config's shapes when given; else, for a file whose only dynamic dim is the batch, batch 1 to
    ``config.max_batch`` (opt = max) at its fixed dims, with a note saying so. Raises ValueError
    (from :func:`exporter.shapes.resolve_profiles`) naming the input and what to give.
    """
    notes = []
    low, opt, high = config.min_shapes, config.opt_shapes, config.max_shapes
    if not config.shapes_given:
        derived = default_shapes(summary.inputs, config.max_batch)
        if derived is not None:
            low, opt, high = derived
            notes.append(f"dynamic batch: profile batch 1 to {config.max_batch} (opt {config.max_batch}) at the "
                         f"file's fixed dims, from max_batch; give min/opt/max shapes for another range")
    profiles = resolve_profiles(summary.inputs, parse_shapes(low), parse_shapes(opt), parse_shapes(high))
    return profiles, notes


def build_engine(onnx_path, plan_path, config: BuildConfig | None = None, **options) -> BuildReport:
    """Build a serialized TensorRT engine from ``onnx_path`` and write it to ``plan_path`` plus a sidecar.

    ``config`` (default ``BuildConfig()``) holds the options; keyword ``options`` replace its fields
    (``build_engine(src, dst, opt_shapes="1x3x224x224")``). The profile comes from
    :func:`plan_profiles`. ``plugin_library`` defaults to :func:`plugins.find_library`'s search when
    the model has plugin nodes. ``tf32`` is off by default, so an fp32 engine computes what PyTorch's
    fp32 reference and ``compare --backends trt`` (Polygraphy's runner builds with TF32 off) compute;
    TensorRT itself enables it by default. Raises RuntimeError (TensorRT missing, parse or build
    failure), ValueError (bad shapes or options), FileNotFoundError (missing ONNX file or plugin library).
    """
    config = replace(config or BuildConfig(), **options)
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist")
    # Everything that can be checked without TensorRT is checked first: a wrong profile is refused
    # with its reason on any machine, before the (heavy) import.
    summary = summarize_onnx(onnx_path)
    profiles, profile_notes = plan_profiles(summary, config)
    plugin_library, workspace_mb, timing_cache = config.plugin_library, config.workspace_mb, config.timing_cache
    aliased_plugin_io, embed_plugin, tf32 = config.aliased_plugin_io, config.embed_plugin, config.tf32
    verbose = config.verbose
    trt = import_tensorrt()
    library = None
    if summary.plugin_nodes or plugin_library is not None:
        library = load_library(plugin_library)

    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_path}:\n  {errors}")
    config = builder.create_builder_config()
    if tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if any(p.dynamic for p in profiles):
        profile = builder.create_optimization_profile()
        for p in profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    embedded = library is not None and embed_plugin
    if embedded:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        config.plugins_to_serialize = [str(library)]
    if aliased_plugin_io:
        config.set_preview_feature(trt.PreviewFeature.ALIASED_PLUGIN_IO_10_03, True)
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    if cache_path is not None:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))

    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    report = BuildReport(
        plan=str(plan_path), onnx=str(onnx_path), onnx_sha256=_sha256(onnx_path), tensorrt_version=trt.__version__,
        gpu=_gpu_name(), precision=summary.precision, strongly_typed=True, tf32=tf32,
        inputs=[{"name": p.name, "min": list(p.min), "opt": list(p.opt), "max": list(p.max)} for p in profiles],
        outputs=[{"name": t.name, "shape": list(t.shape), "dtype": str(t.dtype)} for t in outputs],
        plugin_library=None if library is None else str(library), plugin_nodes=summary.plugin_nodes,
        plugin_embedded=embedded, version_compatible=embedded,
        aliased_plugin_io=aliased_plugin_io, workspace_mb=workspace_mb,
        timing_cache=None if cache_path is None else str(cache_path), plan_bytes=plan_path.stat().st_size,
        build_seconds=time.perf_counter() - start,
    )
    report.notes.extend(profile_notes)
    if embedded:
        report.notes.append("version-compatible plan with the plugin library inside: deserialize with "
                            "runtime.engine_host_code_allowed = True")
    elif library is not None:
        report.notes.append(f"load {library} (plugins.load_library) before deserializing this plan")
    sidecar_path(plan_path).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
