"""Models with several inputs (issue 16): an image and a per-channel vector, two images of one size.

``export_onnx`` takes a tuple of example inputs named by ``input_names``; every input's dynamic
dimensions are proven at other sizes (two images of one size get one size), and the summary names
each input. Before, such models were refused ("the example input must be one NCHW image tensor").
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from exporter import export_onnx
from exporter.onnx.export import ExportError
from plugins.ort_reference import inference_session
from tests.helpers.export_models import ImageAndDepth, ImageAndGain

SETTINGS = {
    "static": {},
    "dynamic": {"dynamic_hw": True},
    "plugin": {"mode": "plugin"},
    "plugin-dynamic": {"mode": "plugin", "dynamic_hw": True},
    "fp16": {"precision": "fp16"},
}


def _error(path, model, feeds: dict) -> float:
    """``max|onnx - torch| / max|torch|`` on ONNX Runtime CPU (plugin nodes through the reference op)."""
    got = inference_session(str(path)).run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    with torch.no_grad():
        want = model.eval()(*feeds.values()).numpy()
    return float(np.abs(got - want).max() / np.abs(want).max())


def _gain_example(n=2, h=16, w=16):
    gen = torch.Generator().manual_seed(n * h + w)
    return torch.randn(n, 3, h, w, generator=gen), torch.rand(n, 8, generator=gen) + 0.5


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_image_and_per_channel_vector(tmp_path, setting):
    model = ImageAndGain()
    settings = SETTINGS[setting]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = export_onnx(model, _gain_example(), tmp_path / "m.onnx", input_names=["image", "gain"],
                             **settings)
    assert list(report.input_shapes) == ["image", "gain"]
    assert report.input_shapes["gain"] == ["batch", 8]
    assert report.rectified_convs == 2
    summary = report.summary()
    assert "inputs image [" in summary and "gain ['batch', 8]" in summary
    dynamic = settings.get("dynamic_hw", False)
    assert report.input_shapes["image"] == ["batch", 3, *(["height", "width"] if dynamic else [16, 16])]
    # every input's dynamic dims were checked: the gain's batch with the image's
    assert all(v["inputs"]["gain"][0] == v["inputs"]["image"][0] != 2 for v in report.verified)
    assert [v["inputs"]["image"][2:] for v in report.verified] == ([[15, 15], [33, 33]] if dynamic else [[16, 16]])
    tolerance = 2e-2 if settings.get("precision") == "fp16" else 1e-5
    for size in ([(16, 16), (19, 23), (40, 33)] if dynamic else [(16, 16)]):
        image, gain = _gain_example(3, *size)
        assert _error(report.path, model, {"image": image, "gain": gain}) <= tolerance


def test_two_images_of_one_size_are_checked_at_one_size(tmp_path):
    """The depth map must be the image's size: torch.export ties their H and W, so do the checks."""
    model = ImageAndDepth()
    gen = torch.Generator().manual_seed(0)
    rgb, depth = torch.randn(2, 3, 12, 20, generator=gen), torch.randn(2, 1, 12, 20, generator=gen)
    report = export_onnx(model, (rgb, depth), tmp_path / "m.onnx", input_names=["rgb", "depth"], dynamic_hw=True)
    assert report.input_shapes == {"rgb": ["batch", 3, "height", "width"], "depth": ["batch", 1, "height", "width"]}
    assert [v["inputs"] for v in report.verified] == [
        {"rgb": [1, 3, 11, 19], "depth": [1, 1, 11, 19]}, {"rgb": [1, 3, 33, 33], "depth": [1, 1, 33, 33]}]
    x = {"rgb": torch.randn(3, 3, 31, 17, generator=gen), "depth": torch.randn(3, 1, 31, 17, generator=gen)}
    assert _error(report.path, model, x) <= 1e-5


def test_dynamic_hw_for_named_inputs_only(tmp_path):
    """``dynamic_hw=[names]`` keeps H and W dynamic for those inputs only; a name that is not an
    image input is refused."""
    gen = torch.Generator().manual_seed(0)
    example = (torch.randn(2, 3, 8, 8, generator=gen), torch.rand(2, 8, generator=gen))
    report = export_onnx(ImageAndGain(), example, tmp_path / "m.onnx", input_names=["image", "gain"],
                         dynamic_hw=["image"], dynamic_batch=False)
    assert report.input_shapes == {"image": [2, 3, "height", "width"], "gain": [2, 8]}
    with pytest.raises(ExportError, match=r"dynamic_hw names 'gain'.*not an \[N, C, H, W\] input"):
        export_onnx(ImageAndGain(), example, tmp_path / "x.onnx", input_names=["image", "gain"], dynamic_hw=["gain"])
    with pytest.raises(ExportError, match=r"dynamic_hw names 'mask', which is not an input.*image, gain"):
        export_onnx(ImageAndGain(), example, tmp_path / "x.onnx", input_names=["image", "gain"], dynamic_hw=["mask"])


@pytest.mark.parametrize("inputs, names, message", [
    ("two", ["image"], r"input_names has 1 name\(s\) but there are 2 example inputs"),
    ("two", ["image", "image"], r"input_names must be distinct"),
    ("batch", None, r"example inputs disagree on the batch \(first dimension\): image 2, gain 3.*dynamic_batch"),
    ("vector", None, r"one NCHW image tensor \[N, C, H, W\]; got \(2, 8\)"),
    ("vectors", None, r"at least one NCHW image tensor \[N, C, H, W\]; got image \[2, 8\], gain \[2, 8\]"),
    ("int", None, r"example input 'gain' must be a float tensor; got torch.int64"),
])
def test_bad_inputs_are_refused_clearly(inputs, names, message):
    image = torch.randn(2, 3, 8, 8)
    example = {"two": (image, torch.rand(2, 8)), "batch": (image, torch.rand(3, 8)),
               "vector": (torch.rand(2, 8),), "vectors": (torch.rand(2, 8), torch.rand(2, 8)),
               "int": (image, torch.ones(2, 8, dtype=torch.long))}[inputs]
    default = ["image", "gain"][:len(example)]
    with pytest.raises(ExportError, match=message):
        export_onnx(ImageAndGain(), example, "unused.onnx", input_names=names or default)
