"""``rfconv-deploy compare`` end to end on a small exported RF model (CPU backends)."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from polygraphy.comparator import RunResults

from exporter.backends import availability
from exporter.backends.runners import BACKENDS
from exporter.cli import main
from exporter.comparison.compare import compare
from exporter.comparison.defaults import DEFAULT_BACKENDS
from exporter.comparison.layerwise import find_rectified_layers
from exporter.model.registry import load_model
from exporter.onnx.export import export_onnx
from exporter.onnx.precision import file_precision
from tests.helpers.compare_models import DAMAGED_LAYER, DAMAGED_MODULE, INPUT_HW

MODEL_SPEC = "tests.helpers.compare_models:tiny_rf"
CPU_BACKENDS = "torch,ort-cpu,onnx-ref"
OUTPUT = "output"  # the exporter's name for a single model output


def _export(model, path, precision="fp32"):
    export_onnx(model, torch.randn(1, 3, INPUT_HW, INPUT_HW), path, precision=precision)
    return path


@pytest.fixture(scope="module")
def tiny_model():
    return load_model(MODEL_SPEC)


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    return _export(tiny_model, tmp_path_factory.mktemp("fp32") / "tiny.onnx")


@pytest.fixture(scope="module")
def exported_fp16(tiny_model, tmp_path_factory):
    return _export(tiny_model, tmp_path_factory.mktemp("fp16") / "tiny_fp16.onnx", precision="fp16")


@pytest.fixture(scope="module")
def damaged(exported, tmp_path_factory):
    """The export with one scale constant perturbed at a single border position (+20%)."""
    model = onnx.load(str(exported))
    name = find_rectified_layers(model)[DAMAGED_LAYER].scale
    assert sum(name in node.input for node in model.graph.node) == 1  # used by that layer only
    for init in model.graph.initializer:
        if init.name == name:
            value = numpy_helper.to_array(init).copy()
            value.reshape(-1)[0] *= 1.2
            init.CopyFrom(numpy_helper.from_array(value, name))
    path = tmp_path_factory.mktemp("damaged") / "damaged.onnx"
    onnx.save(model, str(path))
    return path, name


def _cli(*args) -> int:
    return main(["compare", *map(str, args)])


def test_torch_ort_and_reference_agree_and_report_is_complete(exported, tmp_path, capsys):
    report_path, results_path = tmp_path / "report.json", tmp_path / "results.json"
    code = _cli(exported, "--model", MODEL_SPEC, "--backends", CPU_BACKENDS, "--iterations", 2,
                "--batch-size", 3, "--report", report_path, "--save-results", results_path,
                "--verdict", "tolerance", "--outputs-only")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Result: PASS" in out and "ort-cpu" in out and "onnx-ref" in out

    report = json.loads(report_path.read_text())
    assert report["passed"] is True and report["verdict"] == "PASS"
    assert report["precision"] == report["model_precision"] == "fp32"
    assert report["tolerances"]["rtol"] == 1e-4
    assert report["tolerances"]["atol"] == "rtol * max|ref| per output"
    assert report["inputs"] == {"source": "random", "seed": 0, "iterations": 2,
                                "shapes": {"input": [3, 3, INPUT_HW, INPUT_HW]}}
    assert [(b["name"], b["status"]) for b in report["backends"]] == [
        ("torch", "ran"), ("ort-cpu", "ran"), ("onnx-ref", "ran")]
    assert all(b["mean_latency_ms"] > 0 for b in report["backends"])
    assert [(c["reference"], c["backend"]) for c in report["comparisons"]] == [
        ("torch", "ort-cpu"), ("torch", "onnx-ref")]
    for comparison in report["comparisons"]:
        (stats,) = comparison["outputs"]
        assert stats["output"] == OUTPUT and stats["passed"] and stats["iterations_passed"] == 2
        for key in ("max_abs", "mean_abs", "median_abs", "max_rel", "mean_rel", "median_rel"):
            assert 0 <= stats[key] < 1e-3, key
        assert stats["median_abs"] <= stats["max_abs"] and stats["mean_abs"] <= stats["max_abs"]
        assert stats["median_rel"] <= stats["max_rel"] and stats["mean_rel"] <= stats["max_rel"]
        assert stats["scaled_error"] == pytest.approx(stats["max_abs"] / stats["reference_max_abs"])
        assert stats["scaled_error"] < 1e-5  # fp32 ORT and numpy agree with PyTorch to rounding
        assert stats["rtol"] == 1e-4 and stats["atol"] == pytest.approx(1e-4 * stats["reference_max_abs"])
        assert stats["cosine_similarity"] > 1 - 1e-9
        assert stats["top1_agreement"] == 1.0
    assert report["per_layer"]["status"] == "not requested (outputs only)"
    assert report["verdict_mode"] == "tolerance" and report["noise_floor"] is None
    assert report["versions"]["polygraphy"] and report["versions"]["onnxruntime"]
    assert report["saved"]["results"] == str(results_path)

    # The saved RunResults load back with Polygraphy and hold the outputs the stats came from.
    results = RunResults.load(str(results_path))
    assert list(results.keys()) == ["torch", "ort-cpu", "onnx-ref"]
    torch_out = [it[OUTPUT] for it in results["torch"]]
    ort_out = [it[OUTPUT] for it in results["ort-cpu"]]
    assert [o.shape for o in torch_out] == [(3, 10)] * 2
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(torch_out, ort_out, strict=True))
    assert worst == pytest.approx(report["comparisons"][0]["outputs"][0]["max_abs"])


def test_damaged_scale_fails_and_per_layer_names_the_layer(damaged, tmp_path, capsys):
    path, scale = damaged
    report_path = tmp_path / "report.json"
    assert _cli(path, "--model", MODEL_SPEC, "--backends", CPU_BACKENDS, "--report", report_path,
                "--outputs-only") == 1
    assert "FAIL" in capsys.readouterr().out
    assert json.loads(report_path.read_text())["per_layer"]["status"] == "not requested (outputs only)"

    code = _cli(path, "--model", MODEL_SPEC, "--backends", CPU_BACKENDS, "--report", report_path)
    out = capsys.readouterr().out
    assert code == 1
    assert f"PyTorch module '{DAMAGED_MODULE}'" in out and scale in out
    assert "did you forget --checkpoint" not in out  # the weights are the model's: only a scale is off
    per_layer = json.loads(report_path.read_text())["per_layer"]
    assert per_layer["status"] == "ran" and len(per_layer["layers"]) == 3
    for divergence in per_layer["first_divergence"]:  # ort-cpu and onnx-ref, each against torch
        assert divergence["layer"]["torch_module"] == DAMAGED_MODULE
        assert divergence["layer"]["scale"] == scale and divergence["layer"]["index"] == DAMAGED_LAYER
        assert divergence["stats"]["max_rel"] == pytest.approx(0.2, rel=1e-3)  # the 20% perturbation
    # the layer before the damage agrees to fp32 precision on both backends
    for pair in per_layer["pairs"]:
        if pair["backend"] != "torch":
            assert pair["outputs"][0]["passed"] and not pair["outputs"][1]["passed"]


def test_fp16_model_passes_at_fp16_tolerance_and_fails_at_fp32(exported_fp16, tiny_model):
    assert file_precision(onnx.load(str(exported_fp16))) == "fp16"
    at_fp16 = compare(exported_fp16, tiny_model, backends=["torch", "ort-cpu"], iterations=2,
                      verdict="tolerance")
    assert at_fp16.precision == "fp16" and at_fp16.tolerances["rtol"] == 1e-2
    assert at_fp16.passed, at_fp16.format_table()
    stats = at_fp16.comparisons[0].outputs[0]
    assert 1e-4 < stats.scaled_error < 1e-2  # fp16 rounding is visible but small

    at_fp32 = compare(exported_fp16, tiny_model, backends=["torch", "ort-cpu"], iterations=2,
                      precision="fp32", verdict="tolerance")
    assert not at_fp32.passed and at_fp32.tolerances["rtol"] == 1e-4
    assert at_fp32.comparisons[0].outputs[0].max_abs == stats.max_abs
    # an explicit absolute tolerance replaces the scale-relative one
    loose = compare(exported_fp16, tiny_model, backends=["torch", "ort-cpu"], iterations=2,
                    precision="fp32", atol=2 * stats.max_abs, verdict="tolerance", outputs_only=True)
    assert loose.passed and loose.comparisons[0].outputs[0].atol == 2 * stats.max_abs


def test_default_backends_that_cannot_run_are_skipped_with_a_reason_and_counted(exported, tiny_model, capsys):
    report = compare(exported, tiny_model)  # the default list: what cannot run here is skipped
    status = {b.name: b for b in report.backends}
    assert list(status) == [*DEFAULT_BACKENDS, "torch-fp64"]  # the float64 ground truth of the noise floor
    # listed is not enough: onnxruntime-gpu lists the GPU providers where their libraries do not load
    expected_missing = {name: availability.why_not(name) is not None for name in ("ort-cuda", "ort-trt", "trt")}
    if not any(expected_missing.values()):
        pytest.skip("every GPU backend is available on this machine")
    for name, missing in expected_missing.items():
        if missing:
            assert status[name].status == "skipped"
            assert ("CUDAExecutionProvider" in status[name].detail if name == "ort-cuda"
                    else "TensorrtExecutionProvider" in status[name].detail if name == "ort-trt"
                    else "tensorrt" in status[name].detail)
    assert report.passed  # skipped backends of the default list do not fail a comparison
    skipped = [name for name, missing in expected_missing.items() if missing]
    ran = len(report.ran)
    assert report.summary().startswith(f"{ran} backends ran, {len(skipped)} skipped: {skipped[0]} (")
    table = report.format_table()
    assert all(f"{name:<9} skipped" in table for name in skipped)
    assert f"Backends: {ran} backends ran, {len(skipped)} skipped" in table
    assert report.to_dict()["summary"] == report.summary()


needs_no_tensorrt = pytest.mark.skipif(availability.tensorrt().available, reason="TensorRT runs on this machine")


@needs_no_tensorrt
def test_named_backend_that_cannot_run_is_an_error_before_the_model_loads(exported, capsys):
    """Was: the torch row, "Result: PASS" and exit 0 without TensorRT. A backend named with
    --backends must run; the error comes before the model is loaded (this model cannot load)."""
    code = _cli(exported, "--model", "no.such.module:factory", "--backends", "torch,trt")
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [
        "rfconv-deploy compare: error: backend 'trt' cannot run here: the tensorrt package is not installed"]


@needs_no_tensorrt
def test_library_named_backend_must_run_unless_skipping_is_asked_for(exported, tiny_model):
    with pytest.raises(ValueError, match="backend 'trt' cannot run here: the tensorrt package is not installed"):
        compare(exported, tiny_model, backends=["torch", "ort-cpu", "trt"])
    report = compare(exported, tiny_model, backends=["torch", "ort-cpu", "trt"], skip_unavailable=True,
                     outputs_only=True)
    assert report.passed and [b.status for b in report.backends][:3] == ["ran", "ran", "skipped"]
    assert "1 skipped: trt (" in report.summary()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_torch_on_cuda_without_a_gpu_is_an_error(exported, tiny_model):
    with pytest.raises(ValueError, match="backend 'torch' cannot run here: torch_device='cuda': no CUDA device "
                                         "visible to torch"):
        compare(exported, tiny_model, backends=["torch", "ort-cpu"], torch_device="cuda")


def test_named_torch_without_a_model_is_an_error(exported, capsys):
    assert _cli(exported, "--backends", "torch,ort-cpu") == 2  # torch named, but no --model
    err = capsys.readouterr().err
    assert "backend 'torch' cannot run here: no PyTorch model given" in err and "--model" in err


def test_fewer_than_two_backends_is_a_failure_with_a_hint_to_give_the_model(exported, capsys):
    if availability.ort_provider("CUDAExecutionProvider", "").available:
        pytest.skip("a second ONNX Runtime backend runs here")
    assert _cli(exported) == 1  # default backends, no --model: only ort-cpu runs here
    out = capsys.readouterr().out
    assert "no PyTorch model given" in out and "fewer than two backends ran" in out
    assert "Result: FAIL" in out and "Hint: give the PyTorch model the file was exported from (--model)" in out


class _TwoOutputs(torch.nn.Module):
    """Returns its inner model's output twice: one more output than the export has."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x)
        return y, y


def test_backend_that_crashes_is_reported_and_fails(exported, tiny_model):
    report = compare(exported, _TwoOutputs(tiny_model), backends=["torch", "ort-cpu", "onnx-ref"])
    torch_status = report.backends[0]
    assert torch_status.status == "error" and "returned 2 output(s)" in torch_status.detail
    assert not report.passed and report.verdict() == "FAIL: a backend failed to run"
    # the backends that did run are still compared, against the first of them
    assert [(p.reference, p.backend, p.passed) for p in report.comparisons] == [("ort-cpu", "onnx-ref", True)]


@pytest.mark.parametrize("args, message", [
    (["--backends", "torch,ort-gpu"], "unknown backend(s) ort-gpu"),
    (["--inputs", "no/such/place"], "is not 'random', a folder of images or an existing JSON file"),
    (["--input-shape", "1,3,8"], "has rank 3"),
    (["--iterations", "0"], "iterations must be >= 1, got 0"),
])
def test_bad_arguments_give_one_line_errors(exported, capsys, args, message):
    assert _cli(exported, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_malformed_shape_is_an_argparse_error(exported, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli(exported, "--input-shape", "1,3,x")
    assert exit_info.value.code == 2
    assert "'1,3,x' is not a shape like 1,3,224,224" in capsys.readouterr().err


def test_missing_onnx_file(tmp_path, capsys):
    assert _cli(tmp_path / "absent.onnx") == 2
    assert "does not exist" in capsys.readouterr().err


def test_per_layer_on_a_dynamic_hw_export(tiny_model, tmp_path):
    """With H/W dynamic the factor is computed from shapes in the graph; layers are found all the same."""
    path = tmp_path / "dynamic.onnx"
    export_onnx(tiny_model, torch.randn(1, 3, INPUT_HW, INPUT_HW), path, dynamic_hw=True)
    model = onnx.load(str(path))
    layers = find_rectified_layers(model)
    assert len(layers) == 3 and not any(name in {i.name for i in model.graph.initializer}
                                        for name in (layer.scale for layer in layers))
    shape = [2, 3, 20, 26]  # another size than the export's, with odd rounding in the stride-2 conv
    assert compare(path, tiny_model, backends=["torch", "ort-cpu"], input_shape=shape).passed

    weight = layers[DAMAGED_LAYER].weight
    for init in model.graph.initializer:
        if init.name == weight:
            value = numpy_helper.to_array(init).copy()
            value[0, 0, 0, 0] += 0.5
            init.CopyFrom(numpy_helper.from_array(value, weight))
    onnx.save(model, str(path))
    report = compare(path, tiny_model, backends=["torch", "ort-cpu"], input_shape=shape)
    assert not report.passed
    assert len(report.per_layer.first_divergence) == 3  # ort-cpu, at each of the three sizes
    for divergence in report.per_layer.first_divergence:
        assert divergence.layer["torch_module"] == DAMAGED_MODULE and divergence.layer["index"] == DAMAGED_LAYER


def test_plugin_mode_export_on_cpu_and_per_layer(tiny_model, tmp_path):
    """A plugin-mode export runs on ort-cpu / onnx-ref through the plugin's reference op; damage
    to a fused BN shift (a plugin input) is located like damage to a scale."""
    path = tmp_path / "plugin.onnx"
    export_onnx(tiny_model, torch.randn(1, 3, INPUT_HW, INPUT_HW), path, mode="plugin")
    assert compare(path, tiny_model, backends=CPU_BACKENDS.split(","), batch_size=2).passed
    model = onnx.load(str(path))
    layers = find_rectified_layers(model)
    assert [layer.activation for layer in layers] == ["relu"] * 3 and all(layer.fused_bias for layer in layers)
    shift = layers[DAMAGED_LAYER].fused_bias
    for init in model.graph.initializer:
        if init.name == shift:
            value = numpy_helper.to_array(init).copy()
            value.reshape(-1)[0] += 1.0
            init.CopyFrom(numpy_helper.from_array(value, shift))
    onnx.save(model, str(path))
    report = compare(path, tiny_model, backends=CPU_BACKENDS.split(","))
    assert not report.passed
    for divergence in report.per_layer.first_divergence:
        assert divergence.layer["torch_module"] == DAMAGED_MODULE and divergence.layer["fused_bias"] == shift
        assert divergence.layer["fused_bias_reference"] == "PyTorch BatchNorm '4'"  # not the damaged file


def test_cosine_similarity_against_its_definition():
    from exporter.comparison.report import _cosine

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 8, 5, 5)).astype(np.float32)
    expected = float(np.sum(a.astype(np.float64) * b) / np.sqrt(np.sum(np.square(a, dtype=np.float64))
                                                                * np.sum(np.square(b, dtype=np.float64))))
    assert _cosine(a, b) == pytest.approx(expected, rel=1e-12)
    assert _cosine(a, 3 * a) == pytest.approx(1.0, rel=1e-12) and _cosine(a, -a) == pytest.approx(-1.0, rel=1e-12)
    zero = np.zeros_like(a)
    assert _cosine(zero, zero) == 1.0 and _cosine(a, zero) == 0.0


def _layer_rows(out: str) -> list[list[str]]:
    """The rows of the per-layer table of ``compare``'s output, split on whitespace."""
    lines = out.split("Per-layer: ran")[1].split("\n\n")[0].splitlines()[2:]
    return [line.split() for line in lines if line.split()[0] in BACKENDS]


def test_per_layer_table_names_the_pytorch_modules(exported, capsys):
    """Was: ONNX tensor names (``#1 /3/Mul_output_0``); the reader looks for the module."""
    layers = find_rectified_layers(onnx.load(str(exported)))
    assert _cli(exported, "--model", MODEL_SPEC, "--backends", "torch,ort-cpu") == 0
    rows = _layer_rows(capsys.readouterr().out)
    assert [row[3:5] for row in rows] == [["#0", "0"], ["#1", "3"], ["#2", "6"]]
    assert not any(layer.tensor in " ".join(row) for row in rows for layer in layers)


def test_weights_that_differ_everywhere_get_a_checkpoint_hint(tmp_path, capsys):
    """A file compared with a model built without its weights fails everywhere; the report says
    what is most likely wrong."""
    from tests.helpers.compare_models import tiny_rf

    torch.manual_seed(1)
    trained = tiny_rf()
    path = _export(trained, tmp_path / "trained.onnx")
    torch.manual_seed(2)
    fresh = tiny_rf()
    report = compare(path, fresh, backends=["torch", "ort-cpu"])
    assert not report.passed
    assert report.hints == ["the file's weights differ from the model's everywhere: did you forget --checkpoint?"]
    assert "Hint: the file's weights differ from the model's everywhere: did you forget --checkpoint?" \
        in report.format_table()
    assert compare(path, trained, backends=["torch", "ort-cpu"]).hints == []
