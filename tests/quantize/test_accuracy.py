"""INT8 accuracy against fp32 (issue 17): the digits CNN of ``resolution_study.py``, plain and
rectified, trained as the benchmark does (15 epochs, one thread: about 25 s, in CI), and
RF-ResNet-50 against the plain ResNet-50 (slow). The same numbers come from ``python -m
benchmarks.quantize_accuracy`` (benchmarks/README.md, "INT8")."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import quantize_accuracy


def test_trained_digits_cnns_lose_at_most_half_a_point(tmp_path):
    result = quantize_accuracy.digits(epochs=15, samples=64, method="percentile", folder=tmp_path)
    for kind, row in result["models"].items():
        assert row["fp32"] > 0.9, (kind, row)  # the model learned something
        assert row["drop_points"] <= 0.5, (kind, row)


@pytest.fixture(scope="module")
def resnet_result(tmp_path_factory):
    return quantize_accuracy.resnet(samples=64, method="percentile", folder=tmp_path_factory.mktemp("resnet"))


@pytest.mark.slow
def test_resnet50_int8_logits_stay_close_to_fp32(resnet_result):
    for kind, row in resnet_result["models"].items():
        assert row["cosine"] > 0.98, (kind, row)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 17 target not met: RF-ResNet-50 int8 cosine 0.9853 vs the plain "
                                       "model's 0.9929 (-0.0076) and 0.9904 with its own BatchNorm (-0.0051); "
                                       "target -0.005, benchmarks/README.md 'INT8'")
def test_resnet50_rf_int8_cosine_within_0_005_of_plain(resnet_result):
    assert resnet_result["rf_minus_plain"] >= -0.005
    assert resnet_result["rf_minus_plain_own_bn"] >= -0.005


def test_cosine_helper_is_one_for_identical_and_lower_otherwise():
    a = np.arange(1.0, 11.0)
    assert quantize_accuracy._cosines(a, a) == pytest.approx(1.0)
    assert quantize_accuracy._cosines(a, a[::-1]) < 0.9
