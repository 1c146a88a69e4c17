"""Noise-floor multiples of honest exports: the measurements K (``NOISE_FLOOR_MULTIPLE``) rests on.

For each model, export mode, input size and seed of inputs it exports the model, runs
``compare`` (torch, ort-cpu; default settings) and records, per backend, the largest multiple
of the noise floor over the model outputs and over the rectified layers. Honest exports must
stay below K with margin; see benchmarks/README.md, "Noise-floor verdict".

    python -m benchmarks.noise_floor --models resnet50,resnet101,resnext50_32x4d,regnet_x_4gf,resnest50 \\
        --sizes 64,97 --json artifacts/bench/noise_floor.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from exporter.comparison.compare import compare
from exporter.model.registry import load_model
from exporter.onnx.export import export_onnx

MODES = {"static": {}, "dynamic-hw": {"dynamic_hw": True}, "fp16": {"precision": "fp16"}, "plugin": {"mode": "plugin"}}


def measure(model_name: str, mode: str, hw: int, seeds, workdir: Path) -> list[dict]:
    model = load_model(model_name)
    path = workdir / f"{model_name.replace(':', '_')}_{mode}_{hw}.onnx"
    export_onnx(model, torch.randn(1, 3, hw, hw), path, **MODES[mode])
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        report = compare(path, model, backends=["torch", "ort-cpu"], seed=seed,
                         input_shape=(1, 3, hw, hw) if mode == "dynamic-hw" else None)
        for backend in ("torch", "ort-cpu"):
            outs = [s.floor_multiple for p in report.comparisons if p.backend == backend for s in p.outputs]
            layers = [s.floor_multiple for p in report.per_layer.pairs if p.backend == backend for s in p.outputs]
            rows.append({"model": model_name, "mode": mode, "hw": hw, "seed": seed, "backend": backend,
                         "passed": report.passed, "sizes": report.sizes,
                         "max_output_multiple": max(outs, default=None),
                         "max_layer_multiple": max(layers, default=None),
                         "seconds": round(time.perf_counter() - start, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tests.helpers.export_models:small_rf_net")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--sizes", default="20,27")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for mode in args.modes.split(","):
                for hw in map(int, args.sizes.split(",")):
                    rows += measure(name, mode, hw, [int(s) for s in args.seeds.split(",")], Path(tmp))
    for mode in args.modes.split(","):
        sel = [r for r in rows if r["mode"] == mode and r["backend"] == "ort-cpu"]
        print(f"{mode:<11} ort-cpu: max output multiple {max(r['max_output_multiple'] for r in sel):.2f}, "
              f"max layer multiple {max(r['max_layer_multiple'] or 0 for r in sel):.2f}, "
              f"all passed: {all(r['passed'] for r in sel)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
