"""The PyTorch side of each rectified layer: which module it comes from, and what its output means.

A forward hook on the matching ``RFConv2d`` gives ``y = s * (W x + b)``. When the exporter folded
a BatchNorm into the conv, ``W' = g * W`` and ``B' = g * b`` per output channel, so the ONNX tensor
is ``g * y`` (plus the plugin's bias and activation, when fused). ``g`` is the folded PyTorch
BatchNorm's when one matches the file, else recovered from the two sets of weights by least
squares per channel (exactly 1 when nothing was folded), which makes the two sides comparable
without knowing how BN was folded.

Modules are matched to ONNX layers by the module path ``torch.onnx.export`` records in node
metadata when every layer has one, else by their filters, else in execution order; shapes are
checked either way.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import onnx
import torch

from exporter.backends.runners import LayerTap
from exporter.comparison.layerwise import LayerMatchError, RectifiedLayer
from exporter.comparison.layerwise import constants as file_constants
from exporter.model.layer import RFConv2d


def layer_constants(model: onnx.ModelProto, layers: list[RectifiedLayer]) -> dict[str, np.ndarray]:
    """The layers' conv weights, conv biases and plugin biases that are constants."""
    return file_constants(model, {name for layer in layers for name in (layer.weight, layer.conv_bias, layer.fused_bias)
                              if name})


def rectifying_modules(model: torch.nn.Module) -> OrderedDict[str, RFConv2d]:
    """``RFConv2d`` modules that rectify (others export as a plain Conv), by qualified name."""
    return OrderedDict(
        (name, m) for name, m in model.named_modules() if isinstance(m, RFConv2d) and m.rectify
    )


def _execution_order(model: torch.nn.Module, names: list[str], inputs: list[torch.Tensor]):
    """(module name, output shape) in the order the modules first run on ``inputs``."""
    order = OrderedDict()
    modules = dict(model.named_modules())

    def hook(name):
        def record(_m, _i, out):
            order.setdefault(name, tuple(out.shape))
        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return list(order.items())


FILTER_COSINE = 0.999
"""Two conv weights hold the same filters when most output channels agree to this cosine (a
folded BatchNorm scales each channel, which leaves its direction alone)."""


FILTER_COLUMNS = 256
"""Filters are matched on their first this many weights: a folded BatchNorm scales a filter,
which leaves the direction of any part of it alone, and two different filters agreeing to
:data:`FILTER_COSINE` on 256 weights by chance is as unlikely as on all of them."""


def _unit_filters(weight: np.ndarray) -> np.ndarray:
    """``[O, min(I*kh*kw, FILTER_COLUMNS)]`` float64 rows of unit length (zero rows stay zero)."""
    rows = weight.reshape(weight.shape[0], -1)[:, :FILTER_COLUMNS].astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _same_filters(onnx_rows: np.ndarray, rows: np.ndarray) -> bool:
    """Most output channels of two :func:`_unit_filters` agree to :data:`FILTER_COSINE`."""
    if onnx_rows.shape != rows.shape:
        return False
    return float(np.mean(np.sum(onnx_rows * rows, axis=1) > FILTER_COSINE)) >= 0.5


def _match_by_weights(layers, constants, candidates) -> list[str] | None:
    """Each layer's module found by its filters (``constants``: the file's, by name); ``None``
    unless every layer matches exactly one module, and a different one. Only same-shaped filters
    are compared, each normalized once."""
    weights = {name: module.weight.detach().cpu().numpy() for name, module in candidates.items()}
    units: dict[tuple[str, str], np.ndarray] = {}

    def unit(side, name, weight):
        if (side, name) not in units:
            units[side, name] = _unit_filters(weight)
        return units[side, name]

    names = []
    for layer in layers:
        onnx_weight = constants.get(layer.weight)
        found = [] if onnx_weight is None else [
            name for name, weight in weights.items()
            if weight.shape == onnx_weight.shape
            and _same_filters(unit("onnx", layer.weight, onnx_weight), unit("torch", name, weight))
        ]
        if len(found) != 1 or found[0] in names:
            return None
        names.append(found[0])
    return names


def match_modules(
    layers: list[RectifiedLayer], model: torch.nn.Module, inputs: list[torch.Tensor],
    constants: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """The ``RFConv2d`` module name for each ONNX layer: by recorded name, else by filters (the
    file's weights in ``constants``, by name, see :func:`layer_constants`; no forward pass; the
    file may have fewer rectified convs than the model, and modules left over are
    :func:`unmatched_modules`), else by execution order when the counts agree."""
    candidates = rectifying_modules(model)
    recorded = [layer.module for layer in layers]
    if all(name in candidates for name in recorded) and len(set(recorded)) == len(recorded):
        return recorded
    by_weights = _match_by_weights(layers, constants, candidates) \
        if constants is not None and len(layers) <= len(candidates) else None
    if by_weights is not None:
        return by_weights
    if len(candidates) != len(layers):
        raise LayerMatchError(
            f"the ONNX model has {len(layers)} rectified conv(s) but the PyTorch model has "
            f"{len(candidates)} rectifying RFConv2d module(s); check that the PyTorch model (its checkpoint, "
            "rectification and average mode) is the one the file was exported from"
        )
    order = _execution_order(model.eval(), list(candidates), inputs)
    if len(order) != len(layers):
        raise LayerMatchError(
            f"only {len(order)} of {len(candidates)} rectifying modules ran in a forward pass"
        )
    return [name for name, _ in order]


def weights_differ_everywhere(references: list[LayerReference]) -> bool:
    """True when no matched layer's filters in the file agree with its module's (a model built
    without its checkpoint, or the wrong one): every layer then differs, however it was matched."""
    return bool(references) and not any(ref.filters_agree for ref in references)


def unmatched_modules(references: list, model: torch.nn.Module) -> list[str]:
    """Rectifying ``RFConv2d`` modules that no rectified conv of the file was matched to (its
    scale ``Mul`` went missing), in module order; ``references`` as :func:`layer_taps` returns."""
    matched = {ref.tap.module for ref in references}
    return [name for name in rectifying_modules(model) if name not in matched]


def _channel_gain(onnx_weights: list[np.ndarray], torch_weights: list[np.ndarray]) -> np.ndarray:
    """Per-output-channel ``g`` minimising ``|W' - g W|`` over all given weight tensors, float64."""
    num = sum(
        (a.astype(np.float64) * b.astype(np.float64)).reshape(a.shape[0], -1).sum(1)
        for a, b in zip(onnx_weights, torch_weights, strict=True)
    )
    den = sum((b.astype(np.float64) ** 2).reshape(b.shape[0], -1).sum(1) for b in torch_weights)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


@dataclass(frozen=True)
class LayerReference:
    """How the PyTorch side of one layer is computed: the tap, and where a fused shift comes from."""

    tap: LayerTap
    shift_source: str | None  # "PyTorch BatchNorm '<name>'", "the ONNX file" or None (no shift)
    filters_agree: bool = True  # most of the file's filters point the module's way (FILTER_COSINE)


GAIN_MATCH_RTOL = 2e-3  # fp16 weights carry the gain to about 1e-3
"""A channel's gain in the file matches a BatchNorm's when within this relative difference."""


def _batchnorm_affines(model: torch.nn.Module) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every affine BatchNorm2d with running statistics as ``(name, a, c)``: its per-channel
    ``a = gamma / sqrt(var + eps)`` and shift ``c = beta - mean * a``, float64."""
    affines = []
    for name, bn in model.named_modules():
        if isinstance(bn, torch.nn.BatchNorm2d) and bn.affine and bn.track_running_stats:
            a = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().cpu().numpy()
            shift = bn.bias.detach().double().cpu().numpy() - bn.running_mean.double().cpu().numpy() * a
            affines.append((name, a, shift))
    return affines


def _folded_batchnorm(affines: list[tuple[str, np.ndarray, np.ndarray]],
                      gain: np.ndarray) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The BatchNorm folded into a conv whose file gain per channel is ``gain``: one of
    :func:`_batchnorm_affines`, the one whose ``a`` matches ``gain`` on most channels, so a fold
    that is wrong on a few channels is still found, and the reference takes ``a`` and ``c`` from
    PyTorch: it stays independent of the file being checked. ``None`` when no BatchNorm matches.
    """
    best, best_share = None, 0.5
    for name, a, shift in affines:
        if a.size == gain.size:
            share = float(np.mean(np.abs(a - gain) <= GAIN_MATCH_RTOL * np.abs(a) + 1e-6))
            if share > best_share:
                best, best_share = (name, a, shift), share
    return best


def layer_taps(
    layers: list[RectifiedLayer],
    onnx_model: onnx.ModelProto,
    torch_model: torch.nn.Module,
    inputs: list[torch.Tensor],
) -> list[LayerReference]:
    """Per layer, a :class:`LayerTap` that turns the module's output into the ONNX tensor's meaning.

    The per-channel gain ``g`` is that of the PyTorch BatchNorm that was folded, when one matches
    the file on most channels (:func:`_folded_batchnorm`), so a fold wrong on one channel fails
    at its own layer; otherwise (nothing folded, or no BatchNorm matches) it is recovered from
    the weights by least squares. A plugin's fused shift comes from that BatchNorm too when one
    matches, otherwise (with ``shift_source`` saying so) from the ONNX file itself.
    """
    constants = layer_constants(onnx_model, layers)
    names = match_modules(layers, torch_model, inputs, constants)
    modules = rectifying_modules(torch_model)
    affines = _batchnorm_affines(torch_model)
    references = []
    for layer, name in zip(layers, names, strict=True):
        module = modules[name]
        weight = module.weight.detach().cpu().numpy()
        onnx_weight = constants.get(layer.weight)
        if onnx_weight is None:
            raise LayerMatchError(f"{layer.describe()}: its weight {layer.weight!r} is not a constant")
        if onnx_weight.shape != weight.shape:
            raise LayerMatchError(
                f"{layer.describe()} has weights {onnx_weight.shape} but module {name!r} has "
                f"{tuple(weight.shape)}: the layers do not correspond"
            )
        pairs = [(onnx_weight, weight)]
        if module.bias is not None and layer.conv_bias in constants:
            pairs.append((constants[layer.conv_bias], module.bias.detach().cpu().numpy()))
        gain = _channel_gain(*zip(*pairs, strict=True))
        folded = None if np.allclose(gain, 1.0, rtol=GAIN_MATCH_RTOL) else _folded_batchnorm(affines, gain)
        if folded is not None:
            gain = folded[1]
        shift, source = None, None
        if layer.fused_bias is not None:
            if folded is not None:
                source, shift = f"PyTorch BatchNorm {folded[0]!r}", folded[2]
            elif layer.fused_bias in constants:
                source, shift = "the ONNX file", constants[layer.fused_bias]
            else:
                raise LayerMatchError(f"{layer.describe()}: its bias {layer.fused_bias!r} is not a constant")
        tap = LayerTap(name, layer.tensor, _transform(gain, shift, layer.activation))
        agree = _same_filters(_unit_filters(onnx_weight), _unit_filters(weight))
        references.append(LayerReference(tap, source, agree))
    return references


def _transform(gain: np.ndarray, shift: np.ndarray | None, activation: str):
    """``y -> act(g * y [+ c])`` in ``y``'s precision, or float32 for narrower types (a float64
    reference stays float64; the fp16 floor model's taps are widened to float32 only after it)."""
    gain_t = torch.from_numpy(np.asarray(gain, np.float64).reshape(1, -1, 1, 1))
    shift_t = None if shift is None else torch.from_numpy(np.asarray(shift, np.float64).reshape(1, -1, 1, 1))

    def to_onnx_meaning(y: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
        out = y.to(dtype) * gain_t.to(y.device, dtype)
        if shift_t is not None:
            out = out + shift_t.to(y.device, dtype)
        return torch.relu(out) if activation == "relu" else out

    return to_onnx_meaning
