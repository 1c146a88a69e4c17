"""The one parser of tensor shapes written as text: ``1,3,224,224`` or ``1x3x224x224``, and the
min/opt/max shape range of each input that TensorRT calls an optimization profile.

Used by the command line (``--input-shape``, ``--input-names``, ``--min/opt/max-shape``), by the
engine builder (:func:`exporter.trt.engine.build_engine`) and by serving (the TensorRT EP's profile
and the range a server accepts); a shape may carry the input's name (``image:1x3x224x224``) for
models with several inputs. Light: imports nothing beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

Shape = tuple[int, ...]

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


@dataclass
class InputProfile:
    """Shapes of one network input: ``min <= opt <= max`` element-wise (all equal when static).

    ``dynamic`` is whether the ONNX input has a dynamic dimension: TensorRT then needs an
    optimization profile for it, even when ``min == opt == max`` (one fixed shape of a dynamic
    input, as ``--opt-shape`` alone gives for the default dynamic-batch export).
    """

    name: str
    min: Shape
    opt: Shape
    max: Shape
    dynamic: bool = False

    def contains(self, shape: Shape) -> bool:
        """Whether ``shape`` has this input's rank and lies within ``min..max`` in every dim."""
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True))

    def range_text(self) -> str:
        """``1x3x128x128..8x3x512x512`` (or the one shape, when min == max)."""
        low, high = ("x".join(map(str, shape)) for shape in (self.min, self.max))
        return low if low == high else f"{low}..{high}"



def parse_shapes(text: str | None) -> dict[str | None, Shape]:
    """``"input:1x3x224x224,other:1x8"`` or ``"1x3x224x224"`` (the only input) -> {name: shape}."""
    if not text:
        return {}
    shapes = {}
    for item in text.split(","):
        try:
            name, dims = parse_named_shape(item)
            shapes[name] = dims
        except ValueError as err:
            raise ValueError(f"shape {item!r} is not like 1x3x224x224 (or name:1x3x224x224) with positive dims") \
                from err
    return shapes


def _shape_for(name: str, shapes: dict, single: bool) -> Shape | None:
    if name in shapes:
        return shapes[name]
    return shapes.get(None) if single else None


def resolve_profiles(inputs: dict[str, tuple], min_shapes: dict, opt_shapes: dict,
                     max_shapes: dict) -> list[InputProfile]:
    """One :class:`InputProfile` per input, checked against its static dims.

    A dynamic input needs at least one of min/opt/max; the missing ones default to ``opt`` (or the
    one given). Raises ValueError naming the input and what to pass.
    """
    known = set(inputs) | {None}
    for given in (min_shapes, opt_shapes, max_shapes):
        unknown = set(given) - known
        if unknown:
            raise ValueError(f"shape given for unknown input(s) {sorted(map(str, unknown))}; the model's inputs are "
                             f"{sorted(inputs)}")
        if None in given and len(inputs) != 1:
            raise ValueError(f"the model has inputs {sorted(inputs)}: name each shape, as input:1x3x224x224")
    single = len(inputs) == 1
    profiles = []
    for name, dims in inputs.items():
        lo, mid, hi = (_shape_for(name, s, single) for s in (min_shapes, opt_shapes, max_shapes))
        dynamic = any(not isinstance(d, int) or d < 1 for d in dims)
        if lo is None and mid is None and hi is None:
            if dynamic:
                example = "x".join(str(d) if isinstance(d, int) and d > 0 else "1" for d in dims)
                raise ValueError(f"input {name!r} has dynamic dims {list(dims)}: give opt_shapes (and min_shapes/"
                                 f"max_shapes for a range), e.g. opt_shapes={example!r}")
            profiles.append(InputProfile(name, dims, dims, dims, dynamic))
            continue
        given = [(label, shape) for label, shape in (("min", lo), ("opt", mid), ("max", hi)) if shape is not None]
        mid = mid or lo or hi
        lo, hi = lo or mid, hi or mid
        for label, shape in given:
            if len(shape) != len(dims) or any(isinstance(d, int) and d > 0 and d != s for d, s in zip(dims, shape,
                                                                                                     strict=True)):
                raise ValueError(f"{label}_shapes {'x'.join(map(str, shape))} does not fit input {name!r} with dims "
                                 f"{list(dims)} (rank and static dims must match)")
        if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise ValueError(f"input {name!r}: shapes must satisfy min <= opt <= max in every dim, got "
                             f"{lo} / {mid} / {hi}")
        profiles.append(InputProfile(name, lo, mid, hi, dynamic))
    return profiles
