"""Saving what a comparison ran: its inputs (Polygraphy input JSON) and raw results (RunResults),
one set per input size."""

from __future__ import annotations

import os
from pathlib import Path

from polygraphy.comparator import RunResults

from exporter.onnx.feeds import save_feeds

ITERATION_FILE_WIDTH = 10
"""Digits of the per-iteration file names, as ``RunResults.load_streaming`` reads them."""


def at_size(path: str, label: str) -> str:
    """Where a further size's file goes: ``name-HxW.ext`` beside a file, ``HxW/`` inside a folder."""
    stem, ext = os.path.splitext(path)
    return f"{stem}-{label}{ext}" if ext else os.path.join(path, label)


def save_sizes(sizes: list[tuple[str, list, RunResults]], save_inputs: str | None, save_results: str | None) -> dict:
    """Save each size's feeds and results (``sizes``: ``(HxW label, feeds, results)``): the first
    size at the paths given, the others by :func:`at_size`. Returns ``{"inputs": ..., "results":
    ..., "sizes": {HxW: {...}}}`` (the per-size table only when there are several sizes). Raises
    ``ValueError`` for a results folder that exists and is not empty."""
    saved, by_size = {}, {}
    for index, (label, feeds, results) in enumerate(sizes):
        here = {}
        if save_inputs:
            here["inputs"] = str(save_inputs) if index == 0 else at_size(str(save_inputs), label)
            save_feeds(feeds, here["inputs"])
        if save_results and len(results):
            target = str(save_results) if index == 0 else at_size(str(save_results), label)
            here["results"] = save_results_to(results, target)
        if index == 0:
            saved.update(here)
        by_size[label] = here
    if len(sizes) > 1 and (save_inputs or save_results):
        saved["sizes"] = by_size
    return saved


def save_results_to(results: RunResults, path: str) -> str:
    """Save as one JSON file (path with a suffix) or one file per iteration in a new directory."""
    if os.path.splitext(path)[1]:
        results.save(path)
        return path
    directory = Path(path)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(
            f"save_results={path!r}: give a new or empty directory, or a file name ending in .json"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for index, single in enumerate(results.split()):
        single.save(str(directory / f"{index:0{ITERATION_FILE_WIDTH}d}.json"))
    return path
