"""The one parser of tensor shapes written as text: ``1,3,224,224`` or ``1x3x224x224``.

Used by the command line (``--input-shape``, ``--input-names``, ``--min/opt/max-shape``) and by the
TensorRT profile strings of :func:`exporter.trt.engine.build_engine`; a shape may carry the input's
name (``image:1x3x224x224``) for models with several inputs. Light: imports nothing.
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


def parse_named_shape(text: str, rank: int | None = None) -> tuple[str | None, tuple[int, ...]]:
    """``"image:1x3x224x224"`` -> ``("image", (1, 3, 224, 224))``; ``"1,3,224,224"`` -> ``(None, ...)``.

    The dims are read by :func:`parse_shape`; the name is what comes before the last ``:``.
    """
    name, _, dims = text.strip().rpartition(":")
    if _ and not name:
        raise ValueError(f"{text!r} has an empty input name before ':' (write name:1x3x224x224)")
    return (name or None), parse_shape(dims, rank)


def input_shapes(names, shapes, default: tuple[int, ...]) -> tuple[list[str] | None, list[tuple[int, ...]]]:
    """The names and shapes of a model's example inputs, from ``input_names`` and ``input_shape``.

    ``names`` (or None: the exporter's defaults) gives the inputs in ``forward``'s order;
    ``shapes`` are ``(name or None, dims)`` pairs from :func:`parse_named_shape`: all unnamed, one
    per input in that order, or all named, one per input in any order (their order gives the names
    when ``names`` is None). No shapes: ``default`` for a single input. One input must be
    ``[N, C, H, W]``. Returns ``(names, shapes)`` in input order; ValueError says what to give.
    """
    shapes = list(shapes or [])
    if not shapes:
        if names is not None and len(names) > 1:
            raise ValueError(f"give input_shape for each of the inputs {', '.join(names)} (one per input, or "
                             "name:1x3x224x224)")
        return (list(names) if names else None), [tuple(default)]
    labelled = [name for name, _ in shapes if name is not None]
    if labelled and len(labelled) != len(shapes):
        raise ValueError("input_shape: name every shape (name:1x3x224x224) or none of them")
    if labelled:
        if len(set(labelled)) != len(labelled):
            raise ValueError(f"input_shape names an input twice: {', '.join(labelled)}")
        names = list(names) if names is not None else labelled
        unknown = [name for name in labelled if name not in names]
        missing = [name for name in names if name not in labelled]
        if unknown or missing:
            raise ValueError(f"input_shape names {', '.join(labelled)} but input_names are {', '.join(names)}; "
                             "give one shape per input name")
        by_name = dict(shapes)
        result = [by_name[name] for name in names]
    else:
        result = [dims for _, dims in shapes]
        if names is not None and len(names) != len(result):
            raise ValueError(f"{len(result)} input_shape(s) for {len(names)} input_names ({', '.join(names)}); "
                             "give one shape per input, in order")
    if len(result) == 1 and len(result[0]) != 4:
        raise ValueError(f"{','.join(map(str, result[0]))} is not a shape like 1,3,224,224 (four positive integers "
                         "N,C,H,W): a single input is an image")
    return (list(names) if names is not None else None), result
