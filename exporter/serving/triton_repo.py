"""Triton model repositories for scale-out, and ``rfconv-deploy triton``.

Layout written::

    DIR/NAME/config.pbtxt
    DIR/NAME/1/model.onnx   (onnxruntime backend: TensorRT or CUDA execution accelerator, or CPU instances)
    DIR/NAME/1/model.plan   (tensorrt backend; the RFConv plugin library must be preloaded)
    DIR/NAME/1/model.plan.json   (a plan's build sidecar, when it has one: its profile and plugin embedding)
    DIR/NAME/librfconv_trt_plugin.so   (plans given plugin_lib: the library travels with the repository)

The config is a ``ModelConfig`` message of Triton's own schema (``model_config.proto``, shipped
as ``tritonclient.grpc.model_config_pb2``), serialized with protobuf's text format. A model whose
inputs and outputs all have a dynamic first dimension gets ``max_batch_size`` and dynamic
batching, its ``dims`` then leaving out the batch; any other model gets ``max_batch_size: 0`` and
full dims. A plan's tensors are read from the ONNX it was built from (``--onnx``, by default the
``.onnx`` beside it); without one, the config leaves them out and Triton completes them from the
engine when it loads it. The config itself is built by :mod:`.model_config` (shared with
``serve``'s ``/v2/models/NAME/config``); every repository written is checked by
:mod:`.triton_check` before the writer returns.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from exporter.serving.model_config import (  # noqa: F401 - re-exported: the writer's config builder
    ACCELERATORS,
    CPU_ACCELERATORS,
    TRT_WORKSPACE_BYTES,
    batched,
    build_config,
    config_text,
    model_config_pb2,
    parse_config,
)
from exporter.serving.model_io import graph_summary, onnx_io
from exporter.serving.session import existing_file, missing_profile_note, served_profiles
from exporter.serving.triton_check import SIDECAR, CheckReport, check_repository, plugin_nodes
from exporter.trt.sidecar import read_sidecar, sidecar_path
from plugins.library import AUTOREG_NAME, LIBRARY_NAME, autoreg_library

ONNX_SUFFIXES = (".onnx",)
PLAN_SUFFIXES = (".plan", ".engine")
MODEL_VERSION = "1"
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a directory name: no separators, no leading dot
ONNX_FILE, PLAN_FILE = "model.onnx", "model.plan"


def _external_data_files(path: Path, model) -> list[str]:
    """Relative paths of the external-data files the initializers of ``model`` (loaded from ``path``
    without its external data) point at.

    Each must name a regular file inside the model's own folder (``weights.bin``, ``w/weights.bin``):
    ValueError for an absolute path, ``..``, an empty or NUL-carrying name, or a missing file, so
    that nothing is read from, or written to, anywhere else; and for a name that the repository
    gives the model itself (``model.onnx``), which the copy would overwrite.
    """
    from onnx.external_data_helper import uses_external_data

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
        if parts[0] == ONNX_FILE:
            raise ValueError(
                f"{path.name}: external data file {location!r} has the name the repository gives the model "
                f"({MODEL_VERSION}/{ONNX_FILE}); re-save the model with another location (onnx.save_model(..., "
                "location='model.weights'))"
            )
        if not (folder / location).is_file():
            raise ValueError(f"{path.name}: external data file {folder / location} does not exist")
    return sorted(files)


def plan_batch_limit(sidecar: dict | None, max_batch: int, batching: bool) -> tuple[int, list[str]]:
    """The ``max_batch_size`` a plan is served with, and notes: the smaller of ``max_batch`` and the
    largest batch of the engine's profile (from its build sidecar, :mod:`exporter.trt.sidecar`).

    ValueError when ``batching`` and the profile's smallest batch is not 1 (Triton sends batches of
    1 and up): rebuild with ``--min-shape`` of batch 1. Without a sidecar, ``max_batch`` as asked.
    """
    if not batching:
        return max_batch, []
    profiles = [] if sidecar is None else sidecar.get("inputs") or []
    if not profiles:
        return max_batch, ["no build sidecar gives the engine's profile: Triton refuses the model if the engine "
                           f"runs batches of fewer than max_batch={max_batch} rows"]
    try:
        low = max(int(p["min"][0]) for p in profiles)
        high = min(int(p["max"][0]) for p in profiles)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"the plan's sidecar has no min/max shapes per input: {err}") from err
    if low != 1:
        raise ValueError(
            f"the engine's profile runs batches of {low} to {high}, but Triton sends batches of 1 and up (a single "
            f"request is one row): rebuild it with rfconv-deploy build --min-shape of batch 1, or write the "
            "repository with max_batch=0 (no batching)"
        )
    if high < max_batch:
        return high, [f"max_batch_size {high}: the engine's profile runs batches of at most {high} "
                      f"(max_batch={max_batch} asked)"]
    return max_batch, []


def plugin_instructions(repo: Path, plugin_lib: Path | None, version_compatible: bool | None) -> list[str]:
    """How to start Triton so that a plan's RFConvRectify plugin is there when the plan loads.

    ``version_compatible`` comes from the plan's sidecar (see :mod:`exporter.trt.sidecar`): such a
    plan carries the plugin library inside and loads only with the TensorRT backend's
    ``version-compatible=true`` (Triton then calls ``setEngineHostCodeAllowed(true)``); a plain
    plan needs the library loaded first, by the backend's ``plugins=`` option or ``LD_PRELOAD``
    (the autoregistration library ``plugin_lib`` registers the creators when it is loaded). ``None``
    (no sidecar): both ways.
    """
    lib = str(plugin_lib) if plugin_lib is not None else f"/path/to/{AUTOREG_NAME}"
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
    inside ``model_dir`` when one was copied there. ``accelerator`` is what the model runs on
    (``cpu``: CPU instances); ``check`` what :func:`~.triton_check.check_repository` found.
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
    accelerator: str = "tensorrt"
    check: CheckReport | None = None


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


def _refuse_links(repo: Path, path: Path) -> None:
    """ValueError unless ``path`` lies lexically inside ``repo`` and no part of it below ``repo`` is a symlink."""
    try:
        relative = path.relative_to(repo)
    except ValueError as err:
        raise ValueError(f"refusing to write {path}: it is outside the repository {repo}") from err
    current = repo
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            raise ValueError(f"refusing to write through the symlink {current} (-> {os.readlink(current)}) inside "
                             f"the repository {repo}: remove it, or pick another repository")


def _make_dirs(repo: Path, folder: Path) -> None:
    _refuse_links(repo, folder)
    current = repo
    repo.mkdir(parents=True, exist_ok=True)
    for part in folder.relative_to(repo).parts:
        current = current / part
        try:
            current.mkdir()
        except FileExistsError:
            pass
        if current.is_symlink() or not current.is_dir():
            raise ValueError(f"refusing to write into {current}: not a plain directory")


def _write_file(repo: Path, target: Path, data: bytes | None = None, source: Path | None = None) -> None:
    """Write ``data`` (or ``source``'s bytes) to ``target``: a new file renamed over the old entry, so
    that neither a symlink nor a hard link at ``target`` is written through."""
    _make_dirs(repo, target.parent)
    _refuse_links(repo, target)
    if target.is_dir():
        raise ValueError(f"refusing to write {target}: it is a directory")
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            else:
                out.write(data or b"")
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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
    """Write ``repo/name/config.pbtxt`` and ``repo/name/1/model.{onnx,plan}`` (replacing them), then
    check the model as Triton would load it (:func:`~.triton_check.check_repository`).

    ``accelerator``: ``tensorrt`` (ONNX Runtime's TensorRT EP, for ONNX models), ``cuda`` or ``cpu``
    (``KIND_CPU`` instances, ONNX models only). ``min_shapes``/``opt_shapes``/``max_shapes`` (ONNX
    with the ``tensorrt`` accelerator; strings as for :func:`exporter.shapes.parse_shapes`) give the
    TensorRT EP its optimization profile (:func:`~.session.served_profiles`). A plan's
    ``max_batch_size`` is the smaller of ``max_batch`` and its profile's largest batch
    (:func:`plan_batch_limit`); its build sidecar is copied to ``1/model.plan.json``.

    Every file is written inside the resolved ``repo``, never through a symlink below it. Raises
    ValueError for a plugin-mode ONNX (RFConvRectify nodes: ONNX Runtime cannot run them), a path
    that would leave ``repo``, bad options, or a written repository that fails the check.
    """
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
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator {accelerator!r} is not one of {', '.join(ACCELERATORS)}")
    if plan and accelerator in CPU_ACCELERATORS:
        raise ValueError(f"a TensorRT plan runs on a GPU only; accelerator={accelerator!r} is for ONNX models")
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
            f"the {'CUDA EP' if accelerator == 'cuda' else 'CPU'} takes any shape"
        raise ValueError(f"min_shapes/opt_shapes/max_shapes set the TensorRT EP's profile of an ONNX model "
                         f"(accelerator='tensorrt'); {why}")
    sidecar = read_sidecar(model_path) if plan else None
    version_compatible = None if sidecar is None else bool(sidecar.get("version_compatible"))
    precision, profiles, external = "fp32", (), []
    if plan:
        inputs, outputs, notes = _plan_io(model_path, Path(onnx_path) if onnx_path else None)
        max_batch, batch_notes = plan_batch_limit(sidecar, max_batch, batched(max_batch, inputs, outputs))
        carried = None if plugin_lib is None else repo / name / AUTOREG_NAME
        notes += batch_notes + plugin_instructions(repo, carried, version_compatible)
    else:
        import onnx

        model = onnx.load(str(model_path), load_external_data=False)
        if count := plugin_nodes(model):
            raise ValueError(
                f"{model_path} is a plugin-mode export ({count} RFConvRectify nodes): ONNX Runtime, and so Triton's "
                "onnxruntime backend, cannot run it (its TensorRT EP takes TensorRT plugins only as custom ops of "
                "domain trt.plugins). Build a TensorRT plan from it (rfconv-deploy build) and write the repository "
                "from the plan, or export the Conv->Mul form (rfconv-deploy export --mode static)"
            )
        external = _external_data_files(model_path, model)
        summary = graph_summary(model_path)
        inputs, outputs, precision = summary.inputs, summary.outputs, summary.precision
        notes = [f"start: tritonserver --model-repository={repo}"]
        if accelerator == "tensorrt":
            profiles = served_profiles(inputs, max_batch, batched(max_batch, inputs, outputs), min_shapes,
                                       opt_shapes, max_shapes)
            if profiles:
                notes.append("the TensorRT EP's profile: " + "; ".join(
                    f"{p.name} {p.range_text()}" for p in profiles if p.dynamic) + " (other shapes fail)")
            elif note := missing_profile_note(inputs, profiles):
                notes.append(note)
        if accelerator == "cpu":
            notes.append("CPU instances (KIND_CPU): ONNX Runtime's CPU execution provider, no GPU")
        if accelerator == "openvino":
            notes.append("CPU instances (KIND_CPU) with the OpenVINO CPU execution accelerator (ONNX Runtime's "
                         "OpenVINO EP): needs a Triton whose onnxruntime backend is built with OpenVINO "
                         "(TRITON_ENABLE_ONNXRUNTIME_OPENVINO), no GPU")
    config = build_config(
        name, inputs, outputs, plan=plan, max_batch=max_batch, max_delay_us=max_delay_us,
        accelerator=accelerator, precision=precision, profiles=profiles,
    )

    model_dir = repo / name
    version_dir = model_dir / MODEL_VERSION
    model_file = version_dir / (PLAN_FILE if plan else ONNX_FILE)
    config_path = model_dir / "config.pbtxt"
    copies = [(model_file, model_path)]
    copies += [(version_dir / relative, model_path.parent / relative) for relative in external]
    if plan and sidecar is not None:
        copies.append((version_dir / SIDECAR, sidecar_path(model_path)))
    plugin_file = None
    if plugin_lib is not None:
        # Triton's plugins= and LD_PRELOAD only dlopen the file: they take the autoregistration library,
        # which loads the plugin library from its own folder (trt_plugin_src/README.md, Loading)
        autoreg = plugin_lib if plugin_lib.name == AUTOREG_NAME else autoreg_library(plugin_lib)
        library = autoreg.with_name(LIBRARY_NAME)
        existing_file(library, "plugin_lib's plugin library beside the autoregistration library")
        plugin_file = AUTOREG_NAME
        copies += [(model_dir / LIBRARY_NAME, library), (model_dir / AUTOREG_NAME, autoreg)]
        notes.append(f"the plugin library and its autoregistration library are copied to {model_dir}, so the "
                     f"repository carries them; Triton loads {AUTOREG_NAME}")
    for target in [config_path, *(t for t, _ in copies)]:  # refuse before anything is written
        _refuse_links(repo, target)
    for target, source in copies:
        _write_file(repo, target, source=source)
    header = "".join(f"# {line}\n" for line in notes)
    _write_file(repo, config_path, (header + config_text(config)).encode())
    report = check_repository(repo, [name])
    report.raise_for_failures()
    plugin_nodes_count = None if sidecar is None or "plugin_nodes" not in sidecar else int(sidecar["plugin_nodes"])
    return TritonRepository(
        model_dir, config_path, model_file, config, notes, version_compatible, plugin_nodes_count,
        None if sidecar is None else sidecar.get("tensorrt_version"), plugin_file, accelerator, report,
    )


def read_config(path: str | Path):
    """Parse a ``config.pbtxt`` back into Triton's ``ModelConfig`` (ValueError when it does not fit)."""
    return parse_config(Path(path).read_text(), str(path))
