"""The ONNX Runtime session behind the server: provider choice, tensor specs, and IO binding.

Providers are tried in the order TensorRT EP, CUDA EP, CPU; ONNX Runtime places every node on
the first provider in the list that can run it, so listing all available ones gives the fallback
chain. On a GPU provider each run goes through IO binding: inputs are bound from host memory
and copied to the device once, outputs stay on the device until the run ends and are then
copied back once, instead of ONNX Runtime's per-call staging in ``session.run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporter.backends.availability import CPU_EP, CUDA_EP, GPU_PROVIDERS, ORT_PROVIDERS, TENSORRT_EP
from exporter.serving.datatypes import kserve_from_ort
from exporter.shapes import InputProfile, parse_shapes, resolve_profiles

PROVIDER_PREFERENCE = tuple(ORT_PROVIDERS.values())
PROVIDER_ALIASES = {"tensorrt": TENSORRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}


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


def tensorrt_ep_options(inputs: list[TensorSpec], max_batch: int,
                        profiles: tuple[InputProfile, ...] = ()) -> dict[str, str]:
    """TensorRT EP options: one optimization profile (``name:1x3x224x224`` strings).

    With ``profiles`` (:func:`served_profiles`), their min/opt/max shapes for every dynamic input.
    Otherwise batches of 1 to ``max_batch`` rows, when every input has a dynamic batch and fixed
    other dims; else empty. Without a profile the EP rebuilds its engine whenever a shape outside
    all seen before arrives, which under dynamic batching (or any new H x W) means engine builds
    while serving.
    """
    if not profiles:
        if not leading_dims_dynamic(inputs) or dynamic_past_batch(inputs):
            return {}
        profiles = tuple(InputProfile(spec.name, (1, *spec.shape[1:]), (max_batch, *spec.shape[1:]),
                                      (max_batch, *spec.shape[1:]), dynamic=True) for spec in inputs)
    dynamic = [profile for profile in profiles if profile.dynamic]
    return {f"trt_profile_{label}_shapes": ",".join(f"{profile.name}:{'x'.join(map(str, getattr(profile, label)))}"
                                                      for profile in dynamic)
            for label in ("min", "opt", "max")}


NO_PROFILE_NOTE = ("dynamic H/W and no shape range: the TensorRT EP builds an engine for every new input size while "
                   "serving; give --min-shape/--opt-shape/--max-shape")


def missing_profile_note(inputs: list[TensorSpec], profiles: tuple[InputProfile, ...]) -> str | None:
    """:data:`NO_PROFILE_NOTE` when the TensorRT EP would serve ``inputs`` without a profile for
    their H/W (dynamic past the batch, no ``profiles``), else None."""
    return NO_PROFILE_NOTE if not profiles and dynamic_past_batch(inputs) else None


def select_providers(
    preference: str = "auto",
    available: list[str] | None = None,
    tensorrt_options: dict[str, str] | None = None,
) -> list:
    """Execution providers to create the session with, best first.

    ``preference`` is ``"auto"`` (every available one of TensorRT EP, CUDA EP, CPU, in that order)
    or one of ``tensorrt``, ``cuda``, ``cpu`` (that one, then CPU as the fallback for the nodes it
    cannot run). ``available`` defaults to ``onnxruntime.get_available_providers()``. With
    ``tensorrt_options`` the TensorRT EP entry becomes ``(name, options)``, as ONNX Runtime takes it.
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if preference == "auto":
        chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    elif preference not in PROVIDER_ALIASES:
        raise ValueError(f"provider {preference!r} is not one of auto, {', '.join(PROVIDER_ALIASES)}")
    else:
        wanted = PROVIDER_ALIASES[preference]
        if wanted not in available:
            raise RuntimeError(
                f"ONNX Runtime here has no {wanted} (available: {', '.join(available)}); "
                "install onnxruntime-gpu for the CUDA and TensorRT providers, or provider='auto'"
            )
        chosen = [wanted] if wanted == CPU_EP else [wanted, CPU_EP]
    if tensorrt_options:
        return [(p, tensorrt_options) if p == TENSORRT_EP else p for p in chosen]
    return chosen


def _spec(node_arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node_arg.shape or ()))
    return TensorSpec(node_arg.name, kserve_from_ort(node_arg.type), shape)


class OrtModel:
    """An ONNX model loaded into ONNX Runtime, run on host arrays.

    ``inputs``/``outputs`` are :class:`TensorSpec` lists in graph order; ``providers`` is what the
    session actually uses, best first. ``io_binding`` defaults to on for GPU providers.
    """

    def __init__(
        self,
        path: str | Path,
        providers: list | None = None,
        *,
        io_binding: bool | None = None,
        intra_op_threads: int = 0,
    ):
        import onnxruntime

        path = existing_file(path, "ONNX model")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=providers or select_providers()
            )
        except Exception as err:  # noqa: BLE001 - ORT raises its own pybind exception types
            raise ValueError(f"ONNX Runtime cannot load {path}: {err}") from None
        self.path = path
        self.providers = self.session.get_providers()
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
