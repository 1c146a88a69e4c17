"""Model conversion, the rfconv shim and state-dict compatibility with the official class."""

import sys
import warnings

import pytest
import torch
from torch import nn

from exporter import RFConv2d, from_official, rectify_model
from exporter.model.compat import install_rfconv_shim
from tests.helpers import official_rfconv
from tests.helpers.reference import rectified_conv


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 5, stride=2, padding=2, bias=False),
    )


def test_rectify_model_swaps_padded_convs_and_keeps_weights():
    torch.manual_seed(0)
    model = small_cnn().eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 11, 9)
    rectify_model(model)
    assert [type(m) for m in model] == [RFConv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, RFConv2d]
    assert model.state_dict().keys() == weights.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    conv = model[0]
    expected = rectified_conv(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, 1)
    torch.testing.assert_close(conv(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_rectify_model_average_mode_and_count_mode():
    model = rectify_model(small_cnn(), average_mode=True, count_mode="rfconv")
    assert model[0].average and model[0].count_mode == "rfconv" and model[4].average


def test_from_official_converts_by_name_and_keeps_semantics():
    official = nn.Sequential(
        official_rfconv.RFConv2d(3, 4, 3, padding=2, dilation=2, average_mode=True),
        nn.ReLU(),
        official_rfconv.RFConv2d(4, 4, 3, padding=1),
    )
    converted = from_official(official)
    assert all(type(m) is RFConv2d for m in (converted[0], converted[2]))
    assert converted[0].count_mode == "rfconv" and converted[0].average and converted[0].rectify
    assert not converted[2].average and converted[2].rectify
    assert "rfconv" not in sys.modules or getattr(sys.modules["rfconv"], "__rfconv_deploy_shim__", False)


def test_state_dicts_load_both_ways_with_official_class():
    torch.manual_seed(0)
    official = official_rfconv.RFConv2d(3, 5, 3, padding=1, bias=True)
    ours = RFConv2d(3, 5, 3, padding=1, bias=True)
    ours.load_state_dict(official.state_dict())
    assert torch.equal(ours.weight, official.weight) and torch.equal(ours.bias, official.bias)
    official.load_state_dict(RFConv2d(3, 5, 3, padding=1).state_dict())
    assert official.state_dict().keys() == ours.state_dict().keys()


def test_shim_makes_rfconv_importable_with_official_counting():
    shim = install_rfconv_shim()
    import rfconv

    assert rfconv is shim and install_rfconv_shim() is shim
    layer = rfconv.RFConv2d(3, 3, 3, padding=2, dilation=2, average_mode=True)
    assert isinstance(layer, RFConv2d) and layer.count_mode == "rfconv" and layer.average


def _resnest(rectify_avg=False):
    install_rfconv_shim()
    pytest.importorskip("resnest", reason="resnest not installed (pip install --no-deps resnest==0.0.5)")
    from resnest.torch.resnet import Bottleneck, ResNet

    # the official model zoo's constructor, shrunk to one block per stage for speed
    return ResNet(Bottleneck, [1, 1, 1, 1], radix=2, groups=1, bottleneck_width=64, deep_stem=True,
                  stem_width=32, avg_down=True, avd=True, avd_first=False, rectified_conv=True,
                  rectify_avg=rectify_avg)


def test_resnest_rectified_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _resnest(rectify_avg=True).eval()
    rectified = [m for m in model.modules() if isinstance(m, RFConv2d)]
    assert len(rectified) >= 5 and all(m.count_mode == "rfconv" and m.average for m in rectified)
    path = tmp_path / "resnest.pth"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    again = _resnest(rectify_avg=True).eval()
    again.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    from resnest.torch.resnet import Bottleneck, ResNet

    plain = ResNet(Bottleneck, [1, 1, 1, 1], radix=2, deep_stem=True, stem_width=32, avg_down=True,
                   avd=True, rectified_conv=False)
    assert plain.state_dict().keys() == model.state_dict().keys()


def _ones_conv(padding_mode: str) -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode=padding_mode)
    nn.init.ones_(conv.weight)
    return conv


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_rectify_model_leaves_non_zero_padding_and_names_it(padding_mode):
    """No zero is padded, so there is nothing to rectify: on ones every output is the full 3x3 sum."""
    model = nn.Sequential(_ones_conv(padding_mode), nn.ReLU(), _ones_conv("zeros"))
    with pytest.warns(UserWarning, match=rf"left 1 conv\(s\) with padding_mode='{padding_mode}'.*\b0\b") as record:
        rectify_model(model)
    assert len([w for w in record if "padding_mode" in str(w.message)]) == 1
    assert type(model[0]) is nn.Conv2d and type(model[2]) is RFConv2d
    with torch.no_grad():
        out = model[0](torch.ones(1, 1, 5, 5))
    torch.testing.assert_close(out, torch.full((1, 1, 5, 5), 9.0))


def test_rectify_model_can_include_non_zero_padding_as_the_official_code_does():
    """The official layer scales by the zero-padding count whatever the padding mode."""
    model = nn.Sequential(_ones_conv("reflect"))
    rectify_model(model, include_non_zero_padding=True)
    assert type(model[0]) is RFConv2d and model[0].padding_mode == "reflect"
    with torch.no_grad():
        out = model[0](torch.ones(1, 1, 5, 5))[0, 0]
    expected = torch.full((5, 5), 9.0)
    expected[0, :] *= 1.5
    expected[-1, :] *= 1.5
    expected[:, 0] *= 1.5
    expected[:, -1] *= 1.5
    torch.testing.assert_close(out, expected)
    assert out[0, 0] == 9.0 * 2.25 and out[0, 2] == 9.0 * 1.5


def test_explicit_rfconv_with_reflect_padding_keeps_its_semantics():
    layer = RFConv2d(1, 1, 3, padding=1, bias=False, padding_mode="reflect")
    nn.init.ones_(layer.weight)
    model = nn.Sequential(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rectify_model(model)
    assert model[0] is layer and layer.rectify
    with torch.no_grad():
        out = layer(torch.ones(1, 1, 5, 5))[0, 0]
    assert out[2, 2] == 9.0 and out[0, 2] == 13.5 and out[0, 0] == 20.25
