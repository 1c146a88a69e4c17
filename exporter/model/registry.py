"""Model registry: the paper's Table 1 architectures, rectified, with seeded random weights.

A registry name denotes the rectified model (``resnet50`` is RF-ResNet-50, sum mode);
``rectify=False`` gives the plain baseline with *identical* weights. Pretrained weights cannot
be downloaded here, so models are seeded and their BatchNorm layers get calibrated, non-trivial
statistics (see :func:`calibrate_batchnorm`) so that numerical comparisons mean something.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

from exporter.model.checkpoint import load_checkpoint
from exporter.model.compat import install_rfconv_shim
from exporter.model.convert import rectify_model
from exporter.model.factory import EXPORT_DEFAULTS_ATTR, load_factory_model

DENSE_EXPORT_DEFAULTS: Mapping[str, object] = MappingProxyType({"dynamic_hw": True})
"""Dense prediction takes images of any size: keep height and width dynamic in the exported file."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registry model (``build(rectify, average_mode) -> nn.Module``)."""

    name: str
    description: str
    build: Callable[[bool, bool], nn.Module]
    dense: bool = False
    """Dense prediction (``{"out": [N, classes, H, W]}``)."""
    export_defaults: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    """``export_onnx`` keyword defaults for this model (e.g. ``{"dynamic_hw": True}``); :func:`build_model`
    sets a copy as the model's ``_rfconv_export_defaults`` so the Python API and the CLI write the same file."""


def _torchvision(arch: str) -> Callable[[bool, bool], nn.Module]:
    def build(rectify: bool, average_mode: bool) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None)
        return rectify_model(model, average_mode=average_mode) if rectify else model

    return build


def _segmentation(arch: str) -> Callable[[bool, bool], nn.Module]:
    """A torchvision segmentation model (no auxiliary head, no pretrained backbone), rectified."""

    def build(rectify: bool, average_mode: bool) -> nn.Module:
        from torchvision.models import segmentation

        model = getattr(segmentation, arch)(weights=None, weights_backbone=None, aux_loss=False)
        return rectify_model(model, average_mode=average_mode) if rectify else model

    return build


def _regnet_x_4gf(rectify: bool, average_mode: bool) -> nn.Module:
    """RegNetX-4.0GF as in pycls (torchvision ships 3.2GF and 8GF, not this one)."""
    from torchvision.models.regnet import BlockParams, RegNet

    params = BlockParams.from_init_params(depth=23, w_0=96, w_a=38.65, w_m=2.43, group_width=40)
    model = RegNet(params)
    return rectify_model(model, average_mode=average_mode) if rectify else model


def _resnest(arch: str) -> Callable[[bool, bool], nn.Module]:
    """A ResNeSt from the official ``resnest`` package; its rectified convs come through the ``rfconv`` shim."""

    def build(rectify: bool, average_mode: bool) -> nn.Module:
        install_rfconv_shim()
        try:
            from resnest import torch as zoo
        except ImportError as err:
            raise RuntimeError(
                f"model {arch!r} needs the resnest package: pip install --no-deps resnest==0.0.5"
            ) from err
        return getattr(zoo, arch)(pretrained=False, rectified_conv=rectify, rectify_avg=average_mode)

    return build


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet50", "RF-ResNet-50 (torchvision)", _torchvision("resnet50")),
        ModelSpec("resnet101", "RF-ResNet-101 (torchvision)", _torchvision("resnet101")),
        ModelSpec("resnext50_32x4d", "RF-ResNeXt-50 32x4d (torchvision)", _torchvision("resnext50_32x4d")),
        ModelSpec("regnet_x_4gf", "RF-RegNetX-4.0GF (torchvision RegNet, pycls widths)", _regnet_x_4gf),
        ModelSpec("resnest50", "RF-ResNeSt-50 (resnest package, rectified_conv=True)", _resnest("resnest50")),
        ModelSpec("fcn_resnet50", "RF-FCN-ResNet-50 segmentation, 21 classes (torchvision)",
                  _segmentation("fcn_resnet50"), dense=True, export_defaults=DENSE_EXPORT_DEFAULTS),
        ModelSpec("deeplabv3_resnet50", "RF-DeepLabV3-ResNet-50 segmentation, 21 classes (torchvision)",
                  _segmentation("deeplabv3_resnet50"), dense=True, export_defaults=DENSE_EXPORT_DEFAULTS),
    )
}
DEFAULT_MODEL = "resnet50"


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, seed: int = 0, input_hw: int = 224, batches: int = 1) -> nn.Module:
    """Give every BatchNorm non-trivial, self-consistent statistics and affine parameters.

    Seeded random gamma in [0.5, 1.5] and beta ~ N(0, 0.1); then running mean/var are
    re-estimated from ``batches`` forward passes of seeded random images ``[4, 3, hw, hw]`` in
    train mode (cumulative average), so activations stay in a realistic range through deep
    networks. Returns the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        if bn.affine:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=gen) * 0.1)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration batches
    model.train()
    for _ in range(batches):
        model(torch.randn(4, 3, input_hw, input_hw, generator=gen))
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def build_model(
    name: str = DEFAULT_MODEL,
    rectify: bool = True,
    average_mode: bool = False,
    seed: int = 0,
    checkpoint=None,
) -> nn.Module:
    """Build a registry model in eval mode.

    Weights are seeded and BatchNorm is calibrated on the *rectified* architecture (as training
    it would have); ``rectify=False`` gives the plain architecture with those identical weights,
    the baseline for speed comparisons. With ``checkpoint`` the file's weights replace the
    seeded ones (see :func:`exporter.model.checkpoint.read_state_dict`). The model carries its
    spec's export defaults as a dict attribute ``_rfconv_export_defaults`` (``{"dynamic_hw": True}``
    for dense-prediction models), which ``export_onnx`` applies to the options it is not given.
    Raises ``ValueError`` for an unknown name or a checkpoint that does not fit.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registry models: {', '.join(REGISTRY)}")
    spec = REGISTRY[name]
    torch.manual_seed(seed)
    model = calibrate_batchnorm(spec.build(True, average_mode), seed=seed)
    if not rectify:
        plain = spec.build(False, False)
        plain.load_state_dict(model.state_dict())
        model = plain
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    setattr(model, EXPORT_DEFAULTS_ATTR, dict(spec.export_defaults))
    return model.eval()


def load_model(
    spec: str,
    rectify: bool = True,
    average_mode: bool = False,
    seed: int = 0,
    checkpoint=None,
    model_kwargs: Mapping[str, object] | None = None,
) -> nn.Module:
    """A model from a registry name or a ``package.module:factory`` spec, in eval mode.

    A factory spec is imported as ``python -m`` would: the current directory is searched first,
    so ``mynet:classifier`` finds ``./mynet.py``. The factory is called with ``model_kwargs`` as
    keyword arguments (registry models take none); see
    :func:`exporter.model.factory.load_factory_model` for the official-package checks. Raises
    ``ValueError`` for an unknown name, a factory that cannot be imported or called, or options
    that do not apply to the kind of model.
    """
    if ":" not in spec:
        if model_kwargs:
            raise ValueError(
                f"model_kwargs are passed to a package.module:factory; registry model {spec!r} takes none"
            )
        return build_model(spec, rectify, average_mode, seed, checkpoint)
    if not rectify or average_mode:
        raise ValueError(
            "rectify=False and average_mode=True apply to registry models; a package.module:factory "
            "model is built as its factory builds it"
        )
    return load_factory_model(spec, seed=seed, checkpoint=checkpoint, model_kwargs=model_kwargs)
