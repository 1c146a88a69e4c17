"""Where the Q/DQ nodes go: every conv int8, each rectification factor applied in fp32.

ONNX Runtime fuses ``DequantizeLinear -> Conv -> QuantizeLinear`` into ``QLinearConv`` and
TensorRT fuses the same pattern into an int8 convolution; both need the conv's *own* output
quantized. A rectified conv is ``Conv -> Mul(factor) [-> Add(shift)] [-> Relu]``; if a quantizer
treats the ``Mul`` like any op, the factor itself is quantized to int8 (its values 1 ... 3 lose
up to half a step), and a tool that leaves the conv output float (``DQ -> Conv -> Mul -> Q``)
breaks ONNX Runtime's fusion. The placement here is::

    DQ -> Conv -> Q -> DQ -> Mul(factor, fp32) -> Add(shift, fp32) -> Relu -> Q -> DQ -> next conv

so the conv runs in int8, the factor and the shift are exact float32 constants, and the
element-wise tail is what TensorRT fuses into one point-wise kernel between int8 tensors. The
factor is positive and per position, so it cannot fold into a per-tensor or per-channel scale;
:func:`float_nodes` lists the tail (and every node that computes from shapes only, such as a
dynamic-size export's factor) for the quantizer to leave in fp32.

:func:`dedicate_qdq_pairs` then gives every consumer of a quantized tensor its own
``QuantizeLinear -> DequantizeLinear`` pair (same scale, own initializers): on x86 ONNX Runtime
converts int8 activation pairs to uint8 before fusing, but only a ``QuantizeLinear`` with one
consumer (its ``QDQS8ToU8Transformer``), so a tensor read by two nodes (a residual branch)
stays int8 while the conv's output becomes uint8, and the conv is not fused (20 of the 53 convs
of ResNet-50, plain or rectified, as ONNX Runtime 1.32's ``quantize_static`` writes it). With
one pair per consumer every conv fuses, and TensorRT reads the same file unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from exporter.onnx.graph import sole_consumer
from exporter.onnx.passes.rectified import find_rectified_convs, is_data_independent


def _per_channel_constant(node: gs.Node) -> bool:
    """An ``Add`` of a constant that broadcasts per channel (``[1, C, 1, 1]``, ``[C, 1, 1]``)."""
    constants = [t for t in node.inputs if isinstance(t, gs.Constant)]
    if node.op != "Add" or len(constants) != 1:
        return False
    shape = list(constants[0].shape)
    return len(shape) >= 3 and all(d == 1 for d in shape[-2:]) and all(d == 1 for d in shape[:-3])


def rectification_tails(graph: gs.Graph) -> list[list[gs.Node]]:
    """Per rectified conv, the nodes after it that stay fp32: the factor ``Mul``, then a
    per-channel shift ``Add`` (a folded BatchNorm) and a ``Relu`` when they follow alone."""
    tails = []
    for match in find_rectified_convs(graph):
        tail = [match.mul]
        for wanted in ("Add", "Relu"):
            consumer = sole_consumer(tail[-1].outputs[0], graph)
            if consumer is None or consumer.op != wanted:
                break
            if wanted == "Add" and not _per_channel_constant(consumer):
                break
            tail.append(consumer)
        tails.append(tail)
    return tails


def shape_only_nodes(graph: gs.Graph) -> list[gs.Node]:
    """Nodes whose outputs do not depend on the data: computed from constants and input shapes
    (a dynamic-size export's factor, reshape targets). Nothing on these paths is quantized."""
    seen: dict = {}
    return [n for n in graph.nodes if n.outputs and all(is_data_independent(t, seen) for t in n.outputs)
            and n.op not in ("QuantizeLinear", "DequantizeLinear")]


def float_nodes(graph: gs.Graph) -> list[str]:
    """Names of the nodes the quantizer must leave in fp32: rectification tails and shape paths."""
    names = [node.name for tail in rectification_tails(graph) for node in tail]
    names += [node.name for node in shape_only_nodes(graph)]
    unnamed = [n for n in graph.nodes if not n.name]
    if unnamed:
        raise ValueError(f"{len(unnamed)} node(s) have no name (the first is a {unnamed[0].op}); "
                         "the quantizer excludes nodes by name: export the file with rfconv-deploy export")
    return list(dict.fromkeys(names))


def dedicate_qdq_pairs(graph: gs.Graph) -> int:
    """Give each consumer of a ``QuantizeLinear``'s tensor its own Q -> DQ pair (in place).

    A ``QuantizeLinear`` whose output feeds several ``DequantizeLinear`` nodes, or one whose
    output feeds several nodes, is split so that every (Q, DQ, consumer) chain is its own, with
    copies of the scale and zero point under new names (so that ONNX Runtime's common
    subexpression elimination does not merge them again). Every new tensor and node gets a name
    no other has: quantizers that share one scale (ONNX Runtime gives ops that keep the scale,
    such as Reshape or MaxPool, the same scale on both sides) get copies of their own. Values are
    unchanged. Returns the number of pairs added.
    """
    taken_tensors, taken_nodes = set(graph.tensors()), {n.name for n in graph.nodes}

    def fresh(base: str, taken: set) -> str:
        name, suffix = base, 1
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        return name

    added = 0
    for q in [n for n in graph.nodes if n.op == "QuantizeLinear"]:
        chains = [(dq, consumer) for dq in list(q.outputs[0].outputs) if dq.op == "DequantizeLinear"
                  for consumer in list(dq.outputs[0].outputs)]
        if len(chains) <= 1 or any(t is dq.outputs[0] for dq, _ in chains for t in graph.outputs):
            continue
        for index, (dq, consumer) in enumerate(chains[1:], start=1):
            params = [gs.Constant(fresh(f"{t.name}__pair{index}", taken_tensors), np.array(t.values))
                      for t in q.inputs[1:]]
            quantized = gs.Variable(fresh(f"{q.outputs[0].name}__pair{index}", taken_tensors),
                                    dtype=q.outputs[0].dtype, shape=q.outputs[0].shape)
            restored = gs.Variable(fresh(f"{dq.outputs[0].name}__pair{index}", taken_tensors),
                                   dtype=dq.outputs[0].dtype, shape=dq.outputs[0].shape)
            graph.nodes.append(gs.Node("QuantizeLinear", fresh(f"{q.name}__pair{index}", taken_nodes), dict(q.attrs),
                                       [q.inputs[0], *params], [quantized]))
            graph.nodes.append(gs.Node("DequantizeLinear", fresh(f"{dq.name}__pair{index}", taken_nodes),
                                       dict(dq.attrs), [quantized, *params], [restored]))
            for slot, tensor in enumerate(consumer.inputs):
                if tensor is dq.outputs[0]:
                    consumer.inputs[slot] = restored
                    break
            added += 1
    graph.cleanup().toposort()
    return added
