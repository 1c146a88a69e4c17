"""ONNX export: rectified convs as ``Conv -> Mul(scale)``, folded and checked.

:func:`export_onnx` captures the model with ``torch.onnx.export(dynamo=True)``, runs the
onnx-graphsurgeon passes of :mod:`exporter.onnx.passes` (fold the traced factor to constants, give
them the contract shape ``[1, 1, Ho, Wo]``, store each distinct factor once, fold BatchNorm,
optionally convert to fp16; the order is :func:`exporter.onnx.passes.pipeline.run_passes`), writes
the file, and checks it with ``onnx.checker`` (full check) and ONNX shape inference.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from exporter import __version__
from exporter.onnx import verify
from exporter.onnx.files import output_file_problem
from exporter.onnx.options import MIN_OPSET, ExportConfig
from exporter.onnx.passes import plugin_mode
from exporter.onnx.passes.pipeline import run_passes
from exporter.onnx.passes.rectified import find_rectified_convs

INPUT_NAME = "input"
MODE_NAMES = {"static": "Conv->Mul", "plugin": "RFConvRectify plugin"}
"""How the summary names each ``mode``: what a rectified conv becomes in the file."""
# Constants this small (shape vectors) may still be folded when scales are kept compact.
SHAPE_SIZE_LIMIT = 8
# A protobuf file cannot exceed 2 GiB; larger models keep their weights in a side file.
EXTERNAL_DATA_BYTES = 1_800_000_000


class ExportError(ValueError):
    """The model or the settings cannot be exported; the message says what to change."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote. Sizes in bytes, times in seconds."""

    path: Path
    nodes_by_type: dict[str, int]
    rectified_convs: int
    distinct_scales: int
    batchnorms_left: int
    file_bytes: int
    seconds: float
    opset: int
    precision: str
    mode: str
    input_shapes: dict  # input name -> shape (ints, or names of dynamic dims), in argument order
    output_shapes: list
    dynamic_hw: bool = False  # some input has dynamic height and width
    notices: list[str] = field(default_factory=list)
    # input name -> {axis: (lower, upper)} torch.export kept (rows or pixels), see exporter.onnx.verify
    dynamic_ranges: dict = field(default_factory=dict)
    # {"shape" (the first input's), "inputs" (every input's), "rel_err"} at sizes other than the example's
    verified: list[dict] = field(default_factory=list)

    @property
    def input_shape(self) -> list:
        """The first input's shape (the image, for a one-input model)."""
        return next(iter(self.input_shapes.values()))

    def summary(self) -> str:
        """A few lines for people: file, shapes, rectified convs, node counts, size and time."""
        nodes = ", ".join(f"{op} {n}" for op, n in sorted(self.nodes_by_type.items(), key=lambda kv: -kv[1]))
        outputs = " ".join(str(s) for s in self.output_shapes)
        if len(self.input_shapes) == 1:
            inputs = f"input {self.input_shape}"
        else:
            inputs = "inputs " + ", ".join(f"{name} {shape}" for name, shape in self.input_shapes.items())
        lines = [
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, opset {self.opset}, {self.precision}, "
            f"{MODE_NAMES[self.mode]} mode, {'dynamic' if self.dynamic_hw else 'static'} H/W) in {self.seconds:.1f} s",
            f"  {inputs} -> output {outputs}",
            f"  rectified convs: {self.rectified_convs}"
            + (f" ({self.distinct_scales} distinct scale constants)" if self.distinct_scales else "")
            + f", BatchNormalization left: {self.batchnorms_left}",
            f"  nodes ({sum(self.nodes_by_type.values())}): {nodes}",
        ]
        if any(self.dynamic_ranges.values()):
            ranges = "; ".join(
                (f"{name}: " if len(self.dynamic_ranges) > 1 else "")
                + ", ".join(f"{axis} >= {low}" for axis, (low, _) in axes.items())
                for name, axes in self.dynamic_ranges.items() if axes)
            checked = ", ".join(f"{_sizes_text(v['inputs'])} (rel err {v['rel_err']:.1e})" for v in self.verified)
            lines.append(f"  dynamic: {ranges}; checked on ONNX Runtime against PyTorch at {checked}")
        lines += [f"  notice: {n}" for n in self.notices]
        return "\n".join(lines)


def _sizes_text(shapes: dict) -> str:
    """``2x3x17x17`` for one input, ``image 2x3x17x17 + gain 2x8`` for several."""
    if len(shapes) == 1:
        return "x".join(map(str, next(iter(shapes.values()))))
    return " + ".join(f"{name} {'x'.join(map(str, s))}" for name, s in shapes.items())


def _example_inputs(example_input, input_names) -> dict[str, torch.Tensor]:
    """The example input(s) by name, in argument order; ExportError for anything that is not a
    float tensor (one ``[N, C, H, W]`` at least) or names that do not fit."""
    examples = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if input_names is None:
        input_names = [INPUT_NAME] if len(examples) == 1 else [f"{INPUT_NAME}_{i}" for i in range(len(examples))]
    names = list(input_names)
    if len(names) != len(examples):
        raise ExportError(f"input_names has {len(names)} name(s) but there are {len(examples)} example inputs; "
                          "give one name per input, in the order forward() takes them")
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ExportError(f"input_names must be distinct, non-empty strings; got {names}")
    for name, x in zip(names, examples, strict=True):
        if not isinstance(x, torch.Tensor):
            raise ExportError(f"example input {name!r} must be a tensor; got {type(x).__name__}")
        if not x.is_floating_point():
            raise ExportError(f"example input {name!r} must be a float tensor; got {x.dtype}")
        if x.dim() == 0:
            raise ExportError(f"example input {name!r} is a scalar; give it a batch dimension ([N, ...])")
    if len(examples) == 1 and examples[0].dim() != 4:
        raise ExportError(
            f"the example input must be one NCHW image tensor [N, C, H, W]; got {tuple(examples[0].shape)}")
    if not any(x.dim() == 4 for x in examples):
        shapes = ", ".join(f"{n} {list(x.shape)}" for n, x in zip(names, examples, strict=True))
        raise ExportError(f"the example inputs must hold at least one NCHW image tensor [N, C, H, W]; got {shapes}")
    return dict(zip(names, examples, strict=True))


def _dynamic_dims(examples: dict[str, torch.Tensor], dynamic_batch: bool, dynamic_hw) -> dict[str, list[int]]:
    """Input name -> the dimensions to keep dynamic: the batch (0) of every input with
    ``dynamic_batch``; H and W (2, 3) of every ``[N, C, H, W]`` input with ``dynamic_hw=True``, or of
    the inputs it names."""
    images = [name for name, x in examples.items() if x.dim() == 4]
    if isinstance(dynamic_hw, str):
        dynamic_hw = [dynamic_hw]
    if dynamic_hw is True:
        hw = set(images)
    elif not dynamic_hw:
        hw = set()
    else:
        hw = set(dynamic_hw)
        for name in dynamic_hw:
            if name not in examples:
                raise ExportError(f"dynamic_hw names {name!r}, which is not an input; the inputs are "
                                  f"{', '.join(examples)}")
            if name not in images:
                raise ExportError(f"dynamic_hw names {name!r} of shape {list(examples[name].shape)}, which is "
                                  "not an [N, C, H, W] input; name image inputs only")
    if dynamic_batch and len({x.shape[0] for x in examples.values()}) > 1:
        batches = ", ".join(f"{name} {x.shape[0]}" for name, x in examples.items())
        raise ExportError(f"the example inputs disagree on the batch (first dimension): {batches}; give every input "
                          "the same batch, or export with dynamic_batch=False")
    return {name: ([0] if dynamic_batch else []) + ([2, 3] if name in hw else []) for name in examples}


def _check_settings(path: Path, opset) -> None:
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= int(opset) <= newest:
        raise ExportError(
            f"opset {opset} is not supported: the exporter writes opsets {MIN_OPSET} to {newest} "
            f"(TensorRT 10 and ONNX Runtime 1.20+ read opset {MIN_OPSET} or newer); "
            "leave the opset unset for the default"
        )
    if problem := output_file_problem(path, "model.onnx"):
        raise ExportError(problem)


def model_export_defaults(model: nn.Module) -> dict:
    """The export settings a model asks for by default: its ``_rfconv_export_defaults`` dict
    (:func:`exporter.model.registry.build_model` sets ``{"dynamic_hw": True}`` on dense-prediction
    models), else ``{}``. Settings given to :func:`export_onnx` win."""
    defaults = getattr(model, "_rfconv_export_defaults", None)
    return dict(defaults) if isinstance(defaults, dict) else {}


def _dynamic_shapes(dims: dict[str, list[int]]):
    """torch.export's ``dynamic_shapes``: one ``{dim: Dim.DYNAMIC}`` per input (None when none is dynamic)."""
    if not any(dims.values()):
        return None
    return tuple({d: torch.export.Dim.DYNAMIC for d in wanted} or None for wanted in dims.values())


def _sizes_of_one_stay_dynamic():
    """Context for the whole ``torch.onnx.export`` call: torch's ``backed_size_oblivious`` setting, so that
    an example's size of 1 (a batch of 1) is not taken as fixed anywhere in the export.

    The exporter sets it while it captures the graph; torch 2.9 leaves it off while it decomposes
    the graph afterwards, and that re-derivation broadcast a dynamic batch against the example's 1
    (a dynamic-H/W export from a batch-1 example declared its output as ``[1, ...]``). Later torch
    sets it for the decomposition too; this only widens it to the whole call. A torch without the
    setting gets a null context.
    """
    import torch.fx.experimental._config as config

    if not hasattr(config, "backed_size_oblivious"):
        return contextlib.nullcontext()
    return config.patch(backed_size_oblivious=True)


def _first_line(err: BaseException) -> str:
    """The most telling line of an exception chain (the summary the exporter appends, or the cause).

    The exporter's summary can put the exception type alone on a line (``<class 'X'>:``) and the
    message on the next; then both are kept.
    """
    text = str(err)
    summary = re.search(r"## Exception summary\s*\n(.*)", text, re.S)
    if summary:
        lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", summary.group(1)).splitlines() if ln.strip()]
        if lines:
            if lines[0].endswith(":") and len(lines) > 1 and not lines[1].startswith("(Refer"):
                return f"{lines[0]} {lines[1]}"
            return lines[0]
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause).strip():
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0]}"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def _output_names(output) -> list[str] | None:
    """``output`` for one tensor, ``output_<i>`` for a tuple/list of tensors, the keys of a dict of
    tensors (segmentation models return ``{"out": ...}``), else the exporter's names."""
    if isinstance(output, torch.Tensor):
        return ["output"]
    if isinstance(output, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in output):
        return [f"output_{i}" for i in range(len(output))]
    if isinstance(output, dict) and all(isinstance(o, torch.Tensor) for o in output.values()):
        return [str(key) for key in output]
    return None


def _capture(model: nn.Module, examples: dict[str, torch.Tensor], output_names, opset, dims: dict[str, list[int]],
             verbose: bool):
    """Run ``torch.onnx.export(dynamo=True)`` unoptimised (the passes do the graph work) on the
    example inputs (by name) with ``dims`` dynamic; returns the ``ONNXProgram``."""
    sink = io.StringIO()
    redirect = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(sink)
    try:
        with redirect, warnings.catch_warnings(), _sizes_of_one_stay_dynamic():
            if not verbose:
                warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, tuple(examples.values()), dynamo=True, optimize=False, verbose=verbose,
                opset_version=opset, input_names=list(examples), output_names=output_names,
                dynamic_shapes=_dynamic_shapes(dims),
            )
    except Exception as err:  # noqa: BLE001 - the exporter raises many types; all end here
        stage = "capture it with torch.export" if "torch.export" in str(err) else "translate it to ONNX"
        data_dependent = "data-dependent" in str(err).lower() or "DataDependent" in str(err)
        raise ExportError(
            f"cannot export {type(model).__name__}: the exporter failed to {stage} "
            f"({_first_line(err)}). Make forward() traceable by torch.export: tensor-only inputs "
            "and outputs, no Python branches on tensor values, no calls into non-PyTorch code; "
            + ("a model whose output size depends on the data (detection post-processing: SSDlite, Faster "
               "R-CNN, RetinaNet) cannot be captured whole: export its backbone (model.backbone, see "
               "deploy_examples/export_detection_backbone.py) and run the rest in PyTorch; "
               if data_dependent else "")
            + ("if the failure is about a dynamic dimension, export with fewer dynamic dimensions "
               "(dynamic_batch=False, dynamic_hw=False) or a larger example input"
               + (" (batch 2: a batch of 1 is fixed where inputs meet)" if len(examples) > 1 else "") + ". "
               if any(dims.values()) else "")
            + "torch.export.export(model, (x,)) reproduces it with the full trace."
        ) from err
    return program



def _rename_dims(graph: gs.Graph, names: dict[str, str]) -> None:
    """Replace the exporter's symbols (``s77``) with readable names in every tensor shape."""
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor.shape is not None:
            tensor.shape = [
                pattern.sub(lambda m: names[m.group(1)], d) if isinstance(d, str) else d for d in tensor.shape
            ]


def _dim_names(graph: gs.Graph) -> dict[str, str]:
    """The exporter's symbols -> ``batch``, ``height``, ``width`` (the first input's; a later input's
    own are ``<input>_height``, ...): a symbol two inputs share keeps the first name."""
    readable = ("batch", None, "height", "width")
    names = {}
    for index, tensor in enumerate(graph.inputs):
        for i, d in enumerate((tensor.shape or [])[:4]):
            if isinstance(d, str) and d not in names and i < len(readable) and readable[i]:
                name = readable[i] if index == 0 or i == 0 else f"{tensor.name}_{readable[i]}"
                names[d] = name if name not in names.values() else f"{tensor.name}_{readable[i]}"
    return names


def _tidy(model: onnx.ModelProto, keep_small_constants: bool = False) -> onnx.ModelProto:
    """Generic clean-up after our passes: sequence ops to ``Split``, shape-op chains simplified.

    The unoptimised dynamo export keeps, for example, ``SplitToSequence -> SequenceAt`` for
    ``torch.split`` (which TensorRT cannot parse) and a ``Shape``-based ``Reshape`` for
    ``flatten``; the onnxscript optimizer rewrites those. It runs last so that the scale folding
    and BatchNorm folding above are ours and the rectified-conv pattern is already final. With
    ``keep_small_constants`` it folds nothing larger than a shape, so compacted scales stay compact.
    """
    import onnxscript.optimizer

    if keep_small_constants:
        return onnxscript.optimizer.optimize(model, output_size_limit=SHAPE_SIZE_LIMIT)
    return onnxscript.optimizer.optimize(model)


def _save(model: onnx.ModelProto, path: Path) -> None:
    if model.ByteSize() > EXTERNAL_DATA_BYTES:
        onnx.save(model, path, save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(model, path)


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    path,
    *,
    input_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    dynamic_hw: bool | Sequence[str] | None = None,
    size_multiple: int | None = None,
    check_sizes: Sequence[tuple[int, int]] | None = None,
    opset: int | None = None,
    precision: str = "fp32",
    mode: str = "static",
    fold_bn: bool = True,
    compact_scales: bool = False,
    keep_io_types: bool = True,
    output_names: Sequence[str] | None = None,
    progress: bool = False,
    verbose: bool = False,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path`` and return an :class:`ExportReport`.

    ``example_input`` is one ``[N, C, H, W]`` float tensor, or a tuple of float tensors (the
    arguments of ``forward``, one ``[N, C, H, W]`` at least) named by ``input_names`` (default
    ``input``, or ``input_<i>`` for several). Sizes are baked into the graph except for the batch
    (``dynamic_batch``: dimension 0 of every input, which must agree) and, with ``dynamic_hw``,
    height and width of every ``[N, C, H, W]`` input (or of the inputs it names), whose factors are
    then computed in the graph at run time; ``dynamic_hw=None`` takes the model's default
    (:func:`model_export_defaults`: on for dense-prediction registry models, else off). ``precision="fp16"`` writes fp16
    weights and activations (inputs/outputs stay fp32 unless ``keep_io_types=False``).
    ``mode="plugin"`` hands the graph to :mod:`exporter.onnx.passes.plugin_mode` (TensorRT plugin
    nodes). ``fold_bn`` folds BatchNorm into the convs (without it the BatchNorms after rectified
    convs stay; plain ``Conv -> BatchNormalization`` pairs are fused by the final clean-up
    anyway). ``compact_scales`` stores each scale as row and column factors multiplied in the
    graph (``Ho + Wo`` numbers instead of ``Ho * Wo``; ONNX Runtime and TensorRT fold the product at
    load time), for static H/W and ``mode="static"`` only. The model is exported in eval mode and
    left in the mode it came in. A file with dynamic dimensions is proven at other sizes before this
    returns (:mod:`exporter.onnx.verify`: the ranges torch.export kept, and ONNX Runtime against
    PyTorch at batch 2 and, for dynamic H/W, the sizes of :mod:`exporter.onnx.sizes`: a smaller odd
    and a larger size, or with ``size_multiple=N`` multiples of N for a model that takes only those,
    or the ``check_sizes`` given as ``(H, W)`` pairs); one that fails there is removed and refused,
    and a model that itself fails at a check size is named as rejecting it. ``output_names`` names
    the outputs (default ``output``, or ``output_<i>`` for several). ``progress`` prints each step
    with its time to stderr; ``verbose`` also shows the dynamo exporter's own output and the summary.
    Raises :class:`ExportError` (a ``ValueError``) for settings or models it cannot export.
    """
    start = time.perf_counter()
    path = Path(path)
    sequence = dynamic_hw is not None and not isinstance(dynamic_hw, bool)
    try:  # the light checks of the settings, in one place
        ExportConfig(input_names=None if input_names is None else tuple(input_names), dynamic_batch=dynamic_batch,
                     dynamic_hw=None if sequence else dynamic_hw,
                     dynamic_hw_inputs=(dynamic_hw,) if isinstance(dynamic_hw, str) else
                     tuple(dynamic_hw) if sequence else None,
                     size_multiple=size_multiple, check_sizes=None if check_sizes is None else tuple(
                         tuple(hw) for hw in check_sizes), opset=opset, precision=precision, mode=mode)
    except ValueError as err:
        raise ExportError(str(err)) from err
    _check_settings(path, opset)
    examples = _example_inputs(example_input, input_names)
    if dynamic_hw is None:
        dynamic_hw = model_export_defaults(model).get("dynamic_hw", False)
    dims = _dynamic_dims(examples, dynamic_batch, dynamic_hw)
    dynamic_hw = any(2 in wanted for wanted in dims.values())
    if (size_multiple is not None or check_sizes is not None) and not dynamic_hw:
        raise ExportError("size_multiple and check_sizes choose the sizes a dynamic-H/W file is checked at; "
                          "export with dynamic_hw=True, or drop them")
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()} | {x.dtype for x in examples.values()}
    if floats != {torch.float32}:
        raise ExportError(
            f"export_onnx writes fp32 and fp16 files from a float32 model and example input; these are "
            f"{', '.join(sorted(str(d).removeprefix('torch.') for d in floats))}: export model.float() with a "
            "float32 input (precision='fp16' then converts to float16)"
        )
    if compact_scales and (dynamic_hw or mode != "static"):
        raise ExportError(
            "compact_scales needs scale constants, which only a static-H/W export in mode='static' has; "
            "drop compact_scales=True, or export with dynamic_hw=False and mode='static'"
        )

    def step(message: str) -> None:
        if progress or verbose:
            print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    with _eval_mode(model):
        step(f"capturing {type(model).__name__} with torch.export (dynamo exporter)")
        proto, found = _trace(model, examples, opset, dims, output_names, verbose)
        ranges = found.ranges
        declared = plugin_mode.declared_modes(model, proto) if mode == "plugin" else None
        graph = gs.import_onnx(proto)
        with warnings.catch_warnings(record=True) as pass_warnings:  # they become the report's notices
            warnings.simplefilter("always", UserWarning)
            rectified = run_passes(graph, dynamic_hw=dynamic_hw, fold_bn=fold_bn, mode=mode,
                                   compact_scales=compact_scales, precision=precision,
                                   keep_io_types=keep_io_types,
                                   example_shapes=[list(x.shape) for x in examples.values()],
                                   declared=declared, step=step)
        _rename_dims(graph, _dim_names(graph))
        step("tidying (onnxscript optimizer), shape inference, writing and checking")
        out = _write(graph, path, keep_small_constants=compact_scales)
        shapes = verify.verification_shapes({name: list(x.shape) for name, x in examples.items()}, found,
                                            size_multiple=size_multiple, sizes=check_sizes)
        step(f"checking the file on ONNX Runtime at {', '.join(_sizes_text(s) for s in shapes)}")
        verified = _check_other_sizes(model, path, shapes, precision, mode, ranges,
                                      {name: list(x.shape) for name, x in examples.items()}) if shapes else []

    nodes = Counter(node.op_type for node in out.graph.node)
    scales = set() if dynamic_hw else {m.scale.name for m in find_rectified_convs(graph)}
    report = ExportReport(
        path=path,
        nodes_by_type=dict(nodes),
        rectified_convs=len(rectified),  # counted before plugin mode replaces them
        distinct_scales=len(scales),
        batchnorms_left=nodes.get("BatchNormalization", 0),
        file_bytes=path.stat().st_size + _external_bytes(path),
        seconds=time.perf_counter() - start,
        opset=next(o.version for o in out.opset_import if o.domain in ("", "ai.onnx")),
        precision=precision,
        mode=mode,
        input_shapes={i.name: _shape(i) for i in out.graph.input},
        output_shapes=[_shape(o) for o in out.graph.output],
        dynamic_hw=dynamic_hw,
        dynamic_ranges={name: axes for name, axes in ranges.items() if axes},
        verified=verified,
    )
    report.notices += [str(w.message) for w in pass_warnings if issubclass(w.category, UserWarning)]
    if verify.bounded(ranges):
        report.notices.append(
            f"torch.export kept {verify.describe_bounds(ranges)}, but the file agrees with PyTorch beyond that "
            f"(at {', '.join(_sizes_text(v['inputs']) for v in verified)}): the bound is torch's, not the file's"
        )
    if not rectified:
        report.notices.append(
            f"{type(model).__name__} has no rectified convolution: exported as a plain network "
            "(convert it with exporter.rectify_model, or check that its RFConv2d layers have padding)"
        )
    if fold_bn and report.batchnorms_left:
        report.notices.append(
            f"{report.batchnorms_left} BatchNormalization node(s) do not follow a conv and stay in the graph"
        )
    for notice in report.notices:
        warnings.warn(notice, stacklevel=2)
    if verbose:
        print(report.summary(), file=sys.stderr)
    return report


def _trace(model: nn.Module, examples: dict[str, torch.Tensor], opset, dims: dict[str, list[int]],
           output_names: Sequence[str] | None, verbose: bool) -> tuple[onnx.ModelProto, verify.DynamicDims]:
    """Run the model (in eval mode) once on the example inputs, with a clear error if it fails there,
    and capture it; returns the ONNX model and what torch.export kept of the dynamic dims
    (refused when one is fixed to a single size, see :mod:`exporter.onnx.verify`)."""
    with torch.no_grad():
        try:
            output = model(*examples.values())
        except Exception as err:  # noqa: BLE001 - any failure of the user's forward
            shapes = " and ".join(str(list(x.shape)) for x in examples.values())
            raise ExportError(
                f"{type(model).__name__} fails on the example input{'s' if len(examples) > 1 else ''} of shape "
                f"{shapes} ({type(err).__name__}: {str(err).strip().splitlines()[0]}); "
                "give input shapes the model accepts"
            ) from err
        default_names = _output_names(output)
        if output_names is not None and default_names is not None and len(output_names) != len(default_names):
            raise ExportError(f"output_names has {len(output_names)} name(s) but {type(model).__name__} "
                              f"returns {len(default_names)} tensor(s); give one name per output")
        names = list(output_names) if output_names is not None else default_names
        program = _capture(model, examples, names, opset, dims, verbose)
    found = verify.dynamic_dims(program, dims)
    try:
        verify.check_ranges(found.ranges, {name: list(x.shape) for name, x in examples.items()})
    except verify.ShapeCheckError as err:
        raise ExportError(str(err)) from err
    return program.model_proto, found


def _check_other_sizes(model: nn.Module, path: Path, shapes: list[dict], precision: str, mode: str,
                       ranges: dict, example_shapes: dict) -> list[dict]:
    """:func:`exporter.onnx.verify.check_other_sizes` on ONNX Runtime CPU (plugin nodes through the
    plugin's reference op); a file that fails is removed, since nothing may use it."""
    import onnxruntime

    if mode == "plugin":
        from plugins.ort_reference import inference_session

        session = inference_session(str(path))
    else:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # a failed run raises; the error is reported, not logged twice
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    try:
        return verify.check_other_sizes(path, model, shapes, precision, session, ranges, example_shapes)
    except verify.ShapeCheckError as err:
        for written in (path, path.with_name(path.name + ".data")):
            written.unlink(missing_ok=True)
        raise ExportError(f"{err} (the file was removed)") from err


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """``model`` in eval mode inside the block, back in the mode it came in after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _write(graph: gs.Graph, path: Path, keep_small_constants: bool) -> onnx.ModelProto:
    """Tidy, shape-infer (strict), save and fully check the graph; returns the model as written."""
    out = _tidy(gs.export_onnx(graph), keep_small_constants=keep_small_constants)
    out.producer_name, out.producer_version = "rfconv-deploy", __version__
    try:
        out = onnx.shape_inference.infer_shapes(out, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as err:
        raise RuntimeError(f"ONNX shape inference rejected the exported graph: {err}") from err
    _save(out, path)
    onnx.checker.check_model(str(path), full_check=True)
    return out


def _external_bytes(path: Path) -> int:
    side = path.with_name(path.name + ".data")
    return side.stat().st_size if side.exists() else 0


def _shape(value_info: onnx.ValueInfoProto) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]
