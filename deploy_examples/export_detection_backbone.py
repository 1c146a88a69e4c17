"""Detection models: export the rectified backbone, keep the data-dependent head in PyTorch.

    python deploy_examples/export_detection_backbone.py [--out artifacts/detection]

torch.export cannot capture a detector whole: its post-processing (score thresholds, NMS) makes
output sizes depend on the data. The backbone is where the rectified convs are and where the time
goes, so it is what to deploy: this script builds torchvision's SSDlite320-MobileNetV3 (seeded
weights, no download), rectifies it, calibrates the backbone's BatchNorm, exports
``model.backbone`` with ``export_onnx`` (dynamic batch; its feature maps are the outputs), checks
ONNX Runtime against PyTorch, and runs the head and post-processing in PyTorch on the ONNX
Runtime features, comparing the detections with the all-PyTorch model's.
"""

from __future__ import annotations

import argparse
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import torchvision

from exporter import export_onnx, rectify_model
from exporter.model.registry import calibrate_batchnorm

SIZE = 320


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/detection"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    detector = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rectify_model(detector)
    calibrate_batchnorm(detector.backbone, seed=0, input_hw=SIZE)
    detector.eval()

    path = args.out / "ssdlite_backbone.onnx"
    report = export_onnx(detector.backbone, torch.randn(1, 3, SIZE, SIZE), path)
    print(report.summary())

    images = torch.rand(2, 3, SIZE, SIZE)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = session.run(None, {"input": images.numpy()})
    with torch.no_grad():
        reference = detector.backbone(images)
        worst = max(float(np.abs(f - r.numpy()).max() / np.abs(r.numpy()).max())
                    for f, r in zip(features, reference.values(), strict=True))
        print(f"backbone: {len(features)} feature maps, largest relative error ONNX Runtime vs PyTorch {worst:.2e}")

        # The head and post-processing, in PyTorch, on the ONNX Runtime features.
        onnx_features = OrderedDict((key, torch.from_numpy(f)) for key, f in zip(reference, features, strict=True))
        batch = detector.transform(list(images))[0]
        anchors = detector.anchor_generator(batch, list(onnx_features.values()))
        head = detector.head(list(onnx_features.values()))
        detections = detector.postprocess_detections(head, anchors, batch.image_sizes)
        want = detector(list(images))
    for i, (got, ref) in enumerate(zip(detections, want, strict=True)):
        same = got["boxes"].shape == ref["boxes"].shape and bool((got["labels"] == ref["labels"]).all())
        gap = float((got["boxes"] - ref["boxes"]).abs().max()) if same else float("nan")
        print(f"image {i}: {len(got['boxes'])} detections from ONNX Runtime features, {len(ref['boxes'])} "
              f"from PyTorch alone; same labels: {same}, largest box difference {gap:.2g} px")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
