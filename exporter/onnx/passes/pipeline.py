"""The order of the graph passes (see the package docstring): :func:`run_passes`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import onnx_graphsurgeon as gs

from exporter.onnx.passes import plugin_mode
from exporter.onnx.passes.castlike import resolve_castlike
from exporter.onnx.passes.compact_scales import compact_scales as compact_scale_constants
from exporter.onnx.passes.constant_values import type_constant_values
from exporter.onnx.passes.dedupe import dedupe_scales
from exporter.onnx.passes.fold import check_scales_folded, fold_constants
from exporter.onnx.passes.fold_bn import fold_batchnorm
from exporter.onnx.passes.fp16 import convert_to_fp16
from exporter.onnx.passes.rectified import RectifiedConv, find_rectified_convs
from exporter.onnx.passes.scale_layout import canonical_scale_shapes


def run_passes(
    graph: gs.Graph,
    *,
    dynamic_hw: bool,
    fold_bn: bool,
    mode: str,
    compact_scales: bool,
    precision: str,
    keep_io_types: bool,
    example_shapes: Sequence[Sequence[int]] | None = None,
    declared: Mapping[str, tuple[bool, str]] | None = None,
    step: Callable[[str], None] = lambda message: None,
) -> list[RectifiedConv]:
    """Run every pass the settings ask for on ``graph`` (in place), in the order above.

    ``example_shapes`` are the shapes the graph was traced with, one per graph input: plugin mode
    reads a dynamic-H/W export's factors at those sizes, and gives each conv the counting rule of
    ``declared`` (Conv node name -> ``(average_mode, count_mode)``, see
    :func:`exporter.onnx.passes.plugin_mode.declared_modes`).
    Returns the rectified convs found after folding, before plugin mode replaces them (the
    export's count of rectified layers). ``step`` receives a line for each long step.
    """
    step("folding constants (rectification factors) with onnx-graphsurgeon")
    type_constant_values(graph)
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
        plugin_mode.apply(graph, example_shapes, declared)
    if compact_scales:
        compact_scale_constants(graph)
    if precision == "fp16":
        step("converting to fp16")
        convert_to_fp16(graph, keep_io_types=keep_io_types)
    return rectified
