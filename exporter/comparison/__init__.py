"""Step 4a: accuracy comparison of an exported file across backends (``rfconv-deploy compare``).

The package is called ``comparison`` so that ``exporter.compare`` stays the function.

* :mod:`.defaults`  default backends and tolerances (light, for the CLI).
* :mod:`.layerwise` the tensor after each rectified conv, in ONNX and in PyTorch.
* :mod:`.report`    per-pair statistics and the readable / JSON report.
* :mod:`.compare`   :func:`compare`: run every backend with Polygraphy's ``Comparator`` and check them.
"""
