"""No false alarms on the registry (issue #12): every registry model, exported static,
dynamic-H/W, fp16 and plugin mode (run on ONNX Runtime CPU through the reference op), at two
input sizes, passes ``compare`` at default settings for three seeds of inputs, on ONNX Runtime CPU
and, where OpenVINO is installed, on OpenVINO CPU (``ov-cpu``; not plugin mode, which it refuses).

Full size, so ``slow`` (about an hour on 2 CPU cores):

    python -m pytest -m slow tests/comparison/test_noise_floor_registry.py
"""

import pytest
import torch

from exporter.backends import availability
from exporter.comparison.compare import compare
from exporter.comparison.defaults import NOISE_FLOOR_MULTIPLE
from exporter.model.registry import REGISTRY, load_model
from exporter.onnx.export import export_onnx

# fixed H/W unless dynamic-hw (dense registry models default to dynamic H/W since their spec carries it)
MODES = {"static": {"dynamic_hw": False}, "dynamic-hw": {"dynamic_hw": True},
         "fp16": {"precision": "fp16", "dynamic_hw": False}, "plugin": {"mode": "plugin", "dynamic_hw": False}}
SIZES = (224, 193)  # the standard size and an odd one where every stride-2 stage rounds
SEEDS = (0, 1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_exports_pass_at_default_settings(name, mode, tmp_path):
    model = load_model(name)
    backends = ["torch", "ort-cpu"]
    if mode != "plugin" and availability.ov_cpu().available:
        backends.append("ov-cpu")
    for hw in SIZES:
        path = tmp_path / f"{name}_{mode}_{hw}.onnx"
        export_onnx(model, torch.randn(1, 3, hw, hw), path, **MODES[mode])
        for seed in SEEDS:
            report = compare(path, model, backends=backends, seed=seed,
                             input_shape=(1, 3, hw, hw) if mode == "dynamic-hw" else None)
            assert report.passed, report.format_table()
            assert report.ran[:len(backends)] == backends
            assert report.per_layer.status == "ran" and report.per_layer.layers
            worst = max(s.floor_multiple for p in [*report.comparisons, *report.per_layer.pairs] for s in p.outputs)
            assert worst <= NOISE_FLOOR_MULTIPLE
