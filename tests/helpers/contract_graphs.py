"""Hand-built graphs in the export contract's form, for testing passes before (and apart from) export_onnx.

``contract_model(layers, input_shape)`` writes ``Conv(W', B'?) -> Mul(scale[1,1,Ho,Wo]) [-> Add(c[1,C,1,1])]
[-> Relu]`` for each :class:`Layer` (a rectified conv with BatchNorm folded by hand), in float32 or float16.
``torch_forward`` computes the same network with PyTorch modules (RFConv2d, BatchNorm2d, ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from exporter import RFConv2d
from exporter.model.scale import rectify_scale


@dataclass
class Layer:
    conv: RFConv2d
    bn: nn.BatchNorm2d | None = None
    relu: bool = False

    def module(self) -> nn.Module:
        parts = [self.conv] + ([self.bn] if self.bn is not None else []) + ([nn.ReLU()] if self.relu else [])
        return nn.Sequential(*parts)


def make_layer(c_in, c_out, kernel, stride=1, padding=1, dilation=1, *, bias=True, bn=True, relu=True,
               average_mode=False, count_mode="exact", seed=0) -> Layer:
    torch.manual_seed(seed)
    conv = RFConv2d(c_in, c_out, kernel, stride, padding, dilation, bias=bias, average_mode=average_mode,
                    count_mode=count_mode)
    norm = None
    if bn:
        norm = nn.BatchNorm2d(c_out)
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    return Layer(conv, norm, relu)


def torch_forward(layers: list[Layer], x: torch.Tensor) -> torch.Tensor:
    model = nn.Sequential(*(layer.module() for layer in layers)).eval()
    with torch.no_grad():
        return model(x)


def contract_model(layers: list[Layer], input_shape, dtype=TensorProto.FLOAT, opset: int = 18) -> onnx.ModelProto:
    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    nodes, inits = [], []
    current, (h, w) = "input", input_shape[2:]
    for i, layer in enumerate(layers):
        conv = layer.conv
        weight = conv.weight.detach().double().numpy()
        bias = None if conv.bias is None else conv.bias.detach().double().numpy()
        shift = None
        if layer.bn is not None:
            bn = layer.bn
            gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
            weight = weight * gain[:, None, None, None]
            bias = None if bias is None else bias * gain
            shift = (bn.bias.detach().double().numpy() - bn.running_mean.double().numpy() * gain)
        inits.append(numpy_helper.from_array(weight.astype(np_dtype), f"w{i}"))
        conv_inputs = [current, f"w{i}"]
        if bias is not None:
            inits.append(numpy_helper.from_array(bias.astype(np_dtype), f"b{i}"))
            conv_inputs.append(f"b{i}")
        (ph, pw) = conv.padding
        nodes.append(helper.make_node("Conv", conv_inputs, [f"conv{i}"], name=f"conv{i}",
                                      kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
                                      pads=[ph, pw, ph, pw], dilations=list(conv.dilation)))
        scale = rectify_scale((h, w), conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.average,
                              conv.count_mode, dtype=torch.float64).numpy()
        h, w = scale.shape
        inits.append(numpy_helper.from_array(scale.reshape(1, 1, h, w).astype(np_dtype), f"scale{i}"))
        nodes.append(helper.make_node("Mul", [f"conv{i}", f"scale{i}"], [f"mul{i}"], name=f"mul{i}"))
        current = f"mul{i}"
        if shift is not None:
            inits.append(numpy_helper.from_array(shift.reshape(1, -1, 1, 1).astype(np_dtype), f"shift{i}"))
            nodes.append(helper.make_node("Add", [current, f"shift{i}"], [f"add{i}"], name=f"add{i}"))
            current = f"add{i}"
        if layer.relu:
            nodes.append(helper.make_node("Relu", [current], [f"relu{i}"], name=f"relu{i}"))
            current = f"relu{i}"
    nodes.append(helper.make_node("Identity", [current], ["output"]))
    graph = helper.make_graph(nodes, "contract", [helper.make_tensor_value_info("input", dtype, list(input_shape))],
                              [helper.make_tensor_value_info("output", dtype, None)], initializer=inits)
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)
