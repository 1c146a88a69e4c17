"""Step 4b: latency of rectified vs plain models (``rfconv-deploy bench``).

* :mod:`.config`  :class:`~.config.BenchConfig`, the options of a benchmark (light).
* :mod:`.timing`  interleaved timing blocks and their ratios.
* :mod:`.latency` every available backend, through the backend factory of :mod:`exporter.backends.runners`.
"""
