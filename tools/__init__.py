"""Checks that are neither library nor benchmark: ``python -m tools.gpu_check`` (``make gpu-check``)."""
