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


def tensorrt_ep_options(inputs: list[TensorSpec], max_batch: int) -> dict[str, str]:
    """TensorRT EP options: one optimization profile for batches of 1 to ``max_batch`` rows.

    Without it the EP rebuilds its engine whenever a batch larger than any seen before arrives,
    which under dynamic batching means engine builds while serving. Only set when every input has
    a dynamic batch and fixed other dims (``name:1x3x224x224`` strings); otherwise empty.
    """
    if not leading_dims_dynamic(inputs) or any(d < 1 for spec in inputs for d in spec.shape[1:]):
        return {}

    def shapes(rows: int) -> str:
        return ",".join(f"{s.name}:{'x'.join(str(d) for d in (rows, *s.shape[1:]))}" for s in inputs)

    return {
        "trt_profile_min_shapes": shapes(1),
        "trt_profile_opt_shapes": shapes(max_batch),
        "trt_profile_max_shapes": shapes(max_batch),
    }


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
