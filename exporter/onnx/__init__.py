"""Step 2: ONNX export and the graph passes that make the file deployable.

* :mod:`.options`   what an export can be asked for (precisions, modes, opsets): light, for the CLI.
* :mod:`.export`    :func:`export_onnx`: capture with ``torch.onnx.export(dynamo=True)``, run the
  passes, write and check the file.
* :mod:`.passes`    onnx-graphsurgeon passes, one job each; :data:`.passes.PIPELINE` holds their order.
* :mod:`.precision` the precision an ONNX file computes in (one rule, read by TensorRT and compare).
* :mod:`.feeds`     inputs for an ONNX file: seeded random, image folders, Polygraphy input JSON (read by
  compare and by the quantizer's calibration).

Imports only :mod:`exporter.model` (and :mod:`plugins` for plugin mode).
"""
