"""``compare --precision bf16``: ov-cpu computing in bf16, judged against its own noise floor
(PyTorch in bf16 against float64, ``torch-bf16``), refused with one line where it cannot apply."""

import onnx
import pytest
import torch

from exporter.backends import availability
from exporter.backends import openvino as ov_backend
from exporter.cli import main
from exporter.comparison.compare import compare
from exporter.comparison.verdicts import BF16_FLOOR
from tests.helpers import damage
from tests.helpers.export_models import small_rf_net

HW = 20
needs_bf16 = pytest.mark.skipif(
    not availability.ov_cpu().available or "BF16" not in ov_backend.cpu_capabilities(),
    reason="needs OpenVINO on a CPU with bf16")


@pytest.fixture(scope="module")
def net():
    return small_rf_net(0)


@pytest.fixture(scope="module")
def static_export(net, tmp_path_factory):
    from exporter.onnx.export import export_onnx

    path = tmp_path_factory.mktemp("bf16") / "net.onnx"
    export_onnx(net, torch.randn(1, 3, HW, HW), path)
    return path


@needs_bf16
def test_bf16_on_ov_cpu_passes_against_the_bf16_floor(static_export, net):
    report = compare(static_export, net, backends=["torch", "ov-cpu"], precision="bf16")
    assert report.passed, report.format_table()
    statuses = {s.name: s for s in report.backends}
    assert statuses["ov-cpu"].status == "ran" and statuses["ov-cpu"].detail.endswith(", bf16")
    assert statuses[BF16_FLOOR].status == "ran" and "bfloat16" in statuses[BF16_FLOOR].detail
    (pair,) = [p for p in report.comparisons if p.backend == "ov-cpu"]
    # the floor is bf16's, far above fp32's: the same file at fp32 has a floor about 2**16 smaller
    fp32 = compare(static_export, net, backends=["torch", "ov-cpu"], outputs_only=True)
    (fp32_pair,) = [p for p in fp32.comparisons if p.backend == "ov-cpu"]
    assert pair.outputs[0].floor > 100 * fp32_pair.outputs[0].floor


@needs_bf16
def test_bf16_still_finds_damage_that_bf16_cannot_hide(static_export, net, tmp_path):
    model = onnx.load(str(static_export))
    damage.remove_scale_mul(model, 3)
    path = tmp_path / "damaged.onnx"
    onnx.save(model, str(path))
    report = compare(path, net, backends=["torch", "ov-cpu"], precision="bf16")
    assert not report.passed


@pytest.mark.parametrize("backends, message", [
    (None, "precision bf16 applies to ov-cpu only"),
    (["torch", "ort-cpu"], "precision bf16 applies to ov-cpu only: name it with backends=torch,ov-cpu (not ort-cpu)"),
    (["torch", "ov-cpu", "ort-cpu"], "(not ort-cpu)"),
])
def test_bf16_where_it_does_not_apply_is_one_line(static_export, net, backends, message):
    with pytest.raises(ValueError, match=r"precision bf16 applies") as err:
        compare(static_export, net, backends=backends, precision="bf16")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bf16_on_a_cpu_without_bf16_is_refused_with_one_line(static_export, monkeypatch, capsys):
    if not availability.ov_cpu().available:
        pytest.skip(availability.ov_cpu().detail)
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda: frozenset({"FP32", "INT8"}))
    code = main(["compare", str(static_export), "--model", "tests.helpers.export_models:small_rf_net",
                 "--backends", "torch,ov-cpu", "--precision", "bf16"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert "backend 'ov-cpu' cannot run here: ov-cpu: this CPU has no bf16" in line and "use precision fp32" in line
