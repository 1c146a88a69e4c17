"""The one check of a file path a command is about to write (light: standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def output_file_problem(path: Path, example_name: str) -> str | None:
    """Why ``path`` cannot be written as a new or replaced file, or None when it can.

    The message names the path and what to change: a directory (give a file name such as
    ``path / example_name``), a missing parent directory, or no write permission.
    """
    if path.is_dir():
        return f"cannot write {path}: it is a directory; give a file name such as {path / example_name}"
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"cannot write {path}: directory {parent} does not exist; create it or choose another path"
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"cannot write {path}: permission denied; choose a writable location"
    return None
