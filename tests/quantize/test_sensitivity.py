"""The sensitivity benchmark's one graph edit: a tensor taken out of int8, nothing else."""

from __future__ import annotations

import numpy as np
import onnx

from benchmarks.quantize_sensitivity import _with_tensor_float
from tests.helpers.export_models import ort_session


def test_one_tensor_stays_fp32_and_only_it(quantized, tmp_path):
    model = onnx.load(str(quantized.int8))
    source = "input"  # the image's quantizer: leaving it out must change the logits
    changed = _with_tensor_float(model, source)
    q_of = lambda m: sorted(n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear")  # noqa: E731
    assert source in q_of(model) and source not in q_of(changed)
    assert [s for s in q_of(model) if s != source] == q_of(changed)
    readers = [n for n in changed.graph.node if source in n.input]
    assert readers and all(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for n in readers)
    path = tmp_path / "one_float.onnx"
    onnx.save(changed, str(path))
    x = np.random.default_rng(3).uniform(-2, 2, (2, 3, 24, 24)).astype(np.float32)
    before, after = (ort_session(p).run(None, {"input": x})[0] for p in (quantized.int8, path))
    assert not np.array_equal(before, after)
