"""Triton model repositories for scale-out, and ``rfconv-deploy triton``.

Layout written::

    DIR/NAME/config.pbtxt
    DIR/NAME/1/model.onnx   (onnxruntime backend, TensorRT or CUDA execution accelerator)
    DIR/NAME/1/model.plan   (tensorrt backend; the RFConv plugin library must be preloaded)
    DIR/NAME/librfconv_trt_plugin.so   (plans given plugin_lib: the library travels with the repository)

The config is a ``ModelConfig`` message of Triton's own schema (``model_config.proto``, shipped
as ``tritonclient.grpc.model_config_pb2``), serialized with protobuf's text format. A model whose
inputs and outputs all have a dynamic first dimension gets ``max_batch_size`` and dynamic
batching, its ``dims`` then leaving out the batch; any other model gets ``max_batch_size: 0`` and
full dims. A plan's tensors are read from the ONNX it was built from (``--onnx``, by default the
``.onnx`` beside it); without one, the config leaves them out and Triton completes them from the
engine when it loads it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from exporter.backends.ort import tensorrt_ep_options
from exporter.serving.datatypes import triton_type
from exporter.serving.model_io import graph_summary, onnx_io
from exporter.serving.session import (
    TensorSpec,
    existing_file,
    leading_dims_dynamic,
    missing_profile_note,
    served_profiles,
)
from exporter.shapes import InputProfile
from exporter.trt.sidecar import read_sidecar

ONNX_SUFFIXES = (".onnx",)
PLAN_SUFFIXES = (".plan", ".engine")
MODEL_VERSION = "1"
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a directory name: no separators, no leading dot
TRT_WORKSPACE_BYTES = 1 << 30


def model_config_pb2():
    """Triton's model-config protobuf module, or RuntimeError saying what to install."""
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError):
        raise RuntimeError(
            "writing a Triton config needs Triton's model-config protobuf from tritonclient's grpc part: "
            "pip install 'tritonclient[grpc]'"
        ) from None
    return model_config_pb2


def _external_data_files(path: Path) -> list[str]:
    """Relative paths of the external-data files an ONNX model's initializers point at.

    Each must name a regular file inside the model's own folder (``weights.bin``, ``w/weights.bin``):
    ValueError for an absolute path, ``..``, an empty or NUL-carrying name, or a missing file, so
    that nothing is read from, or written to, anywhere else.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    files = {
        entry.value
        for tensor in model.graph.initializer if uses_external_data(tensor)
        for entry in tensor.external_data if entry.key == "location"
    }
    folder = path.parent.resolve()
    for location in files:
        parts = PurePosixPath(location).parts
        inside = (
            bool(parts) and "\x00" not in location and "\\" not in location
            and not PurePosixPath(location).is_absolute() and all(p not in (".", "..") for p in parts)
            and (folder / location).resolve().is_relative_to(folder)
        )
        if not inside:
            raise ValueError(
                f"{path.name}: external data location {location!r} is not a file name inside the "
                f"model's folder {folder}; refusing to read or copy it"
            )
        if not (folder / location).is_file():
            raise ValueError(f"{path.name}: external data file {folder / location} does not exist")
    return sorted(files)


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
    instance_kind: str = "gpu",
    queue_policy: tuple[int, int] | None = None,
    int8: bool = False,
    profiles: tuple[InputProfile, ...] = (),
):
    """A Triton ``ModelConfig`` message: the one description of a model, written to ``config.pbtxt``
    by :func:`write_repository` and answered by ``serve`` (``/v2/models/NAME/config``, gRPC ``ModelConfig``).

    ``inputs``/``outputs`` None leaves them for Triton to complete (plans only). ``accelerator``
    (ONNX only): ``tensorrt`` puts ONNX Runtime's TensorRT EP first, ``cuda`` leaves the CUDA EP.
    ``instance_kind``: ``gpu`` or ``cpu`` (``KIND_GPU`` / ``KIND_CPU``). ``queue_policy``
    ``(max_queue_size, timeout_us)``, for batched models: the dynamic batcher's default queue
    policy, rejecting past either bound and letting a request's own timeout shorten the wait.
    ``int8`` (a Q/DQ file) sets the TensorRT accelerator's ``precision_mode INT8``. The accelerator
    gets the EP's optimization profile (:func:`~.session.tensorrt_ep_options`): ``profiles``
    (:func:`~.session.served_profiles`) when given, else for a batched file with fixed other dims
    batches of 1 to ``max_batch``.
    """
    pb = model_config_pb2()
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
    kinds = {"gpu": pb.ModelInstanceGroup.KIND_GPU, "cpu": pb.ModelInstanceGroup.KIND_CPU}
    if instance_kind not in kinds:
        raise ValueError(f"instance_kind {instance_kind!r} is not one of {', '.join(kinds)}")
    config.instance_group.add(kind=kinds[instance_kind], count=1)
    if not plan and accelerator == "tensorrt":
        trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        half = any(spec.datatype == "FP16" for spec in inputs or [])
        # a Q/DQ (int8) file: ONNX Runtime's TensorRT EP builds its Q/DQ layers only with int8 on
        trt.parameters["precision_mode"] = "INT8" if int8 else "FP16" if half else "FP32"
        trt.parameters["max_workspace_size_bytes"] = str(TRT_WORKSPACE_BYTES)
        if inputs and (batches or profiles):  # one engine for every batch (and size) served, as serve's
            profile = tensorrt_ep_options(inputs, max_batch, profiles)  # its profile entries (one definition)
            trt.parameters.update({k: v for k, v in profile.items() if k.startswith("trt_profile_")})
    elif not plan and accelerator != "cuda":
        raise ValueError(f"accelerator {accelerator!r} is not one of tensorrt, cuda")
    return config


def plugin_instructions(repo: Path, plugin_lib: Path | None, version_compatible: bool | None) -> list[str]:
    """How to start Triton so that a plan's RFConvRectify plugin is there when the plan loads.

    ``version_compatible`` comes from the plan's sidecar (see :mod:`exporter.trt.sidecar`): such a
    plan carries the plugin library inside and loads only with the TensorRT backend's
    ``version-compatible=true`` (Triton then calls ``setEngineHostCodeAllowed(true)``); a plain
    plan needs the library loaded first, by the backend's ``plugins=`` option or ``LD_PRELOAD``
    (the library registers its creator when it is loaded). ``None`` (no sidecar): both ways.
    """
    lib = str(plugin_lib) if plugin_lib is not None else "/path/to/librfconv_trt_plugin.so"
    embedded = [
        "This version-compatible plan carries its plugin library; start Triton with:",
        f"  tritonserver --model-repository={repo} --backend-config=tensorrt,version-compatible=true",
        "(version-compatible plans run host code from the plan file: serve only plans you built or trust)",
    ]
    plain = [
        "This TensorRT plan needs its plugin library loaded into Triton before the model loads:",
        f"  tritonserver --model-repository={repo} --backend-config=tensorrt,plugins=\"{lib}\"",
        "or, for any process:",
        f"  LD_PRELOAD={lib}:${{LD_PRELOAD}} tritonserver --model-repository={repo}",
        "Build the library against the TensorRT version of the Triton release you run.",
    ]
    if version_compatible:
        return embedded
    if version_compatible is None:
        return ["No sidecar (model.plan.json from rfconv-deploy build) says how this plan was built.",
                "If it was built with the plugin embedded (the default of build for plugin models):",
                *embedded[1:], "If it was built with --no-embed-plugin:", *plain[1:]]
    if plugin_lib is None:
        plain.insert(0, "No plugin_lib was given; if the engine uses the RFConv plugin:")
    return plain


@dataclass(frozen=True)
class TritonRepository:
    """What :func:`write_repository` wrote: paths, the config message, and notes for the user.

    For a plan, from its sidecar: ``version_compatible`` (None: no sidecar), ``plugin_nodes``
    (None: unknown) and ``tensorrt_version``; ``plugin_file`` is the plugin library's file name
    inside ``model_dir`` when one was copied there.
    """

    model_dir: Path
    config_path: Path
    model_file: Path
    config: object
    notes: list[str]
    version_compatible: bool | None = None
    plugin_nodes: int | None = None
    tensorrt_version: str | None = None
    plugin_file: str | None = None


def _plan_io(plan: Path, onnx_path: Path | None):
    if onnx_path is None:
        sibling = plan.with_suffix(".onnx")
        onnx_path = sibling if sibling.is_file() else None
    if onnx_path is None:
        return None, None, [
            f"no ONNX beside {plan.name} and no onnx_path: the config leaves inputs and outputs out "
            "and Triton completes them from the engine"
        ]
    existing_file(onnx_path, "onnx_path")
    inputs, outputs = onnx_io(onnx_path)
    return inputs, outputs, [f"inputs and outputs taken from {onnx_path}"]


def write_repository(
    model_path: str | Path,
    repo: str | Path,
    *,
    name: str | None = None,
    max_batch: int = 8,
    max_delay_us: int = 2000,
    accelerator: str = "tensorrt",
    plugin_lib: str | Path | None = None,
    onnx_path: str | Path | None = None,
    min_shapes: str | None = None,
    opt_shapes: str | None = None,
    max_shapes: str | None = None,
) -> TritonRepository:
    """Write ``repo/name/config.pbtxt`` and ``repo/name/1/model.{onnx,plan}`` (replacing them).

    ``min_shapes``/``opt_shapes``/``max_shapes`` (ONNX with the ``tensorrt`` accelerator; strings as
    for :func:`exporter.shapes.parse_shapes`) give the TensorRT EP its optimization profile
    (:func:`~.session.served_profiles`); inputs outside it then fail in the EP.
    """
    from google.protobuf import text_format

    model_path = existing_file(model_path, "model")
    repo = Path(repo).resolve()
    suffix = model_path.suffix.lower()
    if suffix not in ONNX_SUFFIXES + PLAN_SUFFIXES:
        raise ValueError(
            f"{model_path} is neither an ONNX model (.onnx) nor a TensorRT plan (.plan, .engine)"
        )
    plan = suffix in PLAN_SUFFIXES
    name = name or model_path.stem
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} is not a valid directory name")
    if max_batch < 0:
        raise ValueError(f"max_batch must be >= 0 (0 turns batching off), got {max_batch}")
    if plugin_lib is not None:
        plugin_lib = Path(plugin_lib).resolve()
        if not plan:
            raise ValueError(
                "plugin_lib applies to TensorRT plans; an ONNX model runs in the onnxruntime backend"
            )
        existing_file(plugin_lib, "plugin_lib")
        if plugin_lib.name in ("config.pbtxt", MODEL_VERSION):
            raise ValueError(f"plugin_lib {plugin_lib} has a name the repository layout uses; rename the library")
    shapes_given = any((min_shapes, opt_shapes, max_shapes))
    if shapes_given and (plan or accelerator != "tensorrt"):
        why = "a plan keeps the profile it was built with (rfconv-deploy build)" if plan else \
            "the CUDA EP takes any shape"
        raise ValueError(f"min_shapes/opt_shapes/max_shapes set the TensorRT EP's profile of an ONNX model "
                         f"(accelerator='tensorrt'); {why}")
    sidecar = read_sidecar(model_path) if plan else None
    version_compatible = None if sidecar is None else bool(sidecar.get("version_compatible"))
    int8, profiles = False, ()
    if plan:
        inputs, outputs, notes = _plan_io(model_path, Path(onnx_path) if onnx_path else None)
        notes += plugin_instructions(repo, plugin_lib, version_compatible)
    else:
        summary = graph_summary(model_path)
        inputs, outputs, int8 = summary.inputs, summary.outputs, summary.precision == "int8"
        notes = [f"start: tritonserver --model-repository={repo}"]
        profiles = served_profiles(inputs, max_batch, batched(max_batch, inputs, outputs), min_shapes, opt_shapes,
                                   max_shapes)
        if profiles:
            notes.append("the TensorRT EP's profile: " + "; ".join(
                f"{p.name} {p.range_text()}" for p in profiles if p.dynamic) + " (other shapes fail)")
        elif accelerator == "tensorrt" and (note := missing_profile_note(inputs, profiles)):
            notes.append(note)
    config = build_config(
        name, inputs, outputs, plan=plan, max_batch=max_batch, max_delay_us=max_delay_us,
        accelerator=accelerator, int8=int8, profiles=profiles,
    )

    external = [] if plan else _external_data_files(model_path)
    model_dir = repo / name
    version_dir = model_dir / MODEL_VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    model_file = version_dir / ("model.plan" if plan else "model.onnx")
    shutil.copyfile(model_path, model_file)
    for relative in external:
        (version_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_path.parent / relative, version_dir / relative)
    plugin_file = None
    if plugin_lib is not None:
        plugin_file = plugin_lib.name
        shutil.copyfile(plugin_lib, model_dir / plugin_file)
        notes.append(f"the plugin library is copied to {model_dir / plugin_file}, so the repository carries it")
    header = "".join(f"# {line}\n" for line in notes)
    config_path = model_dir / "config.pbtxt"
    config_path.write_text(header + text_format.MessageToString(config))
    plugin_nodes = None if sidecar is None or "plugin_nodes" not in sidecar else int(sidecar["plugin_nodes"])
    return TritonRepository(
        model_dir, config_path, model_file, config, notes, version_compatible, plugin_nodes,
        None if sidecar is None else sidecar.get("tensorrt_version"), plugin_file,
    )


def read_config(path: str | Path):
    """Parse a ``config.pbtxt`` back into Triton's ``ModelConfig`` (ParseError when it does not fit)."""
    from google.protobuf import text_format

    return text_format.Parse(Path(path).read_text(), model_config_pb2().ModelConfig())
