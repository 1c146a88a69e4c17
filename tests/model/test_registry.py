"""Registry models, checkpoint loading and the info CLI."""

import json
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from exporter import RFConv2d
from exporter.model.checkpoint import CheckpointError, load_checkpoint, read_state_dict
from exporter.model.registry import REGISTRY, build_model, load_model


@pytest.fixture(scope="module")
def resnet50_pair():
    return build_model("resnet50"), build_model("resnet50", rectify=False)


def test_registry_rectified_and_plain_share_weights(resnet50_pair):
    rf, plain = resnet50_pair
    assert rf.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in rf.state_dict().items())
    convs = [m for m in rf.modules() if isinstance(m, nn.Conv2d)]
    rectified = [m for m in convs if isinstance(m, RFConv2d)]
    assert len(rectified) == 17  # the 7x7 stem and sixteen 3x3 convs; every 1x1 stays plain
    assert all(m.kernel_size == (1, 1) for m in convs if not isinstance(m, RFConv2d))
    assert not any(isinstance(m, RFConv2d) for m in plain.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(rf(x), plain(x))


def test_batchnorm_statistics_are_non_trivial(resnet50_pair):
    bns = [m for m in resnet50_pair[0].modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(not torch.allclose(bn.running_var, torch.ones_like(bn.running_var)) for bn in bns)
    assert all(bn.running_mean.abs().max() > 0 for bn in bns)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits = resnet50_pair[0](x)
    assert torch.isfinite(logits).all() and 0.01 < logits.std() < 100


@pytest.mark.parametrize("name", [n for n in REGISTRY if n != "resnet50"])
def test_every_registry_model_builds_rectified(name):
    model = build_model(name, average_mode=True)
    rectified = [m for m in model.modules() if isinstance(m, RFConv2d)]
    assert rectified and all(m.average for m in rectified)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    if REGISTRY[name].dense:  # segmentation: {"out": [N, 21 classes, H, W]}
        assert list(out) == ["out"] and out["out"].shape == (1, 21, 64, 64)
    else:
        assert out.shape == (1, 1000)


def test_build_model_sets_export_defaults_from_the_spec(monkeypatch):
    from exporter.model import registry

    assert dict(REGISTRY["fcn_resnet50"].export_defaults) == {"dynamic_hw": True}
    assert dict(REGISTRY["deeplabv3_resnet50"].export_defaults) == {"dynamic_hw": True}
    assert all(not spec.export_defaults for spec in REGISTRY.values() if not spec.dense)
    tiny = registry.ModelSpec("tiny", "a tiny dense model", lambda rectify, average: _tiny(), dense=True,
                              export_defaults={"dynamic_hw": True, "opset": 18})
    monkeypatch.setitem(REGISTRY, "tiny", tiny)
    model = build_model("tiny")
    assert model._rfconv_export_defaults == {"dynamic_hw": True, "opset": 18}
    assert type(model._rfconv_export_defaults) is dict
    model._rfconv_export_defaults["opset"] = 17  # a copy: the spec is not changed through the model
    assert tiny.export_defaults["opset"] == 18
    plain = registry.ModelSpec("plain", "a tiny classifier", lambda rectify, average: _tiny())
    monkeypatch.setitem(REGISTRY, "plain", plain)
    assert build_model("plain")._rfconv_export_defaults == {}


def test_unknown_model_and_bad_factory():
    with pytest.raises(ValueError, match="unknown model 'resnet5'; registry models: resnet50"):
        build_model("resnet5")
    with pytest.raises(ValueError, match="cannot load model factory 'no_such_pkg:make'"):
        load_model("no_such_pkg:make")


def test_factory_spec_converts_official_layers():
    model = load_model("tests.helpers.official_factories:tiny_official")
    assert isinstance(model[0], RFConv2d) and model[0].count_mode == "rfconv"


def _tiny():
    return nn.Sequential(RFConv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "module_prefix"])
def test_checkpoint_wrappers_load(tmp_path, wrap):
    torch.manual_seed(0)
    src = _tiny()
    state = src.state_dict()
    obj = {
        "raw": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {"lr": torch.tensor(0.1)}},
        "module_prefix": OrderedDict((f"module.{k}", v) for k, v in state.items()),
    }[wrap]
    torch.save(obj, tmp_path / "ck.pth")
    dst = load_checkpoint(_tiny(), tmp_path / "ck.pth")
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in state.items())


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth is a text file, not a checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "pickled.pth")  # a pickled module
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(tmp_path / "pickled.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        read_state_dict(tmp_path / "nostate.pth")
    state = _tiny().state_dict()
    state.pop("1.running_var")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pth")
    expected = r"missing from the checkpoint: 1\.running_var.*not in the model: extra"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(_tiny(), tmp_path / "partial.pth")
    wrong = nn.Sequential(RFConv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)).state_dict()
    torch.save(wrong, tmp_path / "wrong.pth")
    expected = r"shape mismatch: 0\.weight \(checkpoint \(8, 3, 3, 3\), model"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(_tiny(), tmp_path / "wrong.pth")


def test_info_cli_reports_backends():
    out = subprocess.run([sys.executable, "-m", "exporter.cli", "info", "--json"],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    assert info["versions"]["torch"] == torch.__version__  # the torch this interpreter imports
    assert info["backends"]["ort-cpu"]["available"] is True
    trt = info["backends"]["tensorrt"]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert trt["available"] is False and "does not import" in trt["detail"]
