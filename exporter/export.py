"""ONNX export: rectified convs as ``Conv -> Mul(scale)``, folded and checked.

:func:`export_onnx` captures the model with ``torch.onnx.export(dynamo=True)``, runs the
onnx-graphsurgeon passes of :mod:`exporter.passes` (fold the traced factor to constants, give
them the contract shape ``[1, 1, Ho, Wo]``, store each distinct factor once, fold BatchNorm,
optionally convert to fp16), writes the file, and checks it with ``onnx.checker`` (full check)
and ONNX shape inference. ``rfconv-deploy export`` is the same on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from .passes import plugin_mode
from .passes.castlike import resolve_castlike
from .passes.compact_scales import compact_scales as compact_scale_constants
from .passes.dedupe import dedupe_scales
from .passes.fold import check_scales_folded, fold_constants
from .passes.fold_bn import fold_batchnorm
from .passes.fp16 import convert_to_fp16
from .passes.rectified import find_rectified_convs
from .passes.scale_layout import canonical_scale_shapes

PRECISIONS = ("fp32", "fp16")
MODES = ("static", "plugin")
MIN_OPSET = 18  # the dynamo exporter's lowest native opset; older ones need lossy conversion
INPUT_NAME = "input"
# The CLI reports each step for models this large (ResNet-50 has 25.6 M parameters).
LARGE_MODEL_PARAMS = 10_000_000
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
    input_shape: list
    output_shapes: list
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for people: file, shapes, rectified convs, node counts, size and time."""
        nodes = ", ".join(f"{op} {n}" for op, n in sorted(self.nodes_by_type.items(), key=lambda kv: -kv[1]))
        outputs = " ".join(str(s) for s in self.output_shapes)
        lines = [
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, opset {self.opset}, {self.precision}, "
            f"{self.mode} mode) in {self.seconds:.1f} s",
            f"  input {self.input_shape} -> output {outputs}",
            f"  rectified convs: {self.rectified_convs}"
            + (f" ({self.distinct_scales} distinct scale constants)" if self.distinct_scales else "")
            + f", BatchNormalization left: {self.batchnorms_left}",
            f"  nodes ({sum(self.nodes_by_type.values())}): {nodes}",
        ]
        lines += [f"  notice: {n}" for n in self.notices]
        return "\n".join(lines)


def _check_settings(example_input, path: Path, opset, precision: str, mode: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"precision={precision!r} is not supported; use one of {PRECISIONS}")
    if mode not in MODES:
        raise ExportError(f"mode={mode!r} is not supported; use one of {MODES}")
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= int(opset) <= newest:
        raise ExportError(
            f"opset {opset} is not supported: the exporter writes opsets {MIN_OPSET} to {newest} "
            f"(TensorRT 10 and ONNX Runtime 1.20+ read opset {MIN_OPSET} or newer); "
            "leave the opset unset for the default"
        )
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input)
        raise ExportError(f"the example input must be one NCHW image tensor [N, C, H, W]; got {shape}")
    if not example_input.is_floating_point():
        raise ExportError(f"the example input must be a float tensor; got {example_input.dtype}")
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a directory; give a file name such as {path / 'model.onnx'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"cannot write {path}: directory {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ExportError(f"cannot write {path}: permission denied; choose a writable location")


def _dynamic_shapes(dynamic_batch: bool, dynamic_hw: bool):
    dims = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim.DYNAMIC
    if dynamic_hw:
        dims[2] = dims[3] = torch.export.Dim.DYNAMIC
    return (dims,) if dims else None


def _first_line(err: BaseException) -> str:
    """The most telling line of an exception chain (the summary the exporter appends, or the cause)."""
    text = str(err)
    summary = re.search(r"## Exception summary\s*\n\s*(.+)", text)
    if summary:
        return re.sub(r"\x1b\[[0-9;]*m", "", summary.group(1)).strip()
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause).strip():
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0]}"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def _output_names(output) -> list[str] | None:
    """``output`` for one tensor, ``output_<i>`` for a tuple/list of tensors, else the exporter's names."""
    if isinstance(output, torch.Tensor):
        return ["output"]
    if isinstance(output, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in output):
        return [f"output_{i}" for i in range(len(output))]
    return None


def _capture(model: nn.Module, example_input: torch.Tensor, output_names, opset, dynamic_batch: bool,
             dynamic_hw: bool, verbose: bool) -> onnx.ModelProto:
    """Run ``torch.onnx.export(dynamo=True)`` unoptimised; the passes do the graph work."""
    sink = io.StringIO()
    redirect = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(sink)
    try:
        with redirect, warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example_input,), dynamo=True, optimize=False, verbose=verbose,
                opset_version=opset, input_names=[INPUT_NAME], output_names=output_names,
                dynamic_shapes=_dynamic_shapes(dynamic_batch, dynamic_hw),
            )
    except Exception as err:  # noqa: BLE001 - the exporter raises many types; all end here
        stage = "capture it with torch.export" if "torch.export" in str(err) else "translate it to ONNX"
        raise ExportError(
            f"cannot export {type(model).__name__}: the exporter failed to {stage} "
            f"({_first_line(err)}). Make forward() traceable by torch.export: tensor-only inputs "
            "and outputs, no Python branches on tensor values, no calls into non-PyTorch code; "
            + ("if the failure is about a dynamic dimension, export with fewer dynamic dimensions "
               "(dynamic_batch=False / --no-dynamic-batch, no --dynamic-hw) or a larger example input. "
               if dynamic_hw or dynamic_batch else "")
            + "torch.export.export(model, (x,)) reproduces it with the full trace."
        ) from None
    return program.model_proto



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
    shape = graph.inputs[0].shape or []
    readable = ("batch", None, "height", "width")
    return {d: readable[i] for i, d in enumerate(shape[:4]) if isinstance(d, str) and readable[i]}


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
    example_input: torch.Tensor,
    path,
    *,
    dynamic_batch: bool = True,
    dynamic_hw: bool = False,
    opset: int | None = None,
    precision: str = "fp32",
    mode: str = "static",
    fold_bn: bool = True,
    compact_scales: bool = False,
    keep_io_types: bool = True,
    progress: bool = False,
    verbose: bool = False,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path`` and return an :class:`ExportReport`.

    ``example_input`` is one ``[N, C, H, W]`` float tensor; its size is baked into the graph
    except for the batch (``dynamic_batch``) and, with ``dynamic_hw``, height and width, whose
    factors are then computed in the graph at run time. ``precision="fp16"`` writes fp16
    weights and activations (inputs/outputs stay fp32 unless ``keep_io_types=False``).
    ``mode="plugin"`` hands the graph to :mod:`exporter.passes.plugin_mode` (TensorRT plugin
    nodes). ``fold_bn`` folds BatchNorm into the convs (without it the BatchNorms after rectified
    convs stay; plain ``Conv -> BatchNormalization`` pairs are fused by the final clean-up
    anyway). ``compact_scales`` stores each scale as row and column factors multiplied in the
    graph (``Ho + Wo`` numbers instead of ``Ho * Wo``; ONNX Runtime and TensorRT fold the product at
    load time), for static H/W and ``mode="static"`` only. The model is exported in eval mode and
    left in the mode it came in. ``progress`` prints each step with its time to stderr;
    ``verbose`` also shows the dynamo exporter's own output and the summary.
    Raises :class:`ExportError` (a ``ValueError``) for settings or models it cannot export.
    """
    start = time.perf_counter()
    path = Path(path)
    _check_settings(example_input, path, opset, precision, mode)
    if compact_scales and (dynamic_hw or mode != "static"):
        raise ExportError(
            "compact_scales needs scale constants, which only a static-H/W export in mode='static' has; "
            "drop --compact-scales or --dynamic-hw/--mode plugin"
        )

    def step(message: str) -> None:
        if progress or verbose:
            print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                output = model(example_input)
            except Exception as err:  # noqa: BLE001 - any failure of the user's forward
                raise ExportError(
                    f"{type(model).__name__} fails on the example input of shape "
                    f"{list(example_input.shape)} ({type(err).__name__}: {str(err).strip().splitlines()[0]}); "
                    "give an input shape the model accepts"
                ) from None
            step(f"capturing {type(model).__name__} with torch.export (dynamo exporter)")
            proto = _capture(model, example_input, _output_names(output), opset, dynamic_batch,
                             dynamic_hw, verbose)
    finally:
        model.train(was_training)

    step("folding constants (rectification factors) with onnx-graphsurgeon")
    graph = gs.import_onnx(proto)
    resolve_castlike(graph)
    fold_constants(graph)
    if not dynamic_hw:
        check_scales_folded(graph)
        canonical_scale_shapes(graph)
        dedupe_scales(graph)
    rectified = find_rectified_convs(graph)
    if fold_bn:
        step("folding BatchNormalization into the convs")
        fold_batchnorm(graph)
    if mode == "plugin":
        step("rewriting rectified convs as TensorRT plugin nodes")
        plugin_mode.apply(graph)
    if compact_scales:
        compact_scale_constants(graph)
    if precision == "fp16":
        step("converting to fp16")
        convert_to_fp16(graph, keep_io_types=keep_io_types)
    _rename_dims(graph, _dim_names(graph))

    step("tidying (onnxscript optimizer), shape inference, writing and checking")
    out = _tidy(gs.export_onnx(graph), keep_small_constants=compact_scales)
    out.producer_name, out.producer_version = "rfconv-deploy", _version()
    try:
        out = onnx.shape_inference.infer_shapes(out, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as err:
        raise RuntimeError(f"ONNX shape inference rejected the exported graph: {err}") from None
    _save(out, path)
    onnx.checker.check_model(str(path), full_check=True)

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
        input_shape=_shape(out.graph.input[0]),
        output_shapes=[_shape(o) for o in out.graph.output],
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


def _version() -> str:
    from . import __version__

    return __version__


def _external_bytes(path: Path) -> int:
    side = path.with_name(path.name + ".data")
    return side.stat().st_size if side.exists() else 0


def _shape(value_info: onnx.ValueInfoProto) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


# --- command line -------------------------------------------------------------------------


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``; raises ``argparse.ArgumentTypeError`` otherwise."""
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"input shape {text!r} is not four positive integers N,C,H,W")
    return dims


def _export_command(args: argparse.Namespace) -> int:
    from .models import load_model

    if ":" in args.model and (args.no_rectify or args.average_mode):
        raise ValueError(
            "--no-rectify and --average-mode apply to registry models; a package.module:factory "
            "model is exported as the factory builds it"
        )
    model = load_model(args.model, rectify=not args.no_rectify, average_mode=args.average_mode,
                       checkpoint=args.checkpoint)
    example = torch.randn(args.input_shape, generator=torch.Generator().manual_seed(0))
    large = sum(p.numel() for p in model.parameters()) >= LARGE_MODEL_PARAMS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notices are part of the printed summary
        report = export_onnx(
            model, example, args.output, dynamic_batch=args.dynamic_batch, dynamic_hw=args.dynamic_hw,
            opset=args.opset, precision=args.precision, mode=args.mode, compact_scales=args.compact_scales,
            progress=large or args.verbose, verbose=args.verbose,
        )
    print(report.summary())
    return 0


def add_subcommand(sub) -> None:
    """Register ``rfconv-deploy export``."""
    p = sub.add_parser(
        "export", help="export a model to ONNX (rectified convs as Conv -> Mul(scale))",
        description="Export a model to ONNX: each rectified conv becomes Conv -> Mul(scale [1,1,Ho,Wo]), "
        "BatchNorm is folded, and the file passes onnx.checker's full check and shape inference.",
    )
    p.add_argument("model", help="registry name (e.g. resnet50) or package.module:factory")
    p.add_argument("-o", "--output", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--checkpoint", type=Path, help="weights to load (state dict, read with weights_only=True)")
    p.add_argument("--input-shape", type=parse_input_shape, default=(1, 3, 224, 224), metavar="N,C,H,W",
                   help="example input shape (default 1,3,224,224)")
    p.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the batch dimension symbolic (default on)")
    p.add_argument("--dynamic-hw", action="store_true",
                   help="keep height and width symbolic; the scale is computed in the graph")
    p.add_argument("--opset", type=int, help=f"ONNX opset ({MIN_OPSET} or newer; default: the exporter's)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp16: fp16 weights and activations, fp32 inputs/outputs")
    p.add_argument("--no-rectify", action="store_true", help="registry models: export the plain baseline")
    p.add_argument("--average-mode", action="store_true", help="registry models: average-mode rectification")
    p.add_argument("--compact-scales", action="store_true",
                   help="store scales as row x column factors (smaller file; folded again at load time)")
    p.add_argument("--mode", choices=MODES, default="static",
                   help="static: Conv -> Mul(scale) (default); plugin: TensorRT plugin nodes")
    p.add_argument("-v", "--verbose", action="store_true", help="print each step and the exporter's output")
    p.set_defaults(func=_export_command)
