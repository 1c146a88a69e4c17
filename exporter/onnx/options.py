"""What an export can be asked for: :class:`ExportConfig`, its precisions, modes and opsets (light:
standard library only).

One definition, read by :func:`exporter.onnx.export.export_onnx` (which validates its settings
by building an :class:`ExportConfig`), by the comparison's tolerances and by the command line,
which builds ``export``'s options from the fields (:func:`exporter.cli.args.add_config_arguments`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from exporter.config import option
from exporter.onnx.sizes import parse_check_sizes

PRECISIONS = ("fp32", "fp16")
"""``fp16``: fp16 weights and activations (TensorRT 11 takes its precision from the ONNX types)."""
MODES = ("static", "plugin")
"""``static``: ``Conv -> Mul(scale)``; ``plugin``: ``Conv -> RFConvRectify`` (TensorRT plugin)."""
MIN_OPSET = 18
"""The dynamo exporter's lowest native opset; older ones need lossy conversion."""
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
"""The example input of ``rfconv-deploy export`` (N, C, H, W)."""


def names(text: str) -> tuple[str, ...]:
    """``"image,gain"`` -> ``("image", "gain")`` (empty items dropped)."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def check_size_list(text: str) -> tuple[tuple[int, int], ...]:
    """The argparse ``type`` of ``--check-sizes``: :func:`exporter.onnx.sizes.parse_check_sizes`,
    its ValueError shown as argparse's own message."""
    try:
        return parse_check_sizes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


@dataclass(frozen=True)
class ExportConfig:
    """Settings of one export (see :func:`exporter.onnx.export.export_onnx`, whose keyword
    arguments these are).

    ``dynamic_hw``: ``True`` / ``False``, or ``None`` for the model's default; ``dynamic_hw_inputs``
    names the only inputs whose H and W are dynamic (it implies ``dynamic_hw``). ``size_multiple``
    (pixels) or ``check_sizes`` (``(H, W)`` pairs) choose the sizes a dynamic-H/W file is checked
    at (:mod:`exporter.onnx.sizes`). Raises ``ValueError`` naming the field for a value it cannot
    take; the opset's upper limit is the installed onnx's, checked by the export.
    """

    input_names: tuple[str, ...] | None = option(
        None, parse=names, metavar="NAMES",
        help="names of the model's inputs, in forward()'s order, e.g. image,gain (default: input, or "
             "input_0,input_1,... for several)")
    dynamic_batch: bool = option(True, help="fix the batch dimension to the example's (by default dimension 0 "
                                            "of every input is dynamic)")
    dynamic_hw: bool | None = option(
        None, show_default=False,
        help="keep height and width of every N,C,H,W input dynamic; the scale is computed in the graph (default: "
             "the model's: on for dense-prediction registry models, off otherwise)")
    dynamic_hw_inputs: tuple[str, ...] | None = option(
        None, parse=names, metavar="NAMES", help="keep height and width dynamic for these inputs only (implies "
                                                 "--dynamic-hw)")
    size_multiple: int | None = option(
        None, parse=int, metavar="N",
        help="dynamic H/W: check the file at multiples of N (one just above the example, one about twice), for a "
             "model that takes only those (a UNet, an HRNet: e.g. 32); default: a smaller odd and a larger size")
    check_sizes: tuple[tuple[int, int], ...] | None = option(
        None, parse=check_size_list, metavar="HxW[,HxW...]",
        help="dynamic H/W: the sizes to check the file at, e.g. 96x96,160x128")
    opset: int | None = option(None, parse=int, help=f"ONNX opset ({MIN_OPSET} or newer; default: the exporter's)")
    precision: str = option("fp32", choices=PRECISIONS, help="fp16: fp16 weights and activations, fp32 "
                                                             "inputs/outputs")
    mode: str = option("static", choices=MODES, help="static: Conv -> Mul(scale); plugin: TensorRT plugin nodes")
    compact_scales: bool = option(False, help="store scales as row x column factors (smaller file; folded again "
                                              "at load time)")
    fold_bn: bool = True
    keep_io_types: bool = True
    output_names: tuple[str, ...] | None = None
    progress: bool = False
    verbose: bool = option(False, short="-v", help="print each step and the exporter's output")

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not supported; use one of {PRECISIONS}")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not supported; use one of {MODES}")
        if self.opset is not None and int(self.opset) < MIN_OPSET:
            raise ValueError(
                f"opset {self.opset} is not supported: the exporter writes opset {MIN_OPSET} or newer (TensorRT 10 "
                f"and ONNX Runtime 1.20+ read opset {MIN_OPSET} or newer); leave the opset unset for the default")
        if self.dynamic_hw_inputs and self.dynamic_hw is False:
            raise ValueError("dynamic_hw_inputs keeps H and W dynamic: drop dynamic_hw=False or dynamic_hw_inputs")
        multiple = self.size_multiple
        if multiple is not None and (isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1):
            raise ValueError(f"size_multiple={multiple!r} must be a positive integer (e.g. 32)")
        if multiple is not None and self.check_sizes is not None:
            raise ValueError("give size_multiple or check_sizes, not both")
        if self.check_sizes is not None and (not self.check_sizes or not all(
                len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw) for hw in self.check_sizes)):
            raise ValueError(f"check_sizes={list(self.check_sizes)!r} must be (height, width) pairs of positive ints")

    def export_arguments(self) -> dict:
        """The keyword arguments of :func:`exporter.onnx.export.export_onnx` (``dynamic_hw`` holds
        ``dynamic_hw_inputs`` when given)."""
        arguments = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dynamic_hw_inputs"}
        if self.dynamic_hw_inputs:
            arguments["dynamic_hw"] = list(self.dynamic_hw_inputs)
        return arguments
