"""exporter.trt.engine / ``rfconv-deploy build``: profiles and ONNX summaries here; engine builds need TensorRT."""

from __future__ import annotations

import importlib.util
import json

import onnx
import pytest
from onnx import TensorProto

from exporter.cli import build_parser, main
from exporter.shapes import InputProfile, parse_shapes, resolve_profiles
from exporter.trt import engine
from exporter.trt.engine import summarize_onnx
from exporter.trt.sidecar import sidecar_path
from tests.helpers.contract_graphs import contract_model, make_layer

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _write(model: onnx.ModelProto, path, batch_param: str | None = None):
    if batch_param:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = batch_param
    onnx.save(model, str(path))
    return path


@pytest.fixture
def small_onnx(tmp_path):
    return _write(contract_model([make_layer(3, 4, 3, padding=1)], (1, 3, 8, 8)), tmp_path / "small.onnx", "batch")


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the missing-TensorRT path cannot be checked")
def test_build_without_tensorrt_exits_nonzero_with_the_reason(small_onnx, tmp_path, capsys):
    plan = tmp_path / "small.plan"
    code = main(["build", str(small_onnx), "-o", str(plan), "--opt-shape", "2x3x8x8"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("rfconv-deploy build: error: TensorRT is not installed")
    assert "install TensorRT >= 10.3" in err and not plan.exists()


def test_build_reports_a_missing_model(tmp_path, capsys):
    assert main(["build", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "x.plan")]) == 2
    assert "none.onnx does not exist" in capsys.readouterr().err


def test_parse_shapes():
    assert parse_shapes("1x3x224x224") == {None: (1, 3, 224, 224)}
    assert parse_shapes("input:1x3x8x8,mask:1x8") == {"input": (1, 3, 8, 8), "mask": (1, 8)}
    assert parse_shapes(None) == {}
    for bad in ("1x3xAx4", "input:", "1x0x8x8"):
        with pytest.raises(ValueError, match="is not like 1x3x224x224"):
            parse_shapes(bad)


def test_resolve_profiles_fills_and_checks_ranges():
    inputs = {"input": ("batch", 3, 224, 224)}
    (p,) = resolve_profiles(inputs, {}, {None: (8, 3, 224, 224)}, {})
    # one shape for a dynamic input still needs an optimization profile (issue 13, bug 1)
    assert p == InputProfile("input", (8, 3, 224, 224), (8, 3, 224, 224), (8, 3, 224, 224), dynamic=True)
    (p,) = resolve_profiles(inputs, {"input": (1, 3, 224, 224)}, {"input": (8, 3, 224, 224)},
                            {"input": (32, 3, 224, 224)})
    assert p.dynamic and p.max == (32, 3, 224, 224)
    (p,) = resolve_profiles({"x": (1, 3, 8, 8)}, {}, {}, {})
    assert p == InputProfile("x", (1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))


@pytest.mark.parametrize("shapes, match", [
    (({}, {}, {}), r"input 'input' has dynamic dims \['batch', 3, 224, 224\]: give opt_shapes .*"
                   r"opt_shapes='1x3x224x224'"),
    (({}, {None: (8, 3, 112, 224)}, {}), r"opt_shapes 8x3x112x224 does not fit input 'input'"),
    (({None: (4, 3, 224, 224)}, {None: (2, 3, 224, 224)}, {}), "min <= opt <= max"),
    (({}, {"image": (1, 3, 224, 224)}, {}), r"unknown input\(s\) \['image'\]"),
])
def test_resolve_profiles_errors_name_the_input(shapes, match):
    with pytest.raises(ValueError, match=match):
        resolve_profiles({"input": ("batch", 3, 224, 224)}, *shapes)


def test_default_export_with_only_an_opt_shape_gets_an_optimization_profile(tmp_path):
    """The default export has a dynamic batch; ``--opt-shape`` alone (what the error message asks
    for) gives min == opt == max, which must still build a profile: TensorRT refuses a network
    with dynamic inputs and no profile (issue 13, bug 1)."""
    import torch

    from exporter.onnx.export import export_onnx
    from tests.helpers.compare_models import INPUT_HW, tiny_rf

    path = tmp_path / "default.onnx"
    export_onnx(tiny_rf(), torch.randn(1, 3, INPUT_HW, INPUT_HW), path)
    inputs = summarize_onnx(path).inputs
    (profile,) = resolve_profiles(inputs, {}, parse_shapes(f"2x3x{INPUT_HW}x{INPUT_HW}"), {})
    assert profile.min == profile.opt == profile.max == (2, 3, INPUT_HW, INPUT_HW)
    assert profile.dynamic, "a dynamic-batch input with one shape needs an optimization profile"
    (static,) = resolve_profiles({"input": (2, 3, INPUT_HW, INPUT_HW)}, {}, {}, {})
    assert not static.dynamic


def test_summarize_onnx(tmp_path):
    layers = [make_layer(3, 4, 3, padding=1)]
    fp32 = summarize_onnx(_write(contract_model(layers, (1, 3, 8, 8)), tmp_path / "a.onnx", "N"))
    assert fp32.inputs == {"input": ("N", 3, 8, 8)} and fp32.precision == "fp32" and fp32.plugin_nodes == 0
    fp16 = summarize_onnx(_write(contract_model(layers, (1, 3, 8, 8), TensorProto.FLOAT16), tmp_path / "b.onnx"))
    assert fp16.precision == "fp16"

    import onnx_graphsurgeon as gs

    from exporter.onnx.passes import plugin_mode

    plugin = gs.export_onnx(plugin_mode.apply(gs.import_onnx(contract_model(layers * 2, (1, 3, 8, 8)))))
    assert summarize_onnx(_write(plugin, tmp_path / "c.onnx")).plugin_nodes == 2


def test_build_takes_tf32_as_an_opt_in():
    parser = build_parser()
    assert parser.parse_args(["build", "m.onnx", "-o", "m.plan"]).tf32 is False
    assert parser.parse_args(["build", "m.onnx", "-o", "m.plan", "--tf32"]).tf32 is True


def test_sidecar_path():
    assert sidecar_path("out/model.plan").as_posix() == "out/model.plan.json"


@pytest.mark.requires_tensorrt
@pytest.mark.requires_cuda
def test_build_plugin_mode_engine_with_serialized_plugin(tmp_path):
    from plugins.library import find_library

    try:
        find_library()
    except FileNotFoundError as err:
        pytest.skip(f"plugin library not built: {err}")
    import onnx_graphsurgeon as gs

    from exporter.onnx.passes import plugin_mode

    model = gs.export_onnx(plugin_mode.apply(gs.import_onnx(
        contract_model([make_layer(3, 4, 3, padding=1), make_layer(4, 4, 3, padding=1)], (1, 3, 16, 16)))))
    path = _write(model, tmp_path / "plugin.onnx", "batch")
    plan = tmp_path / "plugin.plan"
    report = engine.build_engine(path, plan, min_shapes="1x3x16x16", opt_shapes="2x3x16x16",
                                 max_shapes="4x3x16x16", timing_cache=tmp_path / "cache.bin", workspace_mb=256)
    assert plan.stat().st_size > 0 and (tmp_path / "cache.bin").stat().st_size > 0
    sidecar = json.loads(sidecar_path(plan).read_text())
    assert sidecar["plugin_nodes"] == 2 and sidecar["plugin_library"] and sidecar["precision"] == "fp32"
    assert sidecar["plugin_embedded"] and sidecar["version_compatible"]
    assert sidecar["tf32"] is False  # fp32 engines compute what PyTorch fp32 and compare --backends trt do
    assert sidecar["inputs"] == [{"name": "input", "min": [1, 3, 16, 16], "opt": [2, 3, 16, 16],
                                  "max": [4, 3, 16, 16]}]
    assert sidecar["tensorrt_version"] == report.tensorrt_version

    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    runtime.engine_host_code_allowed = True
    assert runtime.deserialize_cuda_engine(plan.read_bytes()) is not None
