"""Check an exported RF model on every backend before deploying it, from Python.

The same as ``rfconv-deploy export`` followed by ``rfconv-deploy compare``: export the model,
run identical inputs through PyTorch, ONNX Runtime (CPU, CUDA, TensorRT EP) and TensorRT when
this machine has them, and compare every output with PyTorch's. Backends that cannot run here
are listed as skipped with the reason. The second half shows the underlying Polygraphy calls,
for when you want to build your own comparison from our runners.

    python deploy_examples/compare_backends.py --model resnet50 --out artifacts/compare

Exit code 0 only if every comparison passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from polygraphy.backend.onnx import util as onnx_util
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, DataLoader, SimpleCompareFunc

from exporter.backends.runners import TorchRunner
from exporter.comparison.compare import compare
from exporter.model.registry import load_model
from exporter.onnx.export import export_onnx


def high_level(model: torch.nn.Module, onnx_path: Path, out: Path) -> bool:
    """``exporter.comparison.compare.compare``: every backend, noise-floor verdict, every rectified layer, reports."""
    report = compare(
        onnx_path, model,
        backends=["torch", "ort-cpu", "ort-cuda", "ort-trt", "trt", "onnx-ref"],
        skip_unavailable=True,                 # run what this machine has; the report counts the rest
        iterations=2,                          # two batches of seeded random inputs
        save_results=str(out / "results.json"),  # Polygraphy RunResults, for `polygraphy inspect data`
    )
    print(report.format_table())
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report.passed


def low_level(model: torch.nn.Module, onnx_path: Path, input_hw: int) -> bool:
    """The same check for two backends with Polygraphy's Comparator and our PyTorch runner."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    ((name, (dtype, _)),) = onnx_util.get_input_metadata(graph).items()
    inputs = TensorMetadata().add(name, dtype, [1, 3, input_hw, input_hw])  # batch 1 for the dynamic dim
    runners = [
        TorchRunner(model, inputs, [o.name for o in graph.output], device="cpu", name="torch"),
        OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["cpu"]), name="ort-cpu"),
    ]
    results = Comparator.run(runners, data_loader=DataLoader(iterations=2, input_metadata=inputs))
    accuracy = Comparator.compare_accuracy(
        results, comparisons=[(1, 0)],  # ort-cpu against torch: relative errors divide by torch's
        compare_func=SimpleCompareFunc(atol=1e-4, rtol=1e-4, check_error_stat="elemwise"),
    )
    return bool(accuracy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="registry name or package.module:factory")
    parser.add_argument("--input-hw", type=int, default=224, help="input height and width")
    parser.add_argument("--out", default="artifacts/compare", help="folder for the model and reports")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    onnx_path = out / "model.onnx"
    export_onnx(model, torch.randn(1, 3, args.input_hw, args.input_hw), onnx_path)

    passed = high_level(model, onnx_path, out)
    direct = low_level(model, onnx_path, args.input_hw)
    print(f"\nPolygraphy directly, torch vs ort-cpu: {'PASS' if direct else 'FAIL'}")
    return 0 if passed and direct else 1


if __name__ == "__main__":
    sys.exit(main())
