"""The ``ov-cpu`` backend: OpenVINO's CPU plugin against ONNX Runtime on the same exported files.

References are independent: ONNX Runtime's CPU provider on the same file (and on the same
per-layer file compare writes), the plugin-free export's graph outputs, and the real CPU
capabilities only where a test monkeypatches them on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import torch

from exporter.backends import openvino as ov_backend
from exporter.backends.availability import Availability
from exporter.backends.openvino import OpenVinoRefused, OpenVinoRunner, compile_model, make_ov_runner, refusal
from exporter.comparison.layered_file import initializer_offsets, layer_outputs_suffix, layered_by_reference
from exporter.comparison.layerwise import find_rectified_layers, with_layer_outputs
from exporter.onnx.export import export_onnx
from exporter.serving.openvino import OpenVinoModel
from tests.helpers import damage
from tests.helpers.export_models import ort_session, rel_err, small_rf_net

pytest.importorskip("openvino")

FP32_NOISE = 1e-5
"""Largest error relative to the largest reference value that two fp32 engines differ by here
(different summation orders and kernels; the measured differences are around 1e-7)."""


def _quiet_export(model, example, path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, example, path, **options)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The exports the OpenVINO tests share (about 10 s once per module, in CI: OpenVINO's first
    compile; every ov-cpu test reuses them)."""
    folder = tmp_path_factory.mktemp("ov")
    model, example = small_rf_net(), torch.randn(2, 3, 24, 24)
    return {
        "static": _quiet_export(model, example, folder / "static.onnx"),
        "dynamic_hw": _quiet_export(model, example, folder / "hw.onnx", dynamic_hw=True),
        "plugin": _quiet_export(model, example, folder / "plugin.onnx", mode="plugin"),
        "folder": folder,
    }


def _feed(batch=2, size=24, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size), dtype=np.float32)


def _ort_outputs(path, x) -> dict[str, np.ndarray]:
    session = ort_session(path)
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(names, {"input": x}), strict=True))


def _run(runner, x) -> dict[str, np.ndarray]:
    with runner:
        return dict(runner.infer({"input": x}))


@pytest.mark.parametrize("kind", ["static", "dynamic_hw"])
def test_runner_equals_onnx_runtime_within_fp32_noise(files, kind):
    size = 24 if kind == "static" else 29  # the dynamic-H/W file at a size it was not exported at
    x = _feed(size=size)
    want = _ort_outputs(files[kind], x)
    got = _run(OpenVinoRunner(files[kind]), x)
    assert list(got) == list(want)
    for name in want:
        assert got[name].shape == want[name].shape
        assert rel_err(got[name], want[name]) < FP32_NOISE, name


def _layered_files(path, folder):
    """The two forms compare writes a per-layer file in: the file's bytes plus an outputs suffix,
    and a small model whose weights are external data at their offsets in a hard link."""
    serialized = path.read_bytes()
    model = onnx.load_from_string(serialized)
    layered = with_layer_outputs(model, find_rectified_layers(model))
    suffix = folder / "suffix.onnx"
    suffix.write_bytes(serialized + layer_outputs_suffix(model, layered))
    linked = folder / "linked"
    linked.mkdir(exist_ok=True)
    weights = linked / "weights.onnx"
    if not weights.exists():
        os.link(path, weights)
    by_reference = linked / "layers.onnx"
    by_reference.write_bytes(layered_by_reference(layered, initializer_offsets(serialized),
                                                   weights.name).SerializeToString())
    return model, layered, {"suffix": suffix, "by_reference": by_reference}


@pytest.mark.parametrize("form", ["suffix", "by_reference"])
def test_runner_runs_compares_per_layer_file(files, form):
    model, layered, forms = _layered_files(files["static"], files["folder"])
    layer_names = [out.name for out in layered.graph.output]
    assert len(layer_names) > len(model.graph.output) + 4  # the rectified convs became outputs
    x = _feed()
    want = _ort_outputs(forms[form], x)
    got = _run(OpenVinoRunner(forms[form]), x)
    assert list(got) == layer_names
    for name in layer_names:
        assert rel_err(got[name], want[name]) < FP32_NOISE, name


def test_extra_outputs_name_intermediate_tensors(files):
    model, layered, forms = _layered_files(files["static"], files["folder"])
    layers = [layer.tensor for layer in find_rectified_layers(model)]
    x = _feed()
    want = _ort_outputs(forms["suffix"], x)
    got = _run(OpenVinoRunner(files["static"], extra_outputs=layers), x)
    assert list(got) == [out.name for out in layered.graph.output]
    for name in got:
        assert rel_err(got[name], want[name]) < FP32_NOISE, name


def test_unknown_extra_output_is_one_line(files):
    with pytest.raises(ValueError, match="no_such_tensor") as err:
        compile_model(files["static"], extra_outputs=["no_such_tensor"])
    assert "\n" not in str(err.value)


def test_bf16_refused_on_a_cpu_without_bf16(files, monkeypatch):
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda: frozenset({"FP32", "INT8", "BIN"}))
    with pytest.raises(OpenVinoRefused, match="this CPU has no bf16") as err:
        OpenVinoRunner(files["static"], precision="bf16").activate()
    assert "\n" not in str(err.value) and "use precision fp32" in str(err.value)
    with pytest.raises(OpenVinoRefused, match="this CPU has no bf16"):
        OpenVinoModel(files["static"], precision="bf16")
    _run(OpenVinoRunner(files["static"]), _feed())  # fp32 runs on the same CPU


def test_bf16_runs_where_the_cpu_has_it(files):
    if "BF16" not in ov_backend.cpu_capabilities():
        pytest.skip("this CPU has no bf16")
    x = _feed()
    want = _ort_outputs(files["static"], x)["output"]
    got = _run(OpenVinoRunner(files["static"], precision="bf16"), x)["output"]
    assert 0 < rel_err(got, want) < 5e-2  # bf16 (8 bits of mantissa): close, and not fp32-exact


def test_unknown_precision_is_a_value_error(files):
    with pytest.raises(ValueError, match="fp32, bf16"):
        compile_model(files["static"], precision="fp16")


def test_plugin_mode_file_is_refused_with_what_to_do(files):
    assert refusal(onnx.load(str(files["static"]), load_external_data=False)) is None
    why = refusal(onnx.load(str(files["plugin"]), load_external_data=False))
    assert why and "RFConvRectify" in why and "--mode static" in why
    with pytest.raises(OpenVinoRefused) as err:  # asked anyway: the same line, not OpenVINO's log
        OpenVinoRunner(files["plugin"]).activate()
    assert str(err.value) == why


def test_int8_qdq_file_runs(files):
    from exporter.quantize.quantize import quantize_onnx

    int8 = files["folder"] / "int8.onnx"
    quantize_onnx(files["static"], int8, samples=4)
    assert refusal(onnx.load(str(int8), load_external_data=False)) is None
    x = _feed()
    want = _ort_outputs(int8, x)["output"]
    got = _run(OpenVinoRunner(int8), x)["output"]
    fp32 = _ort_outputs(files["static"], x)["output"]
    # Both engines run int8 kernels with their own rounding: close to each other and to fp32
    assert rel_err(got, want) < 0.05
    assert rel_err(got, fp32) < 0.1


def test_serving_adapter_answers_as_onnx_runtime(files):
    from exporter.serving.session import OrtModel

    ov_model = OpenVinoModel(files["static"], intra_op_threads=2)
    ort_model = OrtModel(files["static"], ["CPUExecutionProvider"])
    assert ov_model.inputs == ort_model.inputs and ov_model.outputs == ort_model.outputs
    assert ov_model.batchable and ort_model.batchable
    assert ov_model.device == "cpu" and ov_model.providers
    for batch in (1, 3):  # a stacked batch of another size on the same compiled model
        x = _feed(batch=batch, seed=batch)
        got, want = ov_model.run({"input": x}), ort_model.run({"input": x})
        assert list(got) == list(want)
        assert rel_err(got["output"], want["output"]) < FP32_NOISE


def test_serving_adapter_refuses_plugin_mode_and_missing_files(files, tmp_path):
    with pytest.raises(OpenVinoRefused, match="--mode static"):
        OpenVinoModel(files["plugin"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OpenVinoModel(tmp_path / "absent.onnx")


def test_probe_reports_the_cpu():
    found = ov_backend.ov_cpu()
    assert found.available and found.name == "ov-cpu" and "OpenVINO" in found.detail


def test_importing_the_backend_loads_neither_openvino_nor_torch():
    code = ("import sys, exporter.backends.openvino, exporter.serving.openvino; "
            "print(sorted(m for m in ('openvino', 'torch', 'onnx', 'onnx_graphsurgeon') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "[]"


class GatedOpenVino(OpenVinoModel):
    """An OpenVINO model whose first run waits until released, so that later requests queue and
    are batched together; records the rows of every run."""

    def __init__(self, path):
        super().__init__(path, intra_op_threads=2)
        self.entered, self.release, self.rows = threading.Event(), threading.Event(), []

    def run(self, feeds):
        self.rows.append(next(iter(feeds.values())).shape[0])
        if len(self.rows) == 1:
            self.entered.set()
            assert self.release.wait(60)
        return super().run(feeds)


def test_served_over_http_and_grpc_with_batching_equals_onnx_runtime():
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    from exporter.serving.server import BackgroundServer
    from exporter.serving.service import InferenceService, ServeConfig
    from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models

    path = tiny_models().dynamic
    model = GatedOpenVino(path)
    reference = ort_session(path)
    inputs = [np.random.default_rng(seed).standard_normal((1, *IMAGE_SHAPE), dtype=np.float32) for seed in range(5)]

    def over_http(x):
        client = triton_http.InferenceServerClient(server.url, network_timeout=60)
        tensor = triton_http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        try:
            return client.infer("tiny", [tensor]).as_numpy("logits")
        finally:
            client.close()

    def over_grpc(x):
        client = triton_grpc.InferenceServerClient(server.grpc_url)
        tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        try:
            return client.infer("tiny", [tensor]).as_numpy("logits")
        finally:
            client.close()

    service = InferenceService(model, ServeConfig(name="tiny", max_batch=4, max_delay_ms=0.0))
    with BackgroundServer(service, grpc_port=0) as server, ThreadPoolExecutor(5) as pool:
        first = pool.submit(over_http, inputs[0])
        assert model.entered.wait(60)  # the worker holds the first run: the next four queue
        rest = [pool.submit(over_grpc if i % 2 else over_http, x) for i, x in enumerate(inputs[1:], 1)]
        deadline = time.monotonic() + 60
        while service.batcher.queued_rows < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.batcher.queued_rows == 4
        model.release.set()
        answers = [first.result(60)] + [future.result(60) for future in rest]
    assert model.rows[0] == 1 and max(model.rows[1:]) > 1 and sum(model.rows) == 5  # batched
    for x, got in zip(inputs, answers, strict=True):
        want = reference.run(["logits"], {"input": x})[0]
        assert rel_err(got, want) < FP32_NOISE


def test_factory_seam_refuses_before_compiling(files, monkeypatch):
    static = onnx.load(str(files["static"]), load_external_data=False)
    plugin = onnx.load(str(files["plugin"]), load_external_data=False)
    runner = make_ov_runner(str(files["static"]), static)
    assert isinstance(runner, OpenVinoRunner) and runner.name == "ov-cpu"
    with pytest.raises(OpenVinoRefused, match="--mode static"):
        make_ov_runner(str(files["plugin"]), plugin)
    with pytest.raises(OpenVinoRefused, match="not fp16"):
        make_ov_runner(str(files["static"]), static, precision="fp16")
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda: frozenset({"FP32"}))
    with pytest.raises(OpenVinoRefused, match="no bf16"):
        make_ov_runner(str(files["static"]), static, precision="bf16")
    monkeypatch.setattr(ov_backend, "ov_cpu", lambda: Availability("ov-cpu", False, "openvino does not import"))
    with pytest.raises(OpenVinoRefused, match="openvino does not import"):
        make_ov_runner(str(files["static"]), static)


def _damaged(files, kind, how, tmp_path):
    model = onnx.load(str(files[kind]))
    if how == "scale":
        damage.set_scale(model, 2, lambda factor: np.where(factor != 1, np.float32(1), factor))  # border left as is
    elif how == "no_mul":
        damage.remove_scale_mul(model, 3)
    elif how == "misfold":
        damage.misfold_channel(model, 0, np.linspace(0.5, 2.0, 16).astype(np.float32))
    else:  # a dynamic-H/W factor right at the export size only
        damage.freeze_dynamic_scale(model, 0, np.full((SIZE_AT_EXPORT, SIZE_AT_EXPORT), 1.5, np.float32))
    layered = with_layer_outputs(model, find_rectified_layers(model))
    path = tmp_path / f"{how}.onnx"
    onnx.save(layered, str(path))
    return path


SIZE_AT_EXPORT = 24


@pytest.mark.parametrize(("kind", "how"), [("static", "scale"), ("static", "no_mul"), ("static", "misfold"),
                                           ("dynamic_hw", "frozen")])
def test_damaged_files_give_the_same_tensors_as_onnx_runtime(files, kind, how, tmp_path):
    """compare's verdict on ov-cpu can only equal ort-cpu's if OpenVINO computes the damaged file
    (every layer tensor) as ONNX Runtime does, damage included: no fusion may repair or hide it."""
    path = _damaged(files, kind, how, tmp_path)
    x = _feed(size=SIZE_AT_EXPORT if kind == "static" else 29)
    want = _ort_outputs(path, x)
    got = _run(OpenVinoRunner(path), x)
    assert list(got) == list(want)
    for name in want:
        assert rel_err(got[name], want[name]) < FP32_NOISE, name
    _, _, honest_files = _layered_files(files[kind], tmp_path)
    honest = _ort_outputs(honest_files["suffix"], x)
    shared = [name for name in got if name in honest]
    assert shared and max(rel_err(got[name], honest[name]) for name in shared) > 1e-3  # the damage shows
