"""Step 4a: accuracy comparison of an exported file across backends (``rfconv-deploy compare``).

The package is called ``comparison`` so that ``exporter.compare`` stays the function.

* :mod:`.defaults`     default backends, tolerances and verdict bounds (light, for the CLI too).
* :mod:`.config`       :class:`~.config.CompareConfig`, the options of a comparison (light).
* :mod:`.available`    whether a named backend can run here, asked before any work (light).
* :mod:`.plan`         what is compared, at which sizes, under which verdict.
* :mod:`.runs`         running the backends, and PyTorch in float64 (and fp16).
* :mod:`.elementwise`  Polygraphy's element-wise check as a compare function without log statistics.
* :mod:`.verdicts`     the noise-floor, tolerance and int8 verdicts, each with one ``judge`` method.
* :mod:`.layerwise`    the tensor after each rectified conv in the ONNX graph, and its border ring.
* :mod:`.modules`      the PyTorch module of each layer, and a folded BatchNorm recovered.
* :mod:`.layered_file` the layered model on disk (hard link, protobuf wire format).
* :mod:`.saved`        saving inputs and raw results.
* :mod:`.report`       per-pair statistics and the readable / JSON report.
* :mod:`.compare`      :func:`~.compare.compare`: plan, run, judge, report.
"""
