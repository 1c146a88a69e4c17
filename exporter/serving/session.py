"""The ONNX Runtime session behind the server: tensor specs, the served shape range, warm-up.

Providers and sessions come from :mod:`exporter.backends.ort` (no CPU fallback: a provider that
was asked for runs, or the session is not made). ONNX Runtime places every node on the first
provider in the list that can run it. With ``io_binding`` a run binds its host inputs and lets
ONNX Runtime allocate the outputs on the provider's device, then copies them back: the same
host-to-device and device-to-host copies ``session.run`` makes (no pinned memory, no overlap
with compute); it is kept as an option, not as a speed-up.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporter.backends.availability import GPU_PROVIDERS
from exporter.backends.ort import auto_providers, create_session, provider_names, session_options, tf32_enabled
from exporter.serving.datatypes import kserve_from_ort, numpy_dtype
from exporter.shapes import InputProfile, parse_shapes, resolve_profiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: KServe datatype and shape, ``-1`` for a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_metadata(self) -> dict:
        """The KServe v2 metadata entry ``{"name", "datatype", "shape"}``."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; FileNotFoundError naming ``what`` when it is missing or a directory."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


def leading_dims_dynamic(specs: list[TensorSpec]) -> bool:
    """True when every tensor has a first dimension of any size: the model can run stacked batches."""
    return all(spec.shape and spec.shape[0] == -1 for spec in specs)


def dynamic_past_batch(inputs: list[TensorSpec]) -> bool:
    """True when some input has a dynamic dimension past the first (H or W of a dynamic-H/W export)."""
    return any(d < 1 for spec in inputs for d in spec.shape[1:])


def served_profiles(inputs: list[TensorSpec], max_batch: int, batchable: bool, min_shapes: str | None = None,
                    opt_shapes: str | None = None, max_shapes: str | None = None) -> tuple[InputProfile, ...]:
    """The range of input shapes a server accepts, one :class:`~exporter.shapes.InputProfile` per
    input; ``()`` when no shape is given (any size the model takes).

    Shapes are strings as for :func:`exporter.shapes.parse_shapes`, completed and checked against the
    model's dims by :func:`exporter.shapes.resolve_profiles`. For a ``batchable`` model the range's
    first dim must run from 1 (a request of one row runs alone) to at least ``max_batch`` (the
    largest batch the server stacks). ValueError says what to give.
    """
    if not (min_shapes or opt_shapes or max_shapes):
        return ()
    profiles = resolve_profiles({spec.name: spec.shape for spec in inputs}, parse_shapes(min_shapes),
                                parse_shapes(opt_shapes), parse_shapes(max_shapes))
    for profile in profiles if batchable else ():
        if profile.min[0] != 1 or profile.max[0] < max_batch:
            low = "x".join(map(str, (1, *profile.min[1:])))
            high = "x".join(map(str, (max_batch, *profile.max[1:])))
            raise ValueError(f"input {profile.name!r}: the shape range's batch (first dim) is {profile.min[0]} to "
                             f"{profile.max[0]}, but this server runs batches of 1 to max_batch={max_batch}: give "
                             f"min_shapes={low!r} and max_shapes={high!r}")
    return tuple(profiles)


NO_PROFILE_NOTE = ("dynamic H/W and no shape range: the TensorRT EP builds an engine for every new input size while "
                   "serving; give --min-shape/--opt-shape/--max-shape")


def missing_profile_note(inputs: list[TensorSpec], profiles: tuple[InputProfile, ...]) -> str | None:
    """:data:`NO_PROFILE_NOTE` when the TensorRT EP would serve ``inputs`` without a profile for
    their H/W (dynamic past the batch, no ``profiles``), else None."""
    return NO_PROFILE_NOTE if not profiles and dynamic_past_batch(inputs) else None


def _spec(node_arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node_arg.shape or ()))
    return TensorSpec(node_arg.name, kserve_from_ort(node_arg.type), shape)


def warm_up_shapes(inputs: list[TensorSpec], profiles: Sequence[InputProfile], max_batch: int,
                   batchable: bool) -> list[dict[str, tuple[int, ...]]]:
    """The input shapes a server runs once before it reports ready, so that TensorRT engine builds
    and cuDNN algorithm searches (per input shape) happen at start, not on a user's request.

    Every batch size the batcher can stack (1 to ``max_batch`` for a ``batchable`` model) at the
    served range's opt H x W, then, at batch 1 and ``max_batch``, every corner of the range's
    dims past the batch (min or max of each). Without ``profiles`` the model's own dims; ``[]``
    when a dim past the batch is dynamic and no range gives its sizes (nothing to warm up at).
    """
    ranges = {p.name: p for p in profiles}
    base: dict[str, tuple[int, ...]] = {}
    for spec in inputs:
        profile = ranges.get(spec.name)
        shape = tuple(profile.opt) if profile else spec.shape
        if any(d < 1 for d in shape[1:]):
            return []
        base[spec.name] = shape
    if batchable:
        batches = list(range(1, max_batch + 1))
    else:
        batches = [max(base[spec.name][0], 1) for spec in inputs[:1]]
    with_batch = {}

    def add(batch: int, dims: dict[str, tuple[int, ...]]) -> None:
        shapes = {name: (batch if batchable else max(shape[0], 1), *shape[1:]) for name, shape in dims.items()}
        with_batch.setdefault(tuple(sorted(shapes.items())), shapes)

    for batch in batches:
        add(batch, base)
    positions = sorted({i for p in profiles for i in range(1, len(p.min)) if p.min[i] != p.max[i]})
    for choice in itertools.product(("min", "max"), repeat=len(positions)):
        corner = {}
        for name, shape in base.items():
            profile, dims = ranges.get(name), list(shape)
            for position, label in zip(positions, choice, strict=True):
                if profile is not None and position < len(dims):
                    dims[position] = getattr(profile, label)[position]
            corner[name] = tuple(dims)
        for batch in sorted({batches[0], batches[-1]}):
            add(batch, corner)
    return list(with_batch.values())


class OrtModel:
    """An ONNX model loaded into ONNX Runtime, run on host arrays.

    ``providers`` (an ONNX Runtime provider list; default :func:`exporter.backends.ort.auto_providers`,
    the best that load, each GPU one left out logged as a warning) are passed to
    :func:`exporter.backends.ort.create_session`: no CPU fallback, and each of ``required``
    (default: every provider given; the first, for the default list) must be in the session, else
    :class:`~exporter.backends.ort.ProviderUnavailable`. ``inputs``/``outputs`` are
    :class:`TensorSpec` lists in graph order; ``providers`` afterwards is what the session
    actually uses, best first; ``tf32`` whether its CUDA EP runs with TF32 (None without one).
    ``io_binding`` defaults to on for GPU providers (see the module docstring for what it copies).
    """

    def __init__(
        self,
        path: str | Path,
        providers: list | None = None,
        *,
        io_binding: bool | None = None,
        intra_op_threads: int = 0,
        required: Sequence[str] | None = None,
    ):
        path = existing_file(path, "ONNX model")
        if not providers:
            providers, left_out = auto_providers()
            for name, reason in left_out.items():
                log.warning("%s is installed but does not load: %s; going on without it", name, reason)
            required = providers[:1] if required is None else required
        elif required is None:
            required = provider_names(providers)
        self.session = create_session(path, providers, session_options(intra_op_threads), required=required)
        self.path = path
        self.providers = self.session.get_providers()
        self.tf32 = tf32_enabled(self.session)
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        if not self.inputs:
            raise ValueError(f"ONNX model {path} has no inputs; there is nothing to serve")
        self.device = "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu"
        self.io_binding = self.device == "cuda" if io_binding is None else io_binding

    @property
    def batchable(self) -> bool:
        """True when every input and output has a leading dimension of any size (the batch)."""
        return leading_dims_dynamic(self.inputs + self.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on host arrays; returns host arrays keyed by output name, in graph order."""
        if not self.io_binding:
            names = [spec.name for spec in self.outputs]
            return dict(zip(names, self.session.run(names, feeds), strict=True))
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for spec in self.outputs:
            binding.bind_output(spec.name, self.device)
        self.session.run_with_iobinding(binding)
        arrays = binding.copy_outputs_to_cpu()
        return {spec.name: array for spec, array in zip(self.outputs, arrays, strict=True)}

    def warm_up(self, shapes: list[dict[str, tuple[int, ...]]],
                report: Callable[[str], None] | None = None) -> list[tuple[dict[str, tuple[int, ...]], float]]:
        """Run once on zeros of each of ``shapes`` (:func:`warm_up_shapes`); returns ``(shapes, seconds)``
        per run and passes one line per run to ``report`` (default: the module log). A failing run
        raises RuntimeError naming the shapes (the server must not report ready)."""
        report = report or log.info
        dtypes = {spec.name: numpy_dtype(spec.datatype) for spec in self.inputs}
        times = []
        for shape in shapes:
            feeds = {name: np.zeros(dims, dtype=dtypes[name]) for name, dims in shape.items()}
            text = ", ".join(f"{name} {'x'.join(map(str, dims))}" for name, dims in shape.items())
            start = time.perf_counter()
            try:
                self.run(feeds)
            except Exception as err:  # noqa: BLE001 - ORT raises its own pybind exception types
                raise RuntimeError(f"warm-up run at {text} failed on {self.providers[0]}: {err}") from err
            seconds = time.perf_counter() - start
            times.append((shape, seconds))
            report(f"warm-up on {self.providers[0]}: {text} in {seconds * 1000:.1f} ms")
        return times
