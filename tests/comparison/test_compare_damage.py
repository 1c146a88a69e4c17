"""Issue #12's damage classes: each edit of a real export FAILS ``compare`` at default settings,
with the damaged rectified conv named, although the outputs stay within the fixed tolerance.

Exports come from ``small_rf_net`` (seven rectified convs: stride 2, dilation, groups, average
mode, the official counting rule on a dilated 5x5 kernel); the edits are in
:mod:`tests.helpers.damage`. ``compare(..., verdict="tolerance", outputs_only=True)`` is the check
as it was before the noise floor; where the damage is small enough, the tests show that it passes.
"""

import numpy as np
import onnx
import pytest
import torch

from exporter import rectify_scale
from exporter.backends import availability
from exporter.comparison.compare import compare
from tests.helpers import damage
from tests.helpers.export_models import rectified_layers, small_rf_net

HW = 20
CPU_BACKENDS = ["ort-cpu", pytest.param("ov-cpu", marks=pytest.mark.skipif(
    not availability.ov_cpu().available, reason=availability.ov_cpu().detail))]
MODULES = ["0", "3", "6", "12", "14", "17", "20"]  # small_rf_net's rectifying modules, in graph order


@pytest.fixture(params=CPU_BACKENDS)
def cpu(request):
    """The CPU engine judged against PyTorch: every damage class fails on each exactly alike."""
    return request.param


@pytest.fixture
def backends(cpu):
    return ["torch", cpu]


@pytest.fixture(scope="module")
def net():
    return small_rf_net(0)


@pytest.fixture(scope="module")
def static_export(net, tmp_path_factory):
    from exporter.onnx.export import export_onnx

    path = tmp_path_factory.mktemp("static") / "net.onnx"
    export_onnx(net, torch.randn(1, 3, HW, HW), path)
    return path


def _save(model, tmp_path, name="damaged.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _assert_named(report, index: int, cpu: str):
    """The report fails, and the first failing rectified conv of ``cpu`` is ``index``."""
    assert not report.passed, report.format_table()
    assert [s.name for s in report.backends if s.status == "ran"][:2] == ["torch", cpu]
    (divergence,) = [d for d in report.per_layer.first_divergence if d.backend == cpu]
    assert divergence.layer is not None, divergence.explanation
    assert divergence.layer["index"] == index and divergence.layer["torch_module"] == MODULES[index]
    assert f"#{index} (PyTorch module '{MODULES[index]}')" in report.verdict()
    # torch's layer errors are the floors: not judged again, and the report says so
    assert report.per_layer.floor_runner == "torch"
    assert not [p for p in report.per_layer.pairs if p.backend == "torch"]
    assert "torch: its layer errors are the layers' noise floors" in report.format_table()
    return divergence


def test_honest_export_passes(static_export, net, cpu, backends):
    report = compare(static_export, net, backends=backends)
    assert report.passed, report.format_table()
    assert report.ran[:2] == ["torch", cpu]
    assert len(report.per_layer.layers) == 7 and report.per_layer.status == "ran"
    assert {p.backend for p in report.per_layer.pairs} == {cpu}  # cpu's taps ran and were judged


def test_one_scale_element_times_1_01(static_export, net, tmp_path, cpu, backends):
    model = onnx.load(str(static_export))

    def edit(factor):
        factor[0, 0, 0, 0] *= 1.01  # the corner, where the factor is largest
        return factor

    damage.set_scale(model, 2, edit)
    path = _save(model, tmp_path)
    divergence = _assert_named(compare(path, net, backends=backends), 2, cpu)
    assert divergence.stats.interior_max_abs < divergence.stats.ring_max_abs  # it is on the ring
    assert compare(path, net, backends=backends, verdict="tolerance", outputs_only=True).passed


def test_border_row_of_a_deep_layer_times_1_02(static_export, net, tmp_path, cpu, backends):
    model = onnx.load(str(static_export))

    def edit(factor):
        factor[0, 0, 0, :] *= 1.02
        return factor

    damage.set_scale(model, 6, edit)
    _assert_named(compare(_save(model, tmp_path), net, backends=backends), 6, cpu)


def test_scale_of_the_other_count_mode(static_export, net, tmp_path, cpu, backends):
    """Layer 4 (dilated 5x5, official counting) gets the exact count's factor."""
    module, in_hw = rectified_layers(net, torch.randn(1, 3, HW, HW))[4]
    assert module.count_mode == "rfconv" and module.dilation == (2, 2) and module.kernel_size == (5, 5)
    exact = rectify_scale(in_hw, 5, 1, 1, 2, count_mode="exact").numpy()[None, None]
    model = onnx.load(str(static_export))

    def edit(factor):
        assert factor.shape == exact.shape and not np.allclose(factor, exact)  # the two rules differ here
        return exact

    damage.set_scale(model, 4, edit)
    _assert_named(compare(_save(model, tmp_path), net, backends=backends), 4, cpu)


def test_scale_mul_removed(static_export, net, tmp_path, cpu, backends):
    model = onnx.load(str(static_export))
    damage.remove_scale_mul(model, 3)
    report = compare(_save(model, tmp_path), net, backends=backends)
    assert not report.passed and report.ran[:2] == ["torch", cpu]
    assert report.per_layer.missing == [MODULES[3]]
    assert f"'{MODULES[3]}'" in report.verdict() and "no rectified conv" in report.verdict()


def test_batchnorm_folded_off_by_one_channel(static_export, net, tmp_path, cpu, backends):
    bn = net[1]  # the BatchNorm after rectified conv 0
    gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    model = onnx.load(str(static_export))
    damage.misfold_channel(model, 0, gain)
    _assert_named(compare(_save(model, tmp_path), net, backends=backends), 0, cpu)


def test_dynamic_factor_right_at_the_export_size_only(net, tmp_path, cpu, backends):
    from exporter.onnx.export import export_onnx

    path = tmp_path / "dynamic.onnx"
    export_onnx(net, torch.randn(1, 3, HW, HW), path, dynamic_hw=True)
    module, in_hw = rectified_layers(net, torch.randn(1, 3, HW, HW))[2]
    factor = rectify_scale(in_hw, module.kernel_size, module.stride, module.padding, module.dilation).numpy()
    model = onnx.load(str(path))
    damage.freeze_dynamic_scale(model, 2, factor)
    damaged = _save(model, tmp_path)

    at_export = compare(damaged, net, backends=backends, input_shape=(1, 3, HW, HW), sizes=[(HW, HW)])
    assert at_export.passed, at_export.format_table()  # right at the export size: one size cannot tell
    report = compare(damaged, net, backends=backends, input_shape=(1, 3, HW, HW))
    assert report.sizes == [[1, 3, HW, HW], [1, 3, HW - 1, HW - 1], [1, 3, 33, 33]]
    assert not report.passed
    failing = [d for d in report.per_layer.first_divergence if d.backend == cpu]
    assert [d.input_shape[2:] for d in failing] == [[HW - 1, HW - 1], [33, 33]]
    assert all(d.layer["index"] == 2 and d.layer["torch_module"] == MODULES[2] for d in failing)
