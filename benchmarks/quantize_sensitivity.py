"""Where RF-ResNet-50 loses its int8 accuracy: each activation quantizer's share (issue 17).

Quantizes RF-ResNet-50 and the plain ResNet-50 with its own BatchNorm statistics (the models of
:func:`benchmarks.quantize_accuracy.resnet`; ``--samples`` random calibration inputs, percentile),
then, one activation tensor at a time, removes that tensor's ``QuantizeLinear ->
DequantizeLinear`` pairs (every per-consumer copy) so that it alone stays fp32, and measures the
int8 logits' cosine to fp32 on ``--evaluation`` held-out random inputs. A tensor's *gain* is that
cosine minus the fully quantized file's: what quantizing it costs in the presence of all the
others. Also adds fp32 noise of +-``k/2`` int8 steps to the input of each fp32 model, to tell a
network that amplifies rounding from one whose tensors are rounded coarsely.

Run: ``python -m benchmarks.quantize_sensitivity [--samples 64] [--evaluation 32] [--top 8]``
(about 15 minutes on 2 cores; not part of ``make bench``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.quantize_accuracy import _cosines, _export, _logits, _resnet50s

MODELS = ("rf", "plain_own_bn")


def _with_tensor_float(model, source: str):
    """A copy of the int8 ``model`` whose consumers of ``source``'s Q/DQ pairs read ``source``
    itself; None when a pair's output is a graph output (the logits' own quantizer)."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    tensor = graph.tensors()[source]
    for q in [n for n in tensor.outputs if n.op == "QuantizeLinear"]:
        for dq in list(q.outputs[0].outputs):
            if any(t is dq.outputs[0] for t in graph.outputs):
                return None
            for consumer in list(dq.outputs[0].outputs):
                for slot, t in enumerate(consumer.inputs):
                    if t is dq.outputs[0]:
                        consumer.inputs[slot] = tensor
    return gs.export_onnx(graph.cleanup())


def sensitivity(kind: str, model, folder: Path, samples: int, x: np.ndarray) -> dict:
    """``{"base": cosine, "gains": {tensor: gain}}`` for one model (see the module docstring)."""
    import onnx
    import torch

    from exporter.quantize.quantize import quantize_onnx

    fp32 = _export(model, torch.zeros(1, 3, 224, 224), folder / f"{kind}.onnx")
    int8 = folder / f"{kind}_int8.onnx"
    quantize_onnx(fp32, int8, samples=samples)
    want = _logits(fp32, x)
    base = _cosines(_logits(int8, x), want)
    quantized = onnx.load(str(int8))
    weights = {t.name for t in quantized.graph.initializer}
    sources = list(dict.fromkeys(n.input[0] for n in quantized.graph.node
                                 if n.op_type == "QuantizeLinear" and n.input[0] not in weights))
    gains, variant = {}, folder / f"{kind}_variant.onnx"
    for source in sources:
        changed = _with_tensor_float(quantized, source)
        if changed is None:
            continue
        onnx.save(changed, str(variant))
        gains[source] = _cosines(_logits(variant, x), want) - base
    return {"base": base, "gains": gains, "fp32": fp32}


def input_noise(fp32: Path, x: np.ndarray, steps: float, seed: int = 7) -> float:
    """Logits cosine of the fp32 file with uniform noise of +-``steps/2`` int8 input steps added."""
    from exporter.onnx.feeds import RANDOM_RANGE

    step = max(abs(v) for v in RANDOM_RANGE) / 127
    noise = np.random.default_rng(seed).uniform(-steps * step / 2, steps * step / 2, x.shape).astype(np.float32)
    return _cosines(_logits(fp32, x + noise), _logits(fp32, x))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="calibration samples (random)")
    parser.add_argument("--evaluation", type=int, default=32, help="evaluation inputs (random)")
    parser.add_argument("--top", type=int, default=8, help="tensors to list per model, largest gain first")
    args = parser.parse_args(argv)
    import torch

    from exporter.onnx.feeds import RANDOM_RANGE

    torch.set_num_threads(2)
    low, high = RANDOM_RANGE
    x = np.random.default_rng(1000).uniform(low, high, (args.evaluation, 3, 224, 224)).astype(np.float32)
    models = _resnet50s()
    with tempfile.TemporaryDirectory(prefix="quantize_sensitivity_") as work:
        for kind in MODELS:
            found = sensitivity(kind, models[kind], Path(work), args.samples, x)
            gains = found["gains"]
            low_gain, high_gain, total = min(gains.values()), max(gains.values()), sum(gains.values())
            print(f"resnet50 {kind}: int8 cosine {found['base']:.4f}; {len(gains)} activation tensors, each alone in "
                  f"fp32 gains {low_gain:+.4f} to {high_gain:+.4f} (sum {total:+.4f}, "
                  f"{sum(g > 0.0001 for g in gains.values())} above +0.0001)", flush=True)
            for name, gain in sorted(gains.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"    {name:<24} {gain:+.4f}")
            for steps in (0.5, 2.0):
                print(f"  fp32 input noise of +-{steps / 2:.2f} int8 steps: logits cosine "
                      f"{input_noise(found['fp32'], x, steps):.5f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
