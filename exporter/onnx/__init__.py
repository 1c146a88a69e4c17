"""Step 2: ONNX export and the graph passes that make the file deployable.

* :mod:`.options`   what an export can be asked for (:class:`.options.ExportConfig`, precisions, modes,
  opsets): light, for the CLI.
* :mod:`.sizes`     the one rule of the sizes a dynamic-H/W file is checked at (light; compare reads it too).
* :mod:`.graph`     graph helpers the passes and the quantizer share (sole consumer, Conv geometry).
* :mod:`.export`    :func:`export_onnx`: capture with ``torch.onnx.export(dynamo=True)``, run the
  passes, write and check the file.
* :mod:`.passes`    onnx-graphsurgeon passes, one job each; :data:`.passes.PIPELINE` holds their order.
* :mod:`.precision` the precision an ONNX file computes in (one rule, read by TensorRT and compare).
* :mod:`.feeds`     inputs for an ONNX file: seeded random, image folders, Polygraphy input JSON (read by
  compare and by the quantizer's calibration).

Imports only :mod:`exporter.model` (and :mod:`plugins` for plugin mode).
"""
