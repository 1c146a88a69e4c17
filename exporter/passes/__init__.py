"""onnx-graphsurgeon passes that turn a traced export into the deployable graph, one job each.

Static spatial size, in the order :func:`exporter.export.export_onnx` runs them:

1. :mod:`.castlike` — ``CastLike`` nodes with a known target type become ``Cast``, so the
   constant folder can evaluate them.
2. :mod:`.fold` — onnx-graphsurgeon ``fold_constants`` / ``cleanup`` / ``toposort``: the
   rectification factor, computed in the graph from the traced input size, becomes a constant.
3. :mod:`.scale_layout` — every scale constant gets the contract shape ``[1, 1, Ho, Wo]``.
4. :mod:`.dedupe` — identical scale constants are stored once.
5. :mod:`.fold_bn` — ``BatchNormalization`` after ``Conv`` or after ``Conv -> Mul(scale)`` goes
   into the conv weights and bias plus a per-channel ``Add``.
6. :mod:`.fp16` — optional: weights and activations in float16.

:mod:`.rectified` finds the ``Conv -> Mul(scale)`` pattern that all of them work on.
"""
