"""Comparison inputs, saved results and our Polygraphy runners."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from polygraphy import config as polygraphy_config
from polygraphy.comparator import Comparator, RunResults
from polygraphy.json import load_json

from exporter.backends.runners import LayerTap, OnnxReferenceRunner, TorchRunner
from exporter.comparison.compare import compare
from exporter.onnx.feeds import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_RANGE,
    image_feeds,
    json_feeds,
    random_feeds,
    resolve_input_metadata,
)


def conv_model(input_shape=("batch", 3, 8, 8)) -> onnx.ModelProto:
    """A 2-channel 3x3 conv, padding 1, with fixed weights, as a plain ONNX graph."""
    weight = np.arange(2 * 3 * 9, dtype=np.float32).reshape(2, 3, 3, 3) / 50 - 0.5
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def torch_conv(model: onnx.ModelProto) -> torch.nn.Conv2d:
    conv = torch.nn.Conv2d(3, 2, 3, padding=1, bias=False)
    conv.weight.data = torch.from_numpy(numpy_helper.to_array(model.graph.initializer[0]).copy())
    return conv.eval()


@pytest.fixture()
def conv_path(tmp_path):
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(path))
    return path


def test_input_metadata_resolution():
    meta = resolve_input_metadata(conv_model(), batch_size=4)
    assert list(meta["x"].shape) == [4, 3, 8, 8]
    assert list(resolve_input_metadata(conv_model())["x"].shape) == [1, 3, 8, 8]
    with pytest.raises(ValueError, match=r"dynamic dimensions \[2, 3\].*input_shape"):
        resolve_input_metadata(conv_model(("batch", 3, "h", "w")))
    hw = resolve_input_metadata(conv_model(("batch", 3, "h", "w")), input_shape=(2, 3, 5, 7))
    assert list(hw["x"].shape) == [2, 3, 5, 7]
    with pytest.raises(ValueError, match="static size 3 in dimension 1, not 4"):
        resolve_input_metadata(conv_model(), input_shape=(1, 4, 8, 8))


def test_random_feeds_are_seeded_and_in_range():
    meta = resolve_input_metadata(conv_model(), batch_size=2)
    a, b, c = random_feeds(meta, 2, seed=0), random_feeds(meta, 2, seed=0), random_feeds(meta, 2, seed=1)
    assert len(a) == 2 and a[0]["x"].shape == (2, 3, 8, 8) and a[0]["x"].dtype == np.float32
    np.testing.assert_array_equal(a[1]["x"], b[1]["x"])
    assert not np.array_equal(a[0]["x"], a[1]["x"]) and not np.array_equal(a[0]["x"], c[0]["x"])
    assert RANDOM_RANGE[0] <= a[0]["x"].min() and a[0]["x"].max() <= RANDOM_RANGE[1]


def test_image_folder_is_preprocessed_like_imagenet(tmp_path):
    colours = [(255, 0, 0), (0, 128, 255), (10, 20, 30)]
    for i, colour in enumerate(colours):
        Image.new("RGB", (20 + 4 * i, 12), colour).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    meta = resolve_input_metadata(conv_model(), batch_size=2)
    feeds = image_feeds(tmp_path, meta)
    assert len(feeds) == 1  # 3 images, batches of 2: the incomplete batch is left out
    batch = feeds[0]["x"]
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == np.float32
    for image, colour in zip(batch, colours, strict=False):  # flat colours survive resize and crop
        expected = (np.array(colour) / 255 - IMAGENET_MEAN) / IMAGENET_STD
        np.testing.assert_allclose(image.mean(axis=(1, 2)), expected, atol=1e-5)
    assert len(image_feeds(tmp_path, resolve_input_metadata(conv_model(), batch_size=1), iterations=2)) == 2
    with pytest.raises(ValueError, match="has 3 image"):
        image_feeds(tmp_path, resolve_input_metadata(conv_model(), batch_size=4))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        image_feeds(tmp_path, meta)


def test_compare_on_images(conv_path, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    model = torch_conv(onnx.load(str(conv_path)))
    report = compare(conv_path, model, backends=["torch", "ort-cpu", "onnx-ref"], inputs=str(folder))
    assert report.passed and report.inputs["iterations"] == 2 and report.inputs["seed"] is None


def test_saved_inputs_and_results_round_trip(conv_path, tmp_path):
    model = torch_conv(onnx.load(str(conv_path)))
    inputs_json, results_dir = tmp_path / "inputs.json", tmp_path / "results"
    first = compare(conv_path, model, backends=["torch", "ort-cpu"], iterations=3, seed=7,
                    save_inputs=str(inputs_json), save_results=str(results_dir))
    assert first.passed and first.saved == {"inputs": str(inputs_json), "results": str(results_dir)}
    # one Polygraphy RunResults file per iteration, read back the way Polygraphy streams them
    iterations = list(RunResults.load_streaming(str(results_dir)))
    assert len(iterations) == 3 and all(list(it.keys()) == ["torch-fp64", "torch", "ort-cpu"] for it in iterations)

    saved = load_json(str(inputs_json))
    meta = resolve_input_metadata(onnx.load(str(conv_path)))
    for feed, again in zip(random_feeds(meta, 3, seed=7), json_feeds(inputs_json, meta), strict=True):
        np.testing.assert_array_equal(feed["x"], again["x"])
    assert len(saved) == 3

    second = compare(conv_path, model, backends=["torch", "ort-cpu"], inputs=str(inputs_json))
    assert second.inputs["iterations"] == 3
    assert second.comparisons[0].outputs[0].max_abs == first.comparisons[0].outputs[0].max_abs
    with pytest.raises(ValueError, match="new or empty directory"):
        compare(conv_path, model, backends=["torch", "ort-cpu"], save_results=str(results_dir))


def test_saved_files_work_with_polygraphy_run(conv_path, tmp_path):
    """``polygraphy run`` reuses our inputs and checks ONNX Runtime against our saved results."""
    import subprocess
    import sys
    from pathlib import Path

    model = torch_conv(onnx.load(str(conv_path)))
    inputs_json, results_json = tmp_path / "inputs.json", tmp_path / "results.json"
    compare(conv_path, model, backends=["torch", "ort-cpu"], iterations=2,
            save_inputs=str(inputs_json), save_results=str(results_json))
    polygraphy = Path(sys.executable).with_name("polygraphy")
    run = subprocess.run(
        [str(polygraphy), "run", str(conv_path), "--onnxrt", "--load-inputs", str(inputs_json),
         "--load-outputs", str(results_json), "--atol", "1e-5", "--rtol", "1e-5"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Passed: 2/2 iterations" in run.stdout


def test_input_json_must_name_the_model_inputs(tmp_path):
    from polygraphy.json import save_json

    save_json([{"wrong": np.zeros((1, 3, 8, 8), np.float32)}], str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="iteration 0 lacks input.*x.*it has wrong"):
        json_feeds(tmp_path / "bad.json", resolve_input_metadata(conv_model()))


def test_input_json_of_another_batch_or_size_says_which_option(conv_path, tmp_path):
    """Saved inputs of batch 4 fed at the default batch 1 ran into Polygraphy's shape errors on
    every backend ("a backend failed to run"); now the file is refused with the option to pass."""
    from polygraphy.json import save_json

    model = torch_conv(onnx.load(str(conv_path)))
    save_json([{"x": np.zeros((4, 3, 8, 8), np.float32)}], str(tmp_path / "batch4.json"))
    with pytest.raises(ValueError, match=r"batch4.json: input 'x' has shape \(4, 3, 8, 8\).*\[1, 3, 8, 8\].*"
                                         r"batch_size=4"):
        compare(conv_path, model, backends=["torch", "ort-cpu"], inputs=str(tmp_path / "batch4.json"))
    assert compare(conv_path, model, backends=["torch", "ort-cpu"], inputs=str(tmp_path / "batch4.json"),
                   batch_size=4).passed
    save_json([{"x": np.zeros((1, 3, 9, 8), np.float32)}], str(tmp_path / "size.json"))
    with pytest.raises(ValueError, match=r"size.json: input 'x' has shape \(1, 3, 9, 8\).*fixed"):
        json_feeds(tmp_path / "size.json", resolve_input_metadata(conv_model()))


@pytest.fixture()
def correctness_checks():
    """Polygraphy's own check that a runner's state after deactivate() equals its state before."""
    old = polygraphy_config.INTERNAL_CORRECTNESS_CHECKS
    polygraphy_config.INTERNAL_CORRECTNESS_CHECKS = True
    yield
    polygraphy_config.INTERNAL_CORRECTNESS_CHECKS = old


def test_runners_follow_the_polygraphy_contract(correctness_checks):
    model = conv_model()
    meta = resolve_input_metadata(model, batch_size=2)
    conv = torch_conv(model)
    taps = [LayerTap("", "doubled", lambda t: 2 * t)]
    torch_runner = TorchRunner(conv, meta, ["y"], taps=taps, name="torch")
    ref_runner = OnnxReferenceRunner(model, name="onnx-ref")
    feeds = random_feeds(meta, 2)
    results = Comparator.run([torch_runner, ref_runner], data_loader=feeds)
    for runner in (torch_runner, ref_runner):
        assert not runner.is_active
        assert all(it.runtime > 0 for it in results[runner.name])  # inference_time was set
    for feed, ours, ref in zip(feeds, results["torch"], results["onnx-ref"], strict=True):
        expected = torch.nn.functional.conv2d(torch.from_numpy(feed["x"]), conv.weight, padding=1).detach()
        np.testing.assert_allclose(ours["y"], expected.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ours["doubled"], 2 * expected.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ref["y"], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert list(results["torch"][0].keys()) == ["y", "doubled"]


def _unary_model(op: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])], op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_nan_outputs_fail_and_the_report_stays_strict_json(tmp_path, capsys):
    import json

    from exporter.cli import main

    path = tmp_path / "sqrt.onnx"
    onnx.save(_unary_model("Sqrt"), str(path))  # random inputs in [-2, 2]: NaN for the negatives
    report_path = tmp_path / "report.json"
    assert main(["compare", str(path), "--backends", "ort-cpu,onnx-ref", "--report", str(report_path)]) == 1
    assert "NaN/Inf" in capsys.readouterr().out

    def no_constants(name):
        raise AssertionError(f"report contains {name}")

    report = json.loads(report_path.read_text(), parse_constant=no_constants)
    (stats,) = report["comparisons"][0]["outputs"]
    assert not stats["passed"] and stats["note"] == "reference has NaN/Inf, candidate has NaN/Inf"
    assert stats["max_abs"] is None  # NaN, written as null


def test_shape_mismatch_fails_with_a_note(tmp_path):
    path = tmp_path / "relu.onnx"
    onnx.save(_unary_model("Relu"), str(path))
    report = compare(path, torch.nn.Flatten(0).eval(), backends=["torch", "ort-cpu"])
    (stats,) = next(pair for pair in report.comparisons if pair.backend == "ort-cpu").outputs
    assert not report.passed and not stats.passed and stats.note == "shapes differ"
