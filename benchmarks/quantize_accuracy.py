"""INT8 accuracy of rectified models against fp32: trained digits CNNs and RF-ResNet-50.

1. The small CNN of ``deploy_examples/resolution_study.py``, plain and rectified, trained on
   scikit-learn's digits (same seed and schedule as the study), exported, quantized with
   :func:`exporter.quantize.quantize.quantize_onnx` (calibration: an ``.npz`` of 64 training
   images) and run on ONNX Runtime: test accuracy fp32 vs int8. Target: drop <= 0.5 points.
2. RF-ResNet-50 and two plain ResNet-50s (seeded weights, calibrated BatchNorm): the registry's
   plain model (the RF model's weights and BatchNorm statistics, ``build_model(rectify=False)``)
   and one whose BatchNorm is calibrated on the plain architecture itself, as training it would
   have. Each is quantized the same way and evaluated on held-out inputs; reported: the cosine
   similarity of the int8 logits to fp32 (also per input, and centred on the inputs' mean logits,
   which hold most of a seeded network's output). Target: RF >= plain - 0.005. Two kinds of
   data (``--data``): ``random``, i.i.d. uniform pixels (seeded calibration draws, other seeded
   inputs to evaluate); ``photos``, random crops of scikit-learn's two sample photographs,
   calibrated from one (``--calibration-photo``, through the toolkit's folder-of-images loader)
   and evaluated on the other.

The measuring functions live in :mod:`tests.helpers.int8_accuracy`, shared with
``tests/quantize/test_accuracy.py``; this module prints and records them.

Run: ``python -m benchmarks.quantize_accuracy [--epochs 15] [--samples 64] [--evaluation 32] [--digits-samples 64]
[--method percentile] [--data random photos] [--calibration-photo china|flower] [--seed 0] [--skip-digits]
[--skip-resnet] [--exclude-stem]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tests.helpers.int8_accuracy import PHOTOS, digits, resnet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--samples", type=int, default=64, help="ResNet-50 calibration samples")
    parser.add_argument("--evaluation", type=int, default=32, help="ResNet-50 evaluation inputs")
    parser.add_argument("--digits-samples", type=int, default=64, help="digits calibration samples (training images)")
    parser.add_argument("--method", default="percentile")
    parser.add_argument("--data", nargs="+", choices=("random", "photos"), default=["random", "photos"],
                        help="ResNet-50 inputs, each measured in turn: i.i.d. random pixels, crops of scikit-learn's "
                             "sample photographs (default: both)")
    parser.add_argument("--calibration-photo", choices=PHOTOS, default="china",
                        help="with --data photos: the photo whose crops calibrate (the other one evaluates)")
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
            result["resnet50"] = {data: resnet(args.samples, args.method, folder / data, args.evaluation,
                                               args.exclude_stem, args.seed, data, args.calibration_photo)
                                  for data in args.data}
    if "digits" in result:
        drops = [row["drop_points"] for row in result["digits"]["models"].values()]
        print(f"digits: largest int8 drop {max(drops):+.2f} points (target <= 0.5)")
    for data, row in result.get("resnet50", {}).items():
        print(f"RF-ResNet-50 int8 cosine - plain's on {data}: {row['rf_minus_plain']:+.4f} (the registry's plain "
              f"model), {row['rf_minus_plain_own_bn']:+.4f} (BatchNorm calibrated on the plain model; "
              "target >= -0.005)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
