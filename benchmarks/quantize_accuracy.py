"""INT8 accuracy of rectified models against fp32 (issue 17): trained digits CNNs and RF-ResNet-50.

1. The small CNN of ``deploy_examples/resolution_study.py``, plain and rectified, trained on
   scikit-learn's digits (same seed and schedule as the study), exported, quantized with
   :func:`exporter.quantize.quantize.quantize_onnx` (calibration: an ``.npz`` of 64 training
   images) and run on ONNX Runtime: test accuracy fp32 vs int8. Target: drop <= 0.5 points.
2. RF-ResNet-50 and two plain ResNet-50s (seeded weights, calibrated BatchNorm): the registry's
   plain model (the RF model's weights and BatchNorm statistics, ``build_model(rectify=False)``)
   and one whose BatchNorm is calibrated on the plain architecture itself, as training it would
   have. Each is quantized the same way from seeded random calibration inputs; reported: the
   cosine similarity of the int8 logits to fp32 over held-out random inputs (also per input, and
   centred on the inputs' mean logits, which hold most of a seeded network's output). Target:
   RF >= plain - 0.005.

Run: ``python -m benchmarks.quantize_accuracy [--epochs 15] [--samples 64] [--evaluation 32] [--digits-samples 64]
[--method percentile] [--seed 0] [--skip-digits] [--skip-resnet] [--exclude-stem]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _session(model: Path | bytes):
    """A 2-thread CPU session of the file ``model`` or of a serialized model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def _export(model, example, path: Path) -> Path:
    from exporter.onnx.export import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, example, path)
    return path


def digits(epochs: int, samples: int, method: str, folder: Path, seed: int = 0) -> dict:
    """Test accuracy fp32 vs int8 of the resolution study's CNN, plain and rectified.

    Trains with one torch thread (restored afterwards): the trained weights, and so the
    accuracies, depend on the thread count, and one thread is also the fastest for this CNN on
    a shared machine. ``samples`` training images calibrate.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _digits(epochs, samples, method, folder, seed)
    finally:
        torch.set_num_threads(threads)


def _digits(epochs: int, samples: int, method: str, folder: Path, seed: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "deploy_examples"))
    from resolution_study import CANVAS, place, small_cnn, split, train

    from exporter import rectify_model
    from exporter.quantize.quantize import quantize_onnx

    train_digits, y_train, test_digits, y_test = split()
    x_train = place(train_digits, CANVAS, seed=100 + seed)
    x_test = place(test_digits, CANVAS, seed=1).numpy()
    calibration = folder / "digits_calibration.npz"
    np.savez(calibration, input=x_train[:samples].numpy())
    rows = {}
    for kind in ("plain", "rectified"):
        torch.manual_seed(seed)
        model = small_cnn()
        if kind == "rectified":
            rectify_model(model)
        start = time.perf_counter()
        train(model, x_train, y_train, epochs, seed)
        fp32 = _export(model, torch.zeros(1, 1, CANVAS, CANVAS), folder / f"digits_{kind}.onnx")
        int8 = folder / f"digits_{kind}_int8.onnx"
        quantize_onnx(fp32, int8, calibration=str(calibration), samples=samples, method=method)
        accuracy = {}
        for precision, path in (("fp32", fp32), ("int8", int8)):
            logits = _session(path).run(None, {"input": x_test})[0]
            accuracy[precision] = float(np.mean(logits.argmax(1) == y_test.numpy()))
        rows[kind] = {**accuracy, "drop_points": 100 * (accuracy["fp32"] - accuracy["int8"]),
                      "seconds": time.perf_counter() - start}
        print(f"  digits {kind:<9} fp32 {accuracy['fp32']:.4f}  int8 {accuracy['int8']:.4f}  "
              f"drop {rows[kind]['drop_points']:+.2f} points", flush=True)
    return {"epochs": epochs, "test_images": len(y_test), "models": rows}


def _cosines(candidate: np.ndarray, reference: np.ndarray) -> float:
    a, b = candidate.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


RESNET_EVALUATION_BATCH = 8  # evaluation inputs per ONNX Runtime run (bounded memory)


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = _session(path)
    return np.concatenate([session.run(None, {"input": x[i:i + RESNET_EVALUATION_BATCH]})[0]
                           for i in range(0, len(x), RESNET_EVALUATION_BATCH)])


def _resnet50s() -> dict:
    """RF-ResNet-50, the registry's plain ResNet-50 (same weights and BatchNorm statistics) and
    that plain model with its BatchNorm calibrated again, on itself (same seed, so the same
    gamma and beta and calibration images)."""
    from exporter.model.registry import build_model, calibrate_batchnorm

    return {"rf": build_model("resnet50", rectify=True), "plain": build_model("resnet50", rectify=False),
            "plain_own_bn": calibrate_batchnorm(build_model("resnet50", rectify=False), seed=0)}


def resnet(samples: int, method: str, folder: Path, evaluation: int = 32, exclude_stem: bool = False,
           seed: int = 0) -> dict:
    """Cosine of int8 to fp32 logits of the models of :func:`_resnet50s` on ``evaluation`` inputs;
    ``seed`` draws the random calibration inputs (the same for every model); ``exclude_stem``
    leaves each model's first conv (the 7 x 7 stem) in fp32."""
    import onnx
    import torch

    from exporter.onnx.feeds import RANDOM_RANGE
    from exporter.quantize.quantize import quantize_onnx

    low, high = RANDOM_RANGE
    x = np.random.default_rng(1000).uniform(low, high, (evaluation, 3, 224, 224)).astype(np.float32)
    rows = {}
    for kind, model in _resnet50s().items():
        fp32 = _export(model, torch.zeros(1, 3, 224, 224), folder / f"resnet50_{kind}.onnx")
        int8 = folder / f"resnet50_{kind}_int8.onnx"
        stem = [next(n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv")] if exclude_stem else []
        quantize_onnx(fp32, int8, samples=samples, method=method, exclude=stem, seed=seed)
        want, got = _logits(fp32, x), _logits(int8, x)
        centred_got, centred_want = got - got.mean(0), want - want.mean(0)
        rows[kind] = {"cosine": _cosines(got, want),
                      "per_input_cosine": float(np.mean([_cosines(g, w) for g, w in zip(got, want, strict=True)])),
                      "centred_cosine": _cosines(centred_got, centred_want),
                      "mean_share": float(np.sum(want.mean(0) ** 2) * len(want) / np.sum(want.astype(np.float64) ** 2)),
                      "scaled_error": float(np.abs(got - want).max() / np.abs(want).max()),
                      "top1_agreement": float(np.mean(got.argmax(1) == want.argmax(1)))}
        row = rows[kind]
        print(f"  resnet50 {kind:<12} int8 cosine {row['cosine']:.4f} (per input {row['per_input_cosine']:.4f}; "
              f"centred on the inputs' mean {row['centred_cosine']:.4f}, the mean holds {row['mean_share']:.3f} of "
              f"the logits' energy)  scaled error {row['scaled_error']:.3f}  top-1 agreement "
              f"{row['top1_agreement']:.2f}", flush=True)
    return {"evaluation_inputs": evaluation, "calibration_seed": seed, "models": rows,
            "rf_minus_plain": rows["rf"]["cosine"] - rows["plain"]["cosine"],
            "rf_minus_plain_own_bn": rows["rf"]["cosine"] - rows["plain_own_bn"]["cosine"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--samples", type=int, default=64, help="ResNet-50 calibration samples (random)")
    parser.add_argument("--evaluation", type=int, default=32, help="ResNet-50 evaluation inputs (random)")
    parser.add_argument("--digits-samples", type=int, default=64, help="digits calibration samples (training images)")
    parser.add_argument("--method", default="percentile")
    parser.add_argument("--seed", type=int, default=0, help="ResNet-50 calibration draw")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--exclude-stem", action="store_true", help="leave each ResNet-50's first conv in fp32")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="quantize_accuracy_") as work:
        folder = Path(work)
        result = {"method": args.method, "samples": args.samples, "digits_samples": args.digits_samples}
        if not args.skip_digits:
            result["digits"] = digits(args.epochs, args.digits_samples, args.method, folder)
        if not args.skip_resnet:
            result["resnet50"] = resnet(args.samples, args.method, folder, args.evaluation, args.exclude_stem,
                                        args.seed)
    if "digits" in result:
        drops = [row["drop_points"] for row in result["digits"]["models"].values()]
        print(f"digits: largest int8 drop {max(drops):+.2f} points (target <= 0.5)")
    if "resnet50" in result:
        print(f"RF-ResNet-50 int8 cosine - plain's: {result['resnet50']['rf_minus_plain']:+.4f} (the registry's "
              f"plain model), {result['resnet50']['rf_minus_plain_own_bn']:+.4f} (BatchNorm calibrated on the plain "
              "model; target >= -0.005)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
