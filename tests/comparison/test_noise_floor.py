"""The noise-floor verdict's parts (floor, sizes of a dynamic-H/W file, report) and no false
alarms on honest exports: every export mode at two input sizes with three seeds of inputs.

The full-size registry sweep is ``tests/comparison/test_noise_floor_registry.py`` (``slow``).
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exporter.comparison.compare import compare
from exporter.comparison.defaults import NOISE_FLOOR_MULTIPLE, check_sizes
from exporter.comparison.verdicts import noise_floors
from exporter.onnx.export import export_onnx
from tests.helpers.export_models import small_rf_net

SEEDS = (0, 1, 2)
MODES = {  # export_onnx settings of each export mode
    "static": {},
    "dynamic-hw": {"dynamic_hw": True},
    "fp16": {"precision": "fp16"},
    "plugin": {"mode": "plugin"},
}


def test_check_sizes():
    assert check_sizes((224, 224)) == [(224, 224), (223, 223), (257, 257)]
    assert check_sizes((20, 31)) == [(20, 31), (19, 29), (33, 33)]
    for h in (16, 17, 224, 255, 256):
        (_, _), (small, _), (large, _) = check_sizes((h, h))
        assert small < h and small % 2 == 1
        assert large > h
        size = large
        for _ in range(5):  # five stride-2 stages (k3, pad 1: ceil(n / 2)) all halve an odd size
            assert size % 2 == 1
            size = (size + 1) // 2


def test_noise_floor_is_the_largest_error_with_an_eps_minimum():
    ref = [{"y": np.array([1.0, -4.0, 2.0])}, {"y": np.array([0.5, 0.0, 0.0])}]
    low = [{"y": np.array([1.0, -4.0 + 3e-6, 2.0])}, {"y": np.array([0.5, 1e-6, 0.0])}]
    assert noise_floors(low, ref, eps=2.0 ** -23) == {"y": pytest.approx(3e-6)}
    exact = [{"y": r["y"].copy()} for r in ref]  # fp32 happens to be exact: the floor is eps * scale
    assert noise_floors(exact, ref, eps=2.0 ** -23) == {"y": pytest.approx(4 * 2.0 ** -23)}


@pytest.fixture(scope="module")
def net():
    return small_rf_net(0)


@pytest.fixture(scope="module")
def exports(net, tmp_path_factory):
    """Every export mode of one small net (about 15 s once per module, in CI: the honest exports the
    noise-floor verdict must pass in every mode, which no faster fixture covers)."""
    folder = tmp_path_factory.mktemp("modes")
    paths = {}
    for mode, settings in MODES.items():
        paths[mode] = folder / f"{mode}.onnx"
        export_onnx(net, torch.randn(1, 3, 20, 20), paths[mode], **settings)
    return paths


def _backends(mode):
    return ["torch", "ort-cpu"]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("hw", [20, 27])
def test_honest_exports_pass_at_default_settings(exports, net, mode, hw):
    if mode != "dynamic-hw" and hw != 20:
        from exporter.onnx.export import export_onnx as export

        path = exports[mode].with_name(f"{mode}_{hw}.onnx")
        export(net, torch.randn(1, 3, hw, hw), path, **MODES[mode])
    else:
        path = exports[mode]
    shape = (1, 3, hw, hw) if mode == "dynamic-hw" else None
    for seed in SEEDS:
        report = compare(path, net, backends=_backends(mode), seed=seed, input_shape=shape)
        assert report.passed, report.format_table()
        assert report.verdict_mode == "noise-floor"
        assert report.per_layer.status == "ran" and len(report.per_layer.layers) == 7
        assert len(report.sizes) == (3 if mode == "dynamic-hw" else 1)
        worst = max(s.floor_multiple for p in [*report.comparisons, *report.per_layer.pairs] for s in p.outputs)
        assert worst <= NOISE_FLOOR_MULTIPLE


def test_report_json_has_floors_multiples_layers_and_sizes(exports, net, tmp_path):
    from exporter.cli import main

    path = tmp_path / "report.json"
    assert main(["compare", str(exports["dynamic-hw"]), "--model", "tests.helpers.export_models:tiny_factory",
                 "--backends", "torch,ort-cpu", "--input-shape", "1,3,20,20", "--report", str(path)]) == 1
    # tiny_factory is small_rf_net(1): other weights than the export's, so it fails
    report = json.loads(path.read_text())
    assert report["verdict_mode"] == "noise-floor" and report["passed"] is False
    assert report["sizes"] == [[1, 3, 20, 20], [1, 3, 19, 19], [1, 3, 33, 33]]
    assert report["noise_floor"]["multiple"] == NOISE_FLOOR_MULTIPLE
    assert report["noise_floor"]["reference"] == "torch-fp64"
    assert [f["input_shape"] for f in report["noise_floor"]["floors"]] == report["sizes"]
    ort = [c for c in report["comparisons"] if c["backend"] == "ort-cpu"]
    assert [c["input_shape"] for c in ort] == report["sizes"]
    assert all(s["floor"] > 0 and s["floor_multiple"] > NOISE_FLOOR_MULTIPLE for c in ort for s in c["outputs"])
    layer_rows = [s for p in report["per_layer"]["pairs"] for s in p["outputs"]]
    assert len(layer_rows) == 3 * 7  # ort-cpu (torch's are the floors), three sizes, seven layers
    assert all(s["ring_max_abs"] is not None and s["interior_max_abs"] is not None for s in layer_rows)


def test_ring_and_interior_split_the_layer_error(exports, net):
    report = compare(exports["static"], net, backends=["torch", "ort-cpu"])
    for pair in report.per_layer.pairs:
        for stats in pair.outputs:
            assert max(stats.ring_max_abs, stats.interior_max_abs) == pytest.approx(stats.max_abs)


def test_tolerance_verdict_and_outputs_only(exports, net, capsys):
    from exporter.cli import main

    assert main(["compare", str(exports["static"]), "--model", "tests.helpers.export_models:small_rf_net",
                 "--backends", "torch,ort-cpu", "--verdict", "tolerance", "--outputs-only"]) == 0
    out = capsys.readouterr().out
    assert "verdict tolerance" in out and "torch-fp64" not in out and "Per-layer: not requested" in out


def test_floor_runner_layers_are_judged_only_under_a_user_tolerance(exports, net):
    """Without a tolerance torch's layer errors are the floors (multiple 1), so only the other
    backends have layer rows; a tolerance can fail PyTorch itself, so then torch is judged too."""
    default = compare(exports["static"], net, backends=["torch", "ort-cpu"])
    assert default.passed and {p.backend for p in default.per_layer.pairs} == {"ort-cpu"}
    tight = compare(exports["static"], net, backends=["torch", "ort-cpu"], rtol=1e-12, atol=1e-12)
    assert {p.backend for p in tight.per_layer.pairs} == {"torch", "ort-cpu"}
    assert tight.per_layer.floor_runner is None
    assert not any(p.passed for p in tight.per_layer.pairs if p.backend == "torch")


@pytest.mark.parametrize("form", ["file", "folder"])
def test_dynamic_file_saves_every_size(exports, net, tmp_path, form):
    """--save-results/--save-inputs keep every checked size of a dynamic-H/W file (they used to keep
    the export size only): each size's inputs have its shape, and its saved ONNX Runtime outputs
    are what ONNX Runtime gives on those inputs; all of it inside the folder named."""
    import onnxruntime
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    results = tmp_path / ("results.json" if form == "file" else "results")
    inputs = tmp_path / "inputs.json"
    report = compare(exports["dynamic-hw"], net, backends=["torch", "ort-cpu"], input_shape=(1, 3, 20, 20),
                     save_results=str(results), save_inputs=str(inputs))
    assert report.saved["results"] == str(results) and report.saved["inputs"] == str(inputs)
    assert list(report.saved["sizes"]) == ["20x20", "19x19", "33x33"]
    session = onnxruntime.InferenceSession(str(exports["dynamic-hw"]), providers=["CPUExecutionProvider"])
    for label, paths in report.saved["sizes"].items():
        assert Path(paths["inputs"]).is_relative_to(tmp_path) and Path(paths["results"]).is_relative_to(tmp_path)
        (feed,) = load_json(paths["inputs"])
        assert list(feed["input"].shape) == [1, 3, *map(int, label.split("x"))]
        (run,) = RunResults.load_streaming(paths["results"])
        saved_ort = dict(run)["ort-cpu"][0]["output"]
        np.testing.assert_allclose(saved_ort, session.run(None, {"input": feed["input"]})[0], rtol=1e-6, atol=1e-6)


def test_reference_copy_converts_without_touching_the_model():
    """The float64 reference model: every floating parameter and buffer in float64, integer buffers
    kept, tied weights still tied, outputs equal to deepcopy + double, the caller's model unchanged."""
    from torch import nn

    from exporter.comparison.runs import copy_as as _copy_as

    net = small_rf_net(0)
    head = nn.Linear(4, 4)
    tied = nn.Sequential(head, nn.ReLU(), nn.Linear(4, 4))
    tied[2].weight = head.weight
    for model in (net, tied):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        copy64 = _copy_as(model, torch.float64)
        assert not copy64.training
        for name, value in copy64.state_dict().items():
            assert value.dtype == (torch.float64 if before[name].is_floating_point() else before[name].dtype), name
        assert all(torch.equal(v, before[k]) and v.dtype == before[k].dtype for k, v in model.state_dict().items())
    copied = _copy_as(tied, torch.float64)
    assert copied[2].weight is copied[0].weight
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    with torch.inference_mode():
        assert torch.equal(_copy_as(net, torch.float64)(x), copy.deepcopy(net).double().eval()(x))
