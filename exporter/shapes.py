"""The one parser of tensor shapes written as text: ``1,3,224,224`` or ``1x3x224x224``.

Used by the command line (``--input-shape``, ``--min/opt/max-shape``) and by the TensorRT
profile strings of :func:`exporter.trt.engine.build_engine`. Light: imports nothing.
"""

from __future__ import annotations

_COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
_AXIS_NAMES = {4: " N,C,H,W"}


def parse_shape(text: str, rank: int | None = None) -> tuple[int, ...]:
    """``"1,3,224,224"`` or ``"1x3x224x224"`` -> ``(1, 3, 224, 224)``.

    Every dimension must be a positive integer, and there must be ``rank`` of them when it is
    given. Raises ``ValueError`` naming the text and what was expected.
    """
    try:
        dims = tuple(int(part) for part in text.strip().replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1 or (rank is not None and len(dims) != rank):
        if rank is None:
            expected = "positive integers separated by ',' or 'x'"
        else:
            expected = f"{_COUNT_WORDS.get(rank, rank)} positive integers{_AXIS_NAMES.get(rank, '')}"
        raise ValueError(f"{text!r} is not a shape like 1,3,224,224 ({expected})")
    return dims
