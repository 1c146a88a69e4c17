"""deploy_examples/compare_backends.py runs as written (on a small model)."""

import importlib.util
import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy_examples" / "compare_backends.py"


def test_compare_backends_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("compare_backends", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    code = example.main(["--model", "tests.helpers.compare_models:tiny_rf", "--input-hw", "16", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Result: PASS" in out and "Polygraphy directly, torch vs ort-cpu: PASS" in out
    report = json.loads((tmp_path / "report.json").read_text())
    ran = [b["name"] for b in report["backends"] if b["status"] == "ran"]
    assert ran[0] == "torch" and {"ort-cpu", "onnx-ref"} <= set(ran)
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "results.json").is_file()
