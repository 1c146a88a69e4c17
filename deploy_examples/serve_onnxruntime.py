"""Serve a rectified-conv ONNX model with ONNX Runtime over the KServe v2 protocol: the minimal start.

    python deploy_examples/serve_onnxruntime.py model.onnx --port 8000
    python deploy_examples/client.py --url 127.0.0.1:8000 --model model

The same as ``rfconv-deploy serve model.onnx --port 8000``. Without a model path it first exports
RF-ResNet-50 (seeded weights, 224x224, dynamic batch) to ``artifacts/rf_resnet50.onnx``. The best
ONNX Runtime provider is picked (TensorRT EP, CUDA EP, CPU) and printed; Ctrl-C stops the server
after the requests in flight are answered.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.serving.server import load_service, serve_forever
from exporter.serving.service import ServeConfig

DEFAULT_MODEL = Path("artifacts/rf_resnet50.onnx")


def export_rf_resnet50(path: Path) -> None:
    import torch

    from exporter import build_model, export_onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(build_model("resnet50"), torch.randn(1, 3, 224, 224), path, output_names=["logits"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help=f"ONNX model (default: export {DEFAULT_MODEL})")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    model = args.model
    if model is None:
        model = DEFAULT_MODEL
        if not model.is_file():
            print(f"exporting RF-ResNet-50 to {model} ...", flush=True)
            export_rf_resnet50(model)
    service = load_service(model, ServeConfig(name=model.stem, max_batch=8, max_delay_ms=2.0))
    print(f"serving '{model.stem}': {service.describe()}", flush=True)
    serve_forever(service, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
