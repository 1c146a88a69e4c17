"""INT8 quantization of an exported ONNX file: :func:`quantize_onnx`.

Built on ONNX Runtime's ``quantize_static`` in QDQ format (see the README for why not NVIDIA
ModelOpt): int8 symmetric activations (zero point 0) per tensor, int8 symmetric weights per
output channel (axis 0), float32 biases (TensorRT dequantizes int8 only), every op ONNX Runtime
can quantize, except the nodes of :func:`exporter.quantize.placement.float_nodes` (each
rectification factor and its tail, and shape paths) and the ones named in ``exclude``. BatchNorm
is folded first (:mod:`exporter.onnx.passes.fold_bn`). After the quantizer,
:func:`exporter.quantize.placement.dedicate_qdq_pairs` gives each consumer its own Q/DQ pair, and
:func:`exporter.quantize.rules.check_qdq` checks the result: a file that breaks a rule is not
written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from exporter import __version__
from exporter.onnx.files import output_file_problem
from exporter.onnx.passes.fold_bn import fold_batchnorm
from exporter.onnx.passes.rectified import find_rectified_convs
from exporter.onnx.precision import file_precision
from exporter.quantize.calibration import FeedReader, calibration_feeds
from exporter.quantize.options import (
    DEFAULT_ACTIVATIONS,
    DEFAULT_METHOD,
    DEFAULT_SAMPLES,
    PERCENTILE,
    QuantizeConfig,
)
from exporter.quantize.placement import dedicate_qdq_pairs, float_nodes, shape_only_nodes
from exporter.quantize.rules import RULES, check_qdq, format_violations

CALIBRATION_BATCH_LIMIT = 4
"""At most this many calibration samples' activations are held in memory at once (see
:func:`_calibration_stride`)."""


def _calibration_stride(samples: int) -> dict:
    """ONNX Runtime's ``CalibStridedMinMax`` for ``samples``: the largest stride up to
    :data:`CALIBRATION_BATCH_LIMIT` that divides ``samples`` (ORT requires a divisor).

    Without a stride ORT's histogram calibrators (percentile, entropy) keep every sample's
    activations until the end: about 90 MB a sample on ResNet-50 at 224 px, so 256 samples were
    killed for memory on a 24 GiB machine. Each stride is collected on its own and merged into
    the running ranges or histograms (same bin width, extended as needed); none for one stride.
    """
    if samples <= CALIBRATION_BATCH_LIMIT:
        return {}
    stride = max(s for s in range(1, CALIBRATION_BATCH_LIMIT + 1) if samples % s == 0)
    return {"CalibStridedMinMax": stride}


class QuantizeError(ValueError):
    """The file or the settings cannot be quantized; the message says what to change."""


@dataclass
class QuantizeReport:
    """What :func:`quantize_onnx` wrote. Sizes in bytes, times in seconds."""

    path: Path
    source: Path
    activations: str
    method: str
    calibration: str
    samples: int
    quantized_convs: int
    convs: int  # convs on data (the ones that count taps on a shape path are apart)
    rectified_convs: int
    float_nodes: list[str]
    excluded: list[str]
    qdq_pairs_added: int
    batchnorms_folded: int
    nodes_by_type: dict[str, int]
    file_bytes: int
    source_bytes: int
    seconds: float
    calibration_seconds: float
    violations: int = 0
    shape_path_convs: int = 0
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for people: file, settings, what is int8 and what stayed fp32."""
        target = "TensorRT-ready" if self.activations == "int8" else "ONNX Runtime CPU only (uint8 activations)"
        nodes = ", ".join(f"{op} {n}" for op, n in sorted(self.nodes_by_type.items(), key=lambda kv: -kv[1]))
        lines = [
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, {self.file_bytes / self.source_bytes:.2f} x the "
            f"fp32 file) in {self.seconds:.1f} s ({self.calibration_seconds:.1f} s calibrating)",
            f"  {self.activations} activations per tensor, int8 weights per channel, symmetric; {target}",
            f"  calibration: {self.samples} sample(s) of {self.calibration}, {self.method}",
            f"  int8 convs: {self.quantized_convs} of {self.convs}"
            + (f" ({self.shape_path_convs} more compute the factor from shapes, in fp32)"
               if self.shape_path_convs else "")
            + f"; rectified convs: {self.rectified_convs}, each factor applied in fp32 after its conv's int8 output",
            f"  left in fp32: {len(self.float_nodes)} node(s) of rectification tails and shape paths"
            + (f", {len(self.excluded)} excluded by name ({', '.join(self.excluded[:4])}"
               + (", ..." if len(self.excluded) > 4 else "") + ")" if self.excluded else ""),
            f"  Q/DQ rules (TensorRT): {len(RULES)} checked, "
            f"{self.violations} violation(s)",
            f"  nodes ({sum(self.nodes_by_type.values())}): {nodes}",
        ]
        lines += [f"  notice: {n}" for n in self.notices]
        return "\n".join(lines)


def _check_settings(source: Path, path: Path, **settings) -> None:
    try:  # the light checks of the settings, in one place
        QuantizeConfig(**settings)
    except ValueError as err:
        raise QuantizeError(str(err)) from err
    if not source.is_file():
        raise QuantizeError(f"ONNX model {source} does not exist" + (" (it is a directory)" if source.is_dir() else ""))
    if problem := output_file_problem(path, "model_int8.onnx"):
        raise QuantizeError(problem)
    if path.resolve() == source.resolve():
        raise QuantizeError(f"output {path} is the input file; choose another name")


def _load(source: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(source))
    except Exception as err:  # noqa: BLE001 - protobuf raises assorted errors for non-ONNX files
        raise QuantizeError(f"cannot read {source} as an ONNX model: {err}") from err
    precision = file_precision(model)
    if precision != "fp32":
        raise QuantizeError(f"{source} is {precision}: quantize the fp32 export (rfconv-deploy export without "
                            "--precision), not an fp16 or already quantized file")
    plugins = sorted({n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if plugins:
        raise QuantizeError(f"{source} has custom ops ({', '.join(plugins)}): quantize a static or dynamic-H/W "
                            "export, not a plugin-mode one")
    return model


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer prints its steps and logs advice on the root logger, Polygraphy
    logs the random data it generates: keep them off the summary (progress comes from our callback)."""
    from polygraphy.logger import G_LOGGER

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), G_LOGGER.verbosity(G_LOGGER.CRITICAL):
            yield
    finally:
        logging.disable(previous)


def _method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def quantize_onnx(
    onnx_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    calibration: str = "random",
    samples: int = DEFAULT_SAMPLES,
    method: str = DEFAULT_METHOD,
    activations: str = DEFAULT_ACTIVATIONS,
    exclude: Sequence[str] = (),
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> QuantizeReport:
    """Quantize the fp32 file ``onnx_path`` to INT8 Q/DQ and write it to ``output_path``.

    ``calibration`` is ``"random"`` (seeded with ``seed``), a folder of images or an ``.npz``
    (:func:`exporter.quantize.calibration.calibration_feeds`); ``samples`` of them (batch 1)
    calibrate the activation ranges with ``method`` (one of :data:`exporter.quantize.options.METHODS`). ``activations``
    ``"int8"`` writes TensorRT's symmetric int8 Q/DQ (default), ``"uint8"`` the ONNX Runtime CPU
    variant. ``exclude`` names nodes (or conv weight / output tensors) to leave in fp32.
    ``input_shape`` fixes H and W of a dynamic-H/W file for calibration (the file stays dynamic:
    its factors are still computed from the input size, in fp32). ``progress`` receives a line
    per step and per calibration sample. Raises :class:`QuantizeError` for bad input.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    start = time.perf_counter()
    say = progress or (lambda line: None)
    source, path = Path(onnx_path), Path(output_path)
    _check_settings(source, path, calibration=calibration, samples=samples, method=method, activations=activations,
                    exclude=tuple(exclude), seed=seed, input_shape=None if input_shape is None else tuple(input_shape))
    model = _load(source)
    graph = gs.import_onnx(model)
    folded = fold_batchnorm(graph)
    try:
        keep_float = float_nodes(graph)
    except ValueError as err:
        raise QuantizeError(f"{source}: {err}") from err
    by_name = {n.name: n for n in graph.nodes}
    by_tensor = {t.name: n for n in graph.nodes for t in n.outputs}
    by_tensor.update({n.inputs[1].name: n for n in graph.nodes if n.op == "Conv"})  # a conv by its weight
    excluded = []
    for name in exclude:
        node = by_name.get(name) or by_tensor.get(name)
        if node is None:
            convs = [n.name for n in graph.nodes if n.op == "Conv"][:5]
            raise QuantizeError(f"exclude: no node or tensor named {name!r} in {source} (convs are named like "
                                f"{', '.join(convs)})")
        excluded.append(node.name)
    rectified = len(find_rectified_convs(graph))
    shape_convs = {n.name for n in shape_only_nodes(graph) if n.op == "Conv"}
    prepared = gs.export_onnx(graph)
    try:
        with _quiet():
            feeds = calibration_feeds(prepared, calibration, samples, seed, input_shape)
    except ValueError as err:
        raise QuantizeError(str(err)) from err
    say(f"calibrating on {len(feeds)} sample(s) of {calibration} ({method})")
    calibrating = time.perf_counter()

    def step(done: int, total: int) -> None:
        say(f"  calibration sample {done}/{total} ({time.perf_counter() - calibrating:.0f} s)")

    extra = {
        "ActivationSymmetric": activations == "int8",
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "CalibPercentile": PERCENTILE,
        **_calibration_stride(len(feeds)),
    }
    with tempfile.TemporaryDirectory(prefix="rfconv-quantize-", dir=path.parent if str(path.parent) else ".") as work:
        staged, quantized = Path(work) / "prepared.onnx", Path(work) / "quantized.onnx"
        onnx.save(prepared, str(staged))
        try:
            with _quiet():
                quantize_static(
                    str(staged), str(quantized), FeedReader(feeds, step), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=False,
                    activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=_method(method),
                    nodes_to_exclude=[*keep_float, *excluded], extra_options=extra,
                )
        except (ValueError, RuntimeError) as err:
            raise QuantizeError(f"ONNX Runtime's quantizer failed on {source}: {err}") from err
        calibration_seconds = time.perf_counter() - calibrating
        say("placing Q/DQ pairs (one per consumer) and checking the Q/DQ rules")
        out_graph = gs.import_onnx(onnx.load(str(quantized)))
        added = dedicate_qdq_pairs(out_graph)
        result = gs.export_onnx(out_graph)
        result.producer_name, result.producer_version = "rfconv-deploy quantize", __version__
        violations = check_qdq(result, activations)
        if violations:
            raise QuantizeError(f"the quantized file breaks {len(violations)} Q/DQ rule(s); nothing written:\n"
                                + format_violations(violations))
        onnx.checker.check_model(result, full_check=True)
        final = Path(work) / "final.onnx"
        onnx.save(result, str(final))
        os.replace(final, path)
    convs = [n for n in result.graph.node if n.op_type == "Conv" and n.name not in shape_convs]
    dequantized = {n.output[0] for n in result.graph.node if n.op_type == "DequantizeLinear"}
    notices = []
    if folded.into_conv or folded.through_scale:
        notices.append(f"folded {folded.into_conv + folded.through_scale} BatchNormalization(s) before quantizing")
    return QuantizeReport(
        path=path, source=source, activations=activations, method=method, calibration=calibration,
        samples=len(feeds), quantized_convs=sum(n.input[1] in dequantized for n in convs), convs=len(convs),
        rectified_convs=rectified, float_nodes=keep_float, excluded=excluded, qdq_pairs_added=added,
        batchnorms_folded=folded.into_conv + folded.through_scale,
        nodes_by_type=dict(Counter(n.op_type for n in result.graph.node)), file_bytes=path.stat().st_size,
        source_bytes=source.stat().st_size, seconds=time.perf_counter() - start,
        calibration_seconds=calibration_seconds, violations=0, shape_path_convs=len(shape_convs), notices=notices,
    )
