"""The shared model arguments: factories from the current directory, --model-kwargs, up-front notices."""

from __future__ import annotations

import itertools
import sys
import textwrap

import pytest
import torch
from torch import nn

from exporter import RFConv2d
from exporter.cli import build_parser, main
from exporter.cli.args import load_model
from tests.helpers.export_models import ort_session, rel_err

_names = itertools.count()

MYNET = """
    import torch
    from torch import nn

    from exporter import RFConv2d


    def classifier(width=4, classes=3):
        torch.manual_seed(7)
        return nn.Sequential(RFConv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(width, classes))
"""


@pytest.fixture
def mynet(tmp_path, monkeypatch):
    """A module file in an otherwise empty current directory that is not on sys.path; yields its name."""
    name = f"mynet_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MYNET))
    monkeypatch.chdir(tmp_path)
    assert str(tmp_path) not in sys.path and "" not in sys.path
    yield name
    sys.modules.pop(name, None)


def test_export_a_factory_from_the_current_directory(mynet, tmp_path, capsys):
    out = tmp_path / "mynet.onnx"
    code = main(["export", f"{mynet}:classifier", "-o", str(out), "--input-shape", "1,3,16,16"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {out}" in captured.out and "rectified convs: 1" in captured.out
    assert str(tmp_path) not in sys.path  # the current directory is on sys.path only while the factory loads
    from importlib import import_module

    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = import_module(mynet).classifier()(x).double().numpy()
    assert rel_err(ort_session(out).run(None, {"input": x.numpy()})[0], want) <= 1e-5


def test_model_kwargs_reach_the_factory(mynet):
    args = build_parser().parse_args(["export", f"{mynet}:classifier", "-o", "m.onnx",
                                      "--model-kwargs", '{"width": 6, "classes": 5}'])
    model = load_model(args)
    assert model[0].out_channels == 6 and model[-1].out_features == 5 and not model.training


@pytest.mark.parametrize("command", ["export", "compare"])
def test_model_kwargs_is_a_shared_model_argument(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--model-kwargs JSON" in capsys.readouterr().out


@pytest.mark.parametrize("value, message", [
    ("{width: 6}", "--model-kwargs: not valid JSON"),
    ("[6]", "--model-kwargs: must be a JSON object of keyword arguments"),
])
def test_bad_model_kwargs(mynet, capsys, value, message):
    with pytest.raises(SystemExit):
        main(["export", f"{mynet}:classifier", "-o", "m.onnx", "--model-kwargs", value])
    assert message in capsys.readouterr().err


def test_model_kwargs_that_do_not_fit(mynet, capsys):
    code = main(["export", f"{mynet}:classifier", "-o", "m.onnx", "--model-kwargs", '{"depth": 3}'])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"model factory '{mynet}:classifier' does not take --model-kwargs" in err
    assert "unexpected keyword argument 'depth'" in err and "classifier(width=4, classes=3)" in err
    code = main(["export", "resnet50", "-o", "m.onnx", "--model-kwargs", '{"num_classes": 10}'])
    assert code == 2 and "registry model 'resnet50' takes none" in capsys.readouterr().err


def test_missing_module_names_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["export", "nosuchnet:classifier", "-o", "m.onnx"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"no module 'nosuchnet' in the current directory ({tmp_path}) or on sys.path" in err


def test_missing_factory_lists_the_callables(mynet, capsys):
    code = main(["export", f"{mynet}:classifer", "-o", "m.onnx"])
    err = capsys.readouterr().err
    assert code == 2 and f"module {mynet} has no attribute 'classifer'; its callables: RFConv2d, classifier" in err


def test_official_resnest_without_rectified_conv_is_flagged_up_front(tmp_path, capsys, monkeypatch):
    pytest.importorskip("resnest", reason="resnest not installed (pip install --no-deps resnest==0.0.5)")
    # an "official" plain checkpoint: its keys fit the plain and the rectified network alike
    from resnest.torch import resnest50

    torch.save(resnest50().state_dict(), tmp_path / "official.pth")
    printed_before_export = []

    def export_onnx(*args, **kwargs):
        printed_before_export.append(capsys.readouterr().err)
        raise RuntimeError("export stopped by the test")

    monkeypatch.setattr("exporter.onnx.export.export_onnx", export_onnx)
    code = main(["export", "resnest.torch:resnest50", "--checkpoint", str(tmp_path / "official.pth"),
                 "-o", str(tmp_path / "plain.onnx")])
    assert code == 2 and "export stopped by the test" in capsys.readouterr().err
    notice = next(line for line in printed_before_export[0].splitlines() if line.startswith("notice:"))
    assert "resnest.torch:resnest50 built no rectified convolution" in notice
    assert "--model-kwargs '{\"rectified_conv\": true}'" in notice


def test_official_resnest_with_model_kwargs_is_rectified():
    pytest.importorskip("resnest", reason="resnest not installed (pip install --no-deps resnest==0.0.5)")
    import warnings

    from exporter.model.registry import load_model as load

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load("resnest.torch:resnest50", model_kwargs={"rectified_conv": True})
    rectified = [m for m in model.modules() if isinstance(m, RFConv2d) and m.rectify]
    assert rectified and all(m.count_mode == "rfconv" for m in rectified)


def test_module_written_against_rfconv_without_rectified_conv_is_flagged(tmp_path, monkeypatch):
    from exporter.model.factory import NoRectifiedConvWarning
    from exporter.model.registry import load_model as load

    name = f"rfnet_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        from rfconv import RFConv2d
        from torch import nn


        def build(use_rectified=False):
            conv = RFConv2d if use_rectified else nn.Conv2d
            return nn.Sequential(conv(3, 4, 3, padding=1))
    """))
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.warns(NoRectifiedConvWarning, match=r"pass the factory use_rectified=True"):
            load(f"{name}:build")
        model = load(f"{name}:build", model_kwargs={"use_rectified": True})
        assert isinstance(model[0], RFConv2d) and model[0].count_mode == "rfconv"
    finally:
        sys.modules.pop(name, None)


def test_plain_user_model_is_not_flagged(mynet):
    import warnings

    from exporter.model.registry import load_model as load

    sys.modules.pop(mynet, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load(f"{mynet}:classifier")
    assert isinstance(model, nn.Module)
