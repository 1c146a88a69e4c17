"""The plan of a comparison: what is compared, at which sizes, under which verdict, on which backends.

:func:`make_plan` reads the file, checks that every backend named in the config can run here
(before any work), picks the verdict (:mod:`exporter.comparison.verdicts`), the input shapes and
the rectified layers with their PyTorch references. Raises ``ValueError`` for a file that is
missing or not ONNX, a named backend that cannot run here, and sizes that do not fit the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from polygraphy.backend.onnx import util as onnx_util
from polygraphy.common import TensorMetadata

from exporter.backends.runners import BackendSkipped, RunnerOptions, feed_to_tensors, make_runner, torch_input_metadata
from exporter.comparison.available import check_named
from exporter.comparison.config import CompareConfig
from exporter.comparison.defaults import DEFAULT_TOLERANCE, FLOOR_EPS, INT8_VERDICT, check_sizes, tolerance_precision
from exporter.comparison.layered_file import uses_external_data, write_layered
from exporter.comparison.layerwise import LayerMatchError, RectifiedLayer, find_rectified_layers, with_layer_outputs
from exporter.comparison.modules import LayerReference, layer_taps
from exporter.comparison.verdicts import BF16_FLOOR, FP16_FLOOR, Int8Verdict, NoiseFloorVerdict, ToleranceVerdict
from exporter.onnx.feeds import load_feeds, resolve_input_metadata
from exporter.onnx.precision import file_precision as onnx_file_precision


@dataclass
class Plan:
    """Everything decided before the first backend runs.

    ``verdict`` judges each size (it falls back to a :class:`ToleranceVerdict` at a size where a
    PyTorch reference failed); ``verdict_note`` says why it is not the one asked for.
    ``shapes`` are the full input shapes (``None``: the file's own). ``layers`` are the file's
    rectified convs (empty when not checked), ``references`` their PyTorch side (``None`` when
    PyTorch does not run) and ``layer_status`` why not, or ``"ran"``.
    """

    config: CompareConfig
    onnx_path: Path
    onnx_model: onnx.ModelProto
    serialized: bytes
    external: bool
    torch_model: torch.nn.Module | None
    file_precision: str
    precision: str
    rtol: float
    user_tolerance: bool
    verdict: ToleranceVerdict | NoiseFloorVerdict | Int8Verdict
    verdict_note: str
    backends: tuple[str, ...]
    options: RunnerOptions
    shapes: list[tuple[int, ...] | None]
    layers: list[RectifiedLayer] = field(default_factory=list)
    references: list[LayerReference] | None = None
    layer_status: str = "ran"

    @property
    def outputs(self) -> list[str]:
        return [out.name for out in self.onnx_model.graph.output]

    def taps(self):
        """The PyTorch taps of the layers whose tensor is not a model output already."""
        outputs = set(self.outputs)
        return [ref.tap for ref in self.references or [] if ref.tap.output_name not in outputs]

    def runnable(self, workdir: Path) -> tuple[Path, onnx.ModelProto]:
        """(path, model) the backends run: the file itself, or with the layers as extra outputs
        written into ``workdir``."""
        if not self.layers:
            return self.onnx_path, self.onnx_model
        run_model = with_layer_outputs(self.onnx_model, self.layers)
        return write_layered(self.onnx_path, self.serialized, self.onnx_model, run_model, workdir, self.backends,
                             self.external), run_model


def _read(onnx_path: Path) -> tuple[bytes, onnx.ModelProto, bool]:
    if not onnx_path.is_file():
        raise ValueError(f"ONNX model {onnx_path} does not exist")
    try:
        serialized = onnx_path.read_bytes()
        onnx_model = onnx.load_from_string(serialized)
        external = uses_external_data(onnx_model)
        if external:
            onnx.external_data_helper.load_external_data_for_model(onnx_model, str(onnx_path.parent))
    except Exception as err:  # noqa: BLE001 - protobuf raises assorted errors for non-ONNX files
        raise ValueError(f"cannot read {onnx_path} as an ONNX model: {err}") from err
    return serialized, onnx_model, external


def _check_runnable(backends, onnx_path: Path, onnx_model, options: RunnerOptions, torch_model) -> None:
    """``ValueError`` for a named backend that cannot run this file here (a custom op it lacks,
    the plugin library missing, a precision it cannot build)."""
    missing = []
    for name in backends:
        try:
            make_runner(name, str(onnx_path), onnx_model, options, torch_model)
        except BackendSkipped as why:
            missing.append(f"backend {name!r} cannot run here: {why}")
    if missing:
        raise ValueError("; ".join(missing))


def _choose_verdict(config: CompareConfig, file_precision: str, precision: str, rtol: float, user_tolerance: bool,
                    pytorch_runs: bool):
    mode, note = config.verdict, ""
    if file_precision == "int8" and mode == "noise-floor":
        mode = "int8"
    if mode == "int8":
        note = (f"cosine >= {INT8_VERDICT['min_cosine']}, |err| <= {INT8_VERDICT['max_scaled_error']} x "
                f"max|ref|, top-1 >= {INT8_VERDICT['min_top1']:.0%} of decided rows, against fp32 PyTorch")
        if not pytorch_runs:
            mode, note = "tolerance", "the int8 verdict needs the PyTorch model and the torch backend"
    if mode == "noise-floor" and not pytorch_runs:
        mode, note = "tolerance", "noise-floor needs the PyTorch model and the torch backend"
    if mode == "int8":
        return Int8Verdict(verbose=config.verbose), note
    if mode == "noise-floor":
        floor_precision = precision if precision in ("fp32", "bf16") else "fp16"
        floor_runner = {"fp32": "torch", "fp16": FP16_FLOOR, "bf16": BF16_FLOOR}[floor_precision]
        return NoiseFloorVerdict(config.floor_multiple, floor_runner,
                                 FLOOR_EPS[floor_precision], config.atol, rtol, user_tolerance,
                                 config.verbose), note
    return ToleranceVerdict(config.atol, rtol, config.verbose), note


def _dynamic_hw(metadata: TensorMetadata) -> bool:
    """True when the (single) input is ``[N, C, H, W]`` with H or W not fixed in the file."""
    if len(metadata) != 1:
        return False
    shape = list(next(iter(metadata.values())).shape)
    return len(shape) == 4 and any(not (isinstance(d, int) and d >= 0) for d in shape[2:])


def sizes_to_check(onnx_model, input_shape, sizes) -> list[tuple[int, ...] | None]:
    """Full input shapes to compare at: ``None`` is the file's own (static) shape."""
    declared = onnx_util.get_input_metadata(onnx_model.graph)
    sized = {name: [i for i, d in enumerate(meta.shape) if i and not (isinstance(d, int) and d >= 0)]
             for name, meta in declared.items()}
    if len(declared) > 1 and any(sized.values()):
        dims = "; ".join(f"{name!r} {list(declared[name].shape)}" for name, dynamic in sized.items() if dynamic)
        raise ValueError(
            f"compare takes a file with several inputs at its declared sizes (a dynamic batch is fine), but "
            f"{dims} have dynamic dimensions past the batch: compare an export of the model with static H/W "
            "(export's own check already ran the dynamic file on ONNX Runtime against PyTorch at other sizes)"
        )
    if not _dynamic_hw(declared):
        if sizes:
            raise ValueError("sizes applies to files with dynamic H/W; this file's input size is fixed")
        return [tuple(input_shape) if input_shape else None]
    if input_shape is None:
        raise ValueError(
            "the file has dynamic H/W: pass input_shape with concrete sizes, e.g. input_shape=(1, 3, 224, 224) "
            f"(it is then also checked at the sizes of check_sizes, e.g. {check_sizes((224, 224))})"
        )
    n, c = input_shape[0], input_shape[1]
    hws = [tuple(hw) for hw in sizes] if sizes else check_sizes(tuple(input_shape[2:]))
    return [(n, c, *hw) for hw in hws]


def _layer_plan(plan: Plan) -> None:
    """Fill ``plan.layers``, ``plan.references`` and ``plan.layer_status``."""
    config = plan.config
    if config.outputs_only:
        plan.layer_status = "not requested (outputs only)"
        return
    layers = find_rectified_layers(plan.onnx_model)
    if not layers:
        plan.layer_status = "no rectified conv (Conv -> scale Mul, or RFConvRectify) in the ONNX graph"
        return
    plan.layers = layers
    if plan.torch_model is None or "torch" not in plan.backends:
        return
    metadata = resolve_input_metadata(plan.onnx_model, config.batch_size, plan.shapes[0])
    first = feed_to_tensors(load_feeds(config.inputs, metadata, 1, config.seed)[0],
                            torch_input_metadata(metadata, plan.torch_model))
    try:
        plan.references = layer_taps(layers, plan.onnx_model, plan.torch_model, first)
    except LayerMatchError as err:
        plan.layers, plan.layer_status = [], f"cannot match ONNX layers to PyTorch modules: {err}"


def make_plan(onnx_path: str | os.PathLike, torch_model: torch.nn.Module | None, config: CompareConfig) -> Plan:
    """The :class:`Plan` of comparing the file at ``onnx_path`` with ``torch_model`` (or None) by ``config``."""
    backends = config.backend_names
    if config.backends_named:
        check_named(backends, torch_model=torch_model is not None, torch_device=config.torch_device)
    onnx_path = Path(onnx_path)
    serialized, onnx_model, external = _read(onnx_path)
    file_precision = onnx_file_precision(onnx_model)
    precision = config.precision or tolerance_precision(file_precision)
    options = RunnerOptions(precision, file_precision, config.torch_device, config.plugin_library)
    if config.backends_named:
        _check_runnable(backends, onnx_path, onnx_model, options, torch_model)
    user_tolerance = config.rtol is not None or config.atol is not None
    rtol = DEFAULT_TOLERANCE[precision] if config.rtol is None else config.rtol
    verdict, note = _choose_verdict(config, file_precision, precision, rtol, user_tolerance,
                                    torch_model is not None and "torch" in backends)
    plan = Plan(config, onnx_path, onnx_model, serialized, external, torch_model, file_precision, precision, rtol,
                user_tolerance, verdict, note, backends, options,
                sizes_to_check(onnx_model, config.input_shape, config.sizes))
    _layer_plan(plan)
    return plan
