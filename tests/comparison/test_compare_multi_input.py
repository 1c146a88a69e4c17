"""compare on a file with two inputs (issue 16): an image and a per-channel vector.

At the file's declared sizes it runs every backend and every rectified layer, as for one input; a
file whose inputs have dynamic H/W is refused with what to do (before, the message asked for
input_shape, which the next call refused for a multi-input file).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from exporter import export_onnx
from exporter.comparison.compare import compare
from tests.helpers.export_models import ImageAndGain

EXAMPLE = (torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.rand(2, 8) + 0.5)


def _export(tmp_path, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(ImageAndGain(), EXAMPLE, tmp_path / "two.onnx", input_names=["image", "gain"],
                           **settings).path


def test_two_input_file_is_compared_with_every_layer(tmp_path):
    report = compare(_export(tmp_path), ImageAndGain(), backends=["torch", "ort-cpu"], batch_size=3)
    assert report.passed
    assert report.inputs["shapes"] == {"image": [3, 3, 16, 16], "gain": [3, 8]}
    assert report.per_layer.status == "ran" and len(report.per_layer.layers) == 2
    assert {p.backend for p in report.comparisons} == {"torch", "ort-cpu"}


def test_two_input_file_takes_saved_inputs(tmp_path):
    path, saved = _export(tmp_path), tmp_path / "inputs.json"
    first = compare(path, ImageAndGain(), backends=["torch", "ort-cpu"], batch_size=2, save_inputs=str(saved),
                    outputs_only=True)
    again = compare(path, ImageAndGain(), backends=["torch", "ort-cpu"], inputs=str(saved), batch_size=2,
                    outputs_only=True)
    assert first.passed and again.passed and again.inputs["shapes"] == {"image": [2, 3, 16, 16], "gain": [2, 8]}
    assert again.comparisons[1].outputs[0].max_abs == first.comparisons[1].outputs[0].max_abs  # the same inputs


def test_two_input_file_with_dynamic_hw_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match=r"several inputs at its declared sizes.*'image' \['batch', 3, 'height', "
                                         r"'width'\].*static H/W"):
        compare(_export(tmp_path, dynamic_hw=True), ImageAndGain(), backends=["torch", "ort-cpu"])
