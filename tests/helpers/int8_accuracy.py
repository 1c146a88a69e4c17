"""INT8 accuracy of rectified models against fp32: trained digits CNNs and RF-ResNet-50.

Shared by ``tests/quantize/test_accuracy.py`` and ``python -m benchmarks.quantize_accuracy``
(which prints and records what these functions return; its results are in benchmarks/README.md).

1. :func:`digits`: the small CNN of ``deploy_examples/resolution_study.py``, plain and rectified,
   trained on scikit-learn's digits (same seed and schedule as the study), exported, quantized with
   :func:`exporter.quantize.quantize.quantize_onnx` (calibration: an ``.npz`` of training images)
   and run on ONNX Runtime: test accuracy fp32 vs int8, and the drop in points.
2. :func:`resnet`: RF-ResNet-50 and two plain ResNet-50s (seeded weights, calibrated BatchNorm):
   the registry's plain model (the RF model's weights and BatchNorm statistics,
   ``build_model(rectify=False)``) and one whose BatchNorm is calibrated on the plain architecture
   itself. Each is quantized the same way and evaluated on held-out inputs: the cosine similarity
   of the int8 logits to fp32 (also per input, and centred on the inputs' mean logits). ``data``
   is ``"random"`` (i.i.d. uniform pixels) or ``"photos"`` (random crops of scikit-learn's two
   sample photographs, calibrated from one and evaluated on the other).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

from tests.helpers.export_models import ort_session

ROOT = Path(__file__).resolve().parents[2]


def export_quietly(model, example, path: Path) -> Path:
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
        fp32 = export_quietly(model, torch.zeros(1, 1, CANVAS, CANVAS), folder / f"digits_{kind}.onnx")
        int8 = folder / f"digits_{kind}_int8.onnx"
        quantize_onnx(fp32, int8, calibration=str(calibration), samples=samples, method=method)
        accuracy = {}
        for precision, path in (("fp32", fp32), ("int8", int8)):
            logits = ort_session(path).run(None, {"input": x_test})[0]
            accuracy[precision] = float(np.mean(logits.argmax(1) == y_test.numpy()))
        rows[kind] = {**accuracy, "drop_points": 100 * (accuracy["fp32"] - accuracy["int8"]),
                      "seconds": time.perf_counter() - start}
        print(f"  digits {kind:<9} fp32 {accuracy['fp32']:.4f}  int8 {accuracy['int8']:.4f}  "
              f"drop {rows[kind]['drop_points']:+.2f} points", flush=True)
    return {"epochs": epochs, "test_images": len(y_test), "models": rows}


def cosine(candidate: np.ndarray, reference: np.ndarray) -> float:
    a, b = candidate.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


RESNET_EVALUATION_BATCH = 8  # evaluation inputs per ONNX Runtime run (bounded memory)


def logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort_session(path)
    return np.concatenate([session.run(None, {"input": x[i:i + RESNET_EVALUATION_BATCH]})[0]
                           for i in range(0, len(x), RESNET_EVALUATION_BATCH)])


def resnet50s() -> dict:
    """RF-ResNet-50, the registry's plain ResNet-50 (same weights and BatchNorm statistics) and
    that plain model with its BatchNorm calibrated again, on itself (same seed, so the same
    gamma and beta and calibration images)."""
    from exporter.model.registry import build_model, calibrate_batchnorm

    return {"rf": build_model("resnet50", rectify=True), "plain": build_model("resnet50", rectify=False),
            "plain_own_bn": calibrate_batchnorm(build_model("resnet50", rectify=False), seed=0)}


PHOTOS = ("china", "flower")  # scikit-learn's sample photographs (sklearn/datasets/images/*.jpg, 640 x 427)
EVALUATION_SEED = 1000  # draws the evaluation inputs (random pixels or photo crops), never a calibration seed


def photo_crops(photo: str, count: int, seed: int, folder: Path) -> Path:
    """Write ``count`` random square crops of the sample photograph ``photo`` (one of :data:`PHOTOS`)
    as PNG files into ``folder / photo`` and return that folder.

    Each crop's side is 50-100 % of the photo's short side (427 px), placed at random and mirrored
    half the time (``seed`` draws them); the toolkit's image loader then resizes and centre-crops
    it to 224 x 224 and normalises it like ImageNet evaluation.
    """
    from PIL import Image, ImageOps
    from sklearn.datasets import load_sample_image

    if photo not in PHOTOS:
        raise ValueError(f"photo {photo!r} is not one of {', '.join(PHOTOS)}")
    image = Image.fromarray(load_sample_image(f"{photo}.jpg"))
    rng = np.random.default_rng(seed)
    target = folder / photo
    target.mkdir(parents=True)
    short = min(image.size)
    for index in range(count):
        side = int(short * rng.uniform(0.5, 1.0))
        left, top = int(rng.integers(0, image.width - side + 1)), int(rng.integers(0, image.height - side + 1))
        crop = image.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crop.save(target / f"{index:03d}.png")
    return target


def _evaluation_inputs(data: str, count: int, calibration_photo: str, fp32: Path, folder: Path) -> np.ndarray:
    """``[count, 3, 224, 224]`` float32 held-out inputs: seeded random pixels, or crops of the photo
    that does not calibrate, read by the same loader as calibration images."""
    import onnx

    from exporter.onnx.feeds import RANDOM_RANGE
    from exporter.quantize.calibration import calibration_feeds

    if data == "random":
        low, high = RANDOM_RANGE
        return np.random.default_rng(EVALUATION_SEED).uniform(low, high, (count, 3, 224, 224)).astype(np.float32)
    other = next(photo for photo in PHOTOS if photo != calibration_photo)
    crops = photo_crops(other, count, EVALUATION_SEED, folder / "evaluation")
    feeds = calibration_feeds(onnx.load(str(fp32)), str(crops), samples=count)
    return np.concatenate([feed["input"] for feed in feeds])


def resnet(samples: int, method: str, folder: Path, evaluation: int = 32, exclude_stem: bool = False,
           seed: int = 0, data: str = "random", calibration_photo: str = "china") -> dict:
    """Cosine of int8 to fp32 logits of the models of :func:`resnet50s` on ``evaluation`` inputs.

    ``data`` is ``"random"`` (``seed`` draws the random calibration inputs) or ``"photos"``
    (``samples`` crops of ``calibration_photo`` drawn with ``seed`` calibrate, crops of the other
    photo evaluate); every model gets the same calibration and evaluation inputs.
    ``exclude_stem`` leaves each model's first conv (the 7 x 7 stem) in fp32.
    """
    import onnx
    import torch

    from exporter.quantize.quantize import quantize_onnx

    if data not in ("random", "photos"):
        raise ValueError(f"data {data!r} is not 'random' or 'photos'")
    folder.mkdir(parents=True, exist_ok=True)
    calibration = str(photo_crops(calibration_photo, samples, seed, folder / "calibration")) \
        if data == "photos" else "random"
    x = None
    rows = {}
    for kind, model in resnet50s().items():
        fp32 = export_quietly(model, torch.zeros(1, 3, 224, 224), folder / f"resnet50_{kind}.onnx")
        if x is None:
            x = _evaluation_inputs(data, evaluation, calibration_photo, fp32, folder)
        int8 = folder / f"resnet50_{kind}_int8.onnx"
        stem = [next(n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv")] if exclude_stem else []
        quantize_onnx(fp32, int8, calibration=calibration, samples=samples, method=method, exclude=stem, seed=seed)
        want, got = logits(fp32, x), logits(int8, x)
        centred_got, centred_want = got - got.mean(0), want - want.mean(0)
        rows[kind] = {"cosine": cosine(got, want),
                      "per_input_cosine": float(np.mean([cosine(g, w) for g, w in zip(got, want, strict=True)])),
                      "centred_cosine": cosine(centred_got, centred_want),
                      "mean_share": float(np.sum(want.mean(0) ** 2) * len(want) / np.sum(want.astype(np.float64) ** 2)),
                      "scaled_error": float(np.abs(got - want).max() / np.abs(want).max()),
                      "top1_agreement": float(np.mean(got.argmax(1) == want.argmax(1)))}
        row = rows[kind]
        print(f"  resnet50 {kind:<12} int8 cosine {row['cosine']:.4f} (per input {row['per_input_cosine']:.4f}; "
              f"centred on the inputs' mean {row['centred_cosine']:.4f}, the mean holds {row['mean_share']:.3f} of "
              f"the logits' energy)  scaled error {row['scaled_error']:.3f}  top-1 agreement "
              f"{row['top1_agreement']:.2f}", flush=True)
    return {"data": data, "calibration_photo": calibration_photo if data == "photos" else None,
            "evaluation_inputs": evaluation, "calibration_seed": seed, "models": rows,
            "rf_minus_plain": rows["rf"]["cosine"] - rows["plain"]["cosine"],
            "rf_minus_plain_own_bn": rows["rf"]["cosine"] - rows["plain_own_bn"]["cosine"]}
