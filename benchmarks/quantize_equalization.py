"""Exact per-position equalization of the int8 tensors RF-ResNet-50's 1x1 convs read (issue 17).

RF-ResNet-50 loses more int8 accuracy than the plain model because one per-tensor scale covers
border values several times the interior's (``benchmarks/README.md``, "Accuracy"). For a tensor
``y = relu(...)`` read only by a 1 x 1 conv of stride 1, any positive per-position gain ``g``
(``[1, 1, H, W]``) gives an exact rewrite, since ``relu`` and the 1 x 1 conv commute with it::

    relu -> Mul(1/g) -> [Q -> DQ] -> Conv(no bias) -> [Q -> DQ] -> Mul(g) -> Add(bias)

so the quantized tensor is ``y / g``, with a flatter range, and the conv's output tail is one
more fp32 ``Mul -> Add`` (placed by :mod:`exporter.quantize.placement` like a rectification
tail). Two gains are measured against the kept placement (no rewrite):

- ``factor``: ``g`` is the rectification factor of the conv before the ``relu`` (the factor is
  *deferred* past the 1 x 1 conv: the tensor no longer holds this layer's own border excess);
- ``measured``: ``g`` is each position's largest ``|y|`` over the calibration inputs, divided by
  the median of the interior's (two positions in from the border), floored at 1.

Each file is quantized as :func:`benchmarks.quantize_accuracy.resnet` does (percentile, random
calibration with ``--seeds``), and its logits cosine to fp32 is printed.

Run: ``python -m benchmarks.quantize_equalization [--samples 64] [--evaluation 32] [--seeds 0]``
(about 4 minutes per seed on 2 cores; not part of ``make bench``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.quantize_accuracy import _cosines, _export, _logits, _session

GAINS = ("factor", "measured")
INTERIOR_MARGIN = 2  # positions in from the border that count as interior for the measured gain


def equalization_sites(graph) -> list[tuple]:
    """``(tail, conv)`` per rectification tail that ends in a ``Relu`` read only by a 1 x 1
    conv of stride 1 and no padding: the tensors :func:`equalize` can rewrite."""
    from exporter.quantize.placement import rectification_tails

    sites = []
    for tail in rectification_tails(graph):
        readers = tail[-1].outputs[0].outputs
        if tail[-1].op != "Relu" or len(readers) != 1 or readers[0].op != "Conv":
            continue
        conv = readers[0]
        if tuple(conv.inputs[1].shape[2:]) == (1, 1) and set(conv.attrs.get("strides", [1])) == {1} \
                and not any(conv.attrs.get("pads", [0])):
            sites.append((tail, conv))
    return sites


def equalize(graph, gains: list[np.ndarray]) -> list[str]:
    """Rewrite each site of :func:`equalization_sites` with its gain (``[1, 1, H, W]``, > 0), in
    place; returns the names of the ``Mul(1/g)`` nodes, which the quantizer must leave fp32."""
    import onnx_graphsurgeon as gs

    sites = equalization_sites(graph)
    if len(sites) != len(gains):
        raise ValueError(f"{len(gains)} gains for {len(sites)} sites")
    divides = []
    for (tail, conv), gain in zip(sites, gains, strict=True):
        gain = np.asarray(gain, np.float32)
        if gain.ndim != 4 or gain.shape[:2] != (1, 1) or not np.all(gain > 0):
            raise ValueError(f"{conv.name}: a gain must be positive and [1, 1, H, W], got {gain.shape}")
        flat = gs.Variable(f"{conv.name}_equalized_input", dtype=np.float32)
        divide = gs.Node("Mul", f"{conv.name}_equalize", inputs=[tail[-1].outputs[0],
                         gs.Constant(f"{conv.name}_inverse_gain", (1 / gain).astype(np.float32))], outputs=[flat])
        weight = conv.inputs[1]
        bias = conv.inputs[2].values if len(conv.inputs) > 2 else np.zeros(weight.shape[0], np.float32)
        output = conv.outputs[0]
        raw = gs.Variable(f"{conv.name}_unbiased", dtype=np.float32)
        restored = gs.Variable(f"{conv.name}_restored", dtype=np.float32)
        conv.inputs, conv.outputs = [flat, weight], [raw]
        graph.nodes += [
            divide,
            gs.Node("Mul", f"{conv.name}_restore", inputs=[raw, gs.Constant(f"{conv.name}_gain", gain)],
                    outputs=[restored]),
            gs.Node("Add", f"{conv.name}_bias", outputs=[output], inputs=[
                restored, gs.Constant(f"{conv.name}_bias_per_channel", bias.reshape(1, -1, 1, 1).astype(np.float32))]),
        ]
        divides.append(divide.name)
    graph.cleanup().toposort()
    return divides


def factor_gains(graph) -> list[np.ndarray]:
    """Per site, the factor of its rectified conv (the ``Mul``'s constant: a static-size file)."""
    import onnx_graphsurgeon as gs

    gains = []
    for tail, _ in equalization_sites(graph):
        constant = next(t for t in tail[0].inputs if isinstance(t, gs.Constant))
        gains.append(np.asarray(constant.values, np.float32).reshape(1, 1, *constant.values.shape[-2:]))
    return gains


def measured_gains(model, graph, feeds: list[dict]) -> list[np.ndarray]:
    """Per site of ``graph`` (imported from the ``onnx.ModelProto`` ``model``), each position's
    largest ``|y|`` over ``feeds`` and the channels, over the interior's median, floored at 1 (a
    border no larger than the interior keeps gain 1). Runs a copy of ``model`` that also outputs
    the sites' tensors, in memory."""
    import onnx

    names = [tail[-1].outputs[0].name for tail, _ in equalization_sites(graph)]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = _session(probe.SerializeToString())
    peaks = [None] * len(names)
    for feed in feeds:
        for index, value in enumerate(session.run(names, feed)):
            peak = np.abs(value).max(axis=(0, 1))
            peaks[index] = peak if peaks[index] is None else np.maximum(peaks[index], peak)
    gains = []
    for peak in peaks:
        m = INTERIOR_MARGIN
        interior = peak[m:-m, m:-m] if min(peak.shape) > 2 * m else peak
        gains.append(np.maximum(peak / np.median(interior), 1.0).astype(np.float32)[None, None])
    return gains


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="calibration samples (random)")
    parser.add_argument("--evaluation", type=int, default=32, help="evaluation inputs (random)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="calibration draws")
    args = parser.parse_args(argv)
    import onnx
    import onnx_graphsurgeon as gs
    import torch

    from exporter.model.registry import build_model
    from exporter.onnx.feeds import RANDOM_RANGE
    from exporter.quantize.calibration import calibration_feeds
    from exporter.quantize.quantize import quantize_onnx

    torch.set_num_threads(2)
    low, high = RANDOM_RANGE
    x = np.random.default_rng(1000).uniform(low, high, (args.evaluation, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="quantize_equalization_") as work:
        folder = Path(work)
        fp32 = _export(build_model("resnet50", rectify=True), torch.zeros(1, 3, 224, 224), folder / "rf.onnx")
        fp32_model = onnx.load(str(fp32))
        want = _logits(fp32, x)
        for seed in args.seeds:
            feeds = calibration_feeds(fp32_model, samples=args.samples, seed=seed)
            cosines = {}
            for kind in ("kept", *GAINS):
                source, exclude = fp32, []
                if kind != "kept":
                    graph = gs.import_onnx(fp32_model)
                    gains = factor_gains(graph) if kind == "factor" else measured_gains(fp32_model, graph, feeds)
                    exclude = equalize(graph, gains)
                    source = folder / f"rf_{kind}.onnx"
                    onnx.save(gs.export_onnx(graph), str(source))
                    drift = float(np.abs(_logits(source, x[:4]) - want[:4]).max())
                    peaks = " ".join(f"{float(g.max()):.1f}" for g in gains)
                    print(f"  {kind}: {len(exclude)} tensors equalized (largest gain of each, in order: {peaks}); "
                          f"fp32 logits moved by {drift:.1e} at most", flush=True)
                int8 = folder / f"rf_{kind}_int8.onnx"
                quantize_onnx(source, int8, samples=args.samples, method="percentile", exclude=exclude, seed=seed)
                cosines[kind] = _cosines(_logits(int8, x), want)
            print(f"seed {seed}: int8 logits cosine " + ", ".join(
                f"{k} {v:.5f} ({v - cosines['kept']:+.5f})" for k, v in cosines.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
