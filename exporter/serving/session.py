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

from .datatypes import kserve_from_ort

TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
PROVIDER_PREFERENCE = (TENSORRT_EP, CUDA_EP, CPU_EP)
PROVIDER_ALIASES = {"tensorrt": TENSORRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}
GPU_PROVIDERS = frozenset({TENSORRT_EP, CUDA_EP})


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: KServe datatype and shape, ``-1`` for a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_metadata(self) -> dict:
        """The KServe v2 metadata entry ``{"name", "datatype", "shape"}``."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def leading_dims_dynamic(specs: list[TensorSpec]) -> bool:
    """True when every tensor has a first dimension of any size: the model can run stacked batches."""
    return all(spec.shape and spec.shape[0] == -1 for spec in specs)


def select_providers(preference: str = "auto", available: list[str] | None = None) -> list[str]:
    """Execution providers to create the session with, best first.

    ``preference`` is ``"auto"`` (every available one of TensorRT EP, CUDA EP, CPU, in that order)
    or one of ``tensorrt``, ``cuda``, ``cpu`` (that one, then CPU as the fallback for the nodes it
    cannot run). ``available`` defaults to ``onnxruntime.get_available_providers()``.
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if preference == "auto":
        return [p for p in PROVIDER_PREFERENCE if p in available]
    if preference not in PROVIDER_ALIASES:
        raise ValueError(f"provider {preference!r} is not one of auto, {', '.join(PROVIDER_ALIASES)}")
    wanted = PROVIDER_ALIASES[preference]
    if wanted not in available:
        raise RuntimeError(
            f"ONNX Runtime here has no {wanted} (available: {', '.join(available)}); "
            "install onnxruntime-gpu for the CUDA and TensorRT providers, or use --provider auto"
        )
    return [wanted] if wanted == CPU_EP else [wanted, CPU_EP]


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
        providers: list[str] | None = None,
        *,
        io_binding: bool | None = None,
        intra_op_threads: int = 0,
    ):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path} does not exist")
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
