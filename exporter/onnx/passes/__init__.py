"""onnx-graphsurgeon passes that turn a traced export into the deployable graph, one job each.

:func:`.pipeline.run_passes` is the one place that orders them. Static spatial size:

1. :mod:`.constant_values` — ``Constant(value_floats=...)`` and kin become typed tensors, so they
   fold to float32 / int64 (not float64); :mod:`.castlike` — ``CastLike`` nodes with a known
   target type become ``Cast``, so the constant folder can evaluate them.
2. :mod:`.fold` — onnx-graphsurgeon ``fold_constants`` / ``cleanup`` / ``toposort``: the
   rectification factor, computed in the graph from the traced input size, becomes a constant
   (and :func:`.fold.check_scales_folded` proves that every one did).
3. :mod:`.scale_layout` — every scale constant gets the contract shape ``[1, 1, Ho, Wo]``.
4. :mod:`.dedupe` — identical scale constants are stored once.
5. :mod:`.fold_bn` — ``BatchNormalization`` after ``Conv`` or after ``Conv -> Mul(scale)`` goes
   into the conv weights and bias plus a per-channel ``Add`` (``fold_bn``).
6. :mod:`.plugin_mode` — ``mode="plugin"``: TensorRT plugin nodes.
7. :mod:`.compact_scales` — optional: scales stored as row x column factors.
8. :mod:`.fp16` — ``precision="fp16"``: weights and activations in float16.

A dynamic-H/W export skips 2's check and 3-4: its factors stay computed in the graph.
:mod:`.rectified` holds the one definition of a rectified conv in a graph (``Conv -> Mul(scale)``)
that all of them, the per-layer comparison and the benchmarks' graph variants match on. After
them :func:`exporter.onnx.export.export_onnx` runs the onnxscript optimizer for generic clean-up.
"""
