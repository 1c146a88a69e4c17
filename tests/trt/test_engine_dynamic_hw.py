"""``build`` profiles for dynamic-H/W plugin-mode files (issue 16), on real exports.

TensorRT cannot be installed here, so these check what runs before it is imported: the inputs read
from the file, the profile each gets from ``--min/--opt/--max-shape`` (H/W ranges accepted, ranges
for static dims and out-of-order shapes refused), and that a bad profile is refused with its reason
even on a machine without TensorRT (before, the only error there was "TensorRT is not installed",
so a user could not learn that a profile was wrong until TensorRT was there). The engine build
itself needs TensorRT and a GPU and is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch

from exporter import export_onnx
from exporter.cli import main
from exporter.shapes import InputProfile, parse_shapes, resolve_profiles
from exporter.trt.engine import summarize_onnx
from tests.helpers.export_models import ImageAndGain, small_rf_net

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _export(path, model=None, example=None, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model or small_rf_net(), example if example is not None else torch.randn(1, 3, 32, 32),
                           path, mode="plugin", **settings).path


@pytest.fixture(scope="module")
def dynamic_plugin(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("plugin") / "dyn.onnx", dynamic_hw=True)


def _profiles(path, low=None, opt=None, high=None):
    return resolve_profiles(summarize_onnx(path).inputs, parse_shapes(low), parse_shapes(opt), parse_shapes(high))


def test_dynamic_plugin_file_takes_hw_ranges(dynamic_plugin):
    summary = summarize_onnx(dynamic_plugin)
    assert summary.inputs == {"input": ("batch", 3, "height", "width")} and summary.plugin_nodes == 7
    (p,) = _profiles(dynamic_plugin, "1x3x160x160", "4x3x224x224", "8x3x512x512")
    assert p == InputProfile("input", (1, 3, 160, 160), (4, 3, 224, 224), (8, 3, 512, 512), dynamic=True)
    (p,) = _profiles(dynamic_plugin, opt="2x3x193x257")  # one fixed shape of a dynamic input
    assert p.min == p.opt == p.max == (2, 3, 193, 257) and p.dynamic


@pytest.mark.parametrize("low, opt, high, match", [
    ("1x3x160x160", "1x3x600x224", "8x3x512x512", r"min <= opt <= max"),  # opt H beyond max
    ("1x3x160x160", "1x3x100x224", "8x3x512x512", r"min <= opt <= max"),  # opt H below min
    ("1x4x160x160", "1x4x224x224", None, r"min_shapes 1x4x160x160 does not fit input 'input'"),  # channels are static
    (None, None, None, r"input 'input' has dynamic dims \['batch', 3, 'height', 'width'\]: give opt_shapes"),
])
def test_dynamic_plugin_file_refuses_bad_profiles(dynamic_plugin, low, opt, high, match):
    with pytest.raises(ValueError, match=match):
        _profiles(dynamic_plugin, low, opt, high)


def test_static_plugin_file_refuses_hw_ranges(tmp_path):
    """A static-H/W plugin export serves its size at every batch: H/W ranges are refused, batch ranges taken."""
    static = _export(tmp_path / "static.onnx")
    assert summarize_onnx(static).inputs == {"input": ("batch", 3, 32, 32)}
    with pytest.raises(ValueError, match=r"max_shapes 8x3x64x64 does not fit input 'input' with dims "
                                         r"\['batch', 3, 32, 32\] \(rank and static dims must match\)"):
        _profiles(static, "1x3x32x32", "4x3x32x32", "8x3x64x64")
    (p,) = _profiles(static, "1x3x32x32", "4x3x32x32", "8x3x32x32")
    assert (p.min[0], p.max[0]) == (1, 8)


def test_two_input_plugin_file_takes_named_ranges(tmp_path):
    example = (torch.randn(2, 3, 16, 16), torch.rand(2, 8))
    path = _export(tmp_path / "two.onnx", ImageAndGain(), example, input_names=["image", "gain"], dynamic_hw=True)
    image, gain = _profiles(path, "image:1x3x16x16,gain:1x8", "image:2x3x64x48,gain:2x8", "image:4x3x128x128,gain:4x8")
    assert (image.name, image.max, gain.name, gain.max) == ("image", (4, 3, 128, 128), "gain", (4, 8))
    with pytest.raises(ValueError, match=r"the model has inputs \['gain', 'image'\]: name each shape"):
        _profiles(path, opt="2x3x64x48")


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the missing-TensorRT path cannot be checked")
def test_build_refuses_a_bad_profile_before_needing_tensorrt(dynamic_plugin, tmp_path, capsys):
    plan = tmp_path / "dyn.plan"
    code = main(["build", str(dynamic_plugin), "-o", str(plan), "--min-shape", "1x3x160x160",
                 "--opt-shape", "1x3x600x224", "--max-shape", "8x3x512x512"])
    err = capsys.readouterr().err
    assert code == 2 and "min <= opt <= max" in err and "TensorRT is not installed" not in err
    assert not plan.exists()
    code = main(["build", str(dynamic_plugin), "-o", str(plan), "--min-shape", "1x3x160x160",
                 "--opt-shape", "4x3x224x224", "--max-shape", "8x3x512x512"])
    assert code == 2 and "TensorRT is not installed" in capsys.readouterr().err  # a good profile gets that far


@pytest.mark.requires_tensorrt
@pytest.mark.requires_cuda
def test_dynamic_plugin_engine_builds_with_an_hw_range(dynamic_plugin, tmp_path):
    from exporter.trt.engine import build_engine
    from plugins.library import find_library

    try:
        find_library()
    except FileNotFoundError as err:
        pytest.skip(f"plugin library not built: {err}")
    report = build_engine(dynamic_plugin, tmp_path / "dyn.plan", min_shapes="1x3x160x160",
                          opt_shapes="2x3x224x224", max_shapes="4x3x512x512", workspace_mb=512)
    assert report.inputs == [{"name": "input", "min": [1, 3, 160, 160], "opt": [2, 3, 224, 224],
                              "max": [4, 3, 512, 512]}]
    assert report.plugin_nodes == 7
