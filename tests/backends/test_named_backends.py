"""``--backends ov-cpu`` where OpenVINO does not import: compare and bench both stop before any
work with the one "cannot run here" line (one check, :func:`exporter.backends.availability.why_not`)."""

import sys

import pytest

from exporter.backends import availability
from exporter.cli import main

LINE = "backend 'ov-cpu' cannot run here: openvino does not import"


@pytest.fixture
def no_openvino(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # "import openvino" raises ImportError


def test_ov_cpu_is_a_backend_and_probed():
    assert "ov-cpu" in availability.BACKENDS
    assert "ov-cpu" in [found.name for found in availability.probe()]


def test_why_not_names_the_missing_openvino(no_openvino):
    reason = availability.why_not("ov-cpu")
    assert reason is not None and reason.startswith("openvino does not import") and "pip install" in reason
    with pytest.raises(ValueError, match=f"^{LINE}"):
        availability.check_named(["torch", "ov-cpu"])


@pytest.mark.parametrize("command", [
    ["compare", "no/such/model.onnx", "--model", "no.such.module:factory", "--backends", "torch,ov-cpu",
     "--report"],
    ["bench", "--backends", "ov-cpu", "--out"],
])
def test_named_ov_cpu_without_openvino_is_one_line_before_any_work(command, no_openvino, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*command, str(out)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"rfconv-deploy {command[0]}: error: {LINE}")
    assert captured.out == "" and not out.exists()


def test_compare_and_bench_share_the_one_check():
    from exporter.bench import latency
    from exporter.comparison import available

    assert latency.why_not is available.why_not is availability.why_not
    assert latency.check_named is available.check_named is availability.check_named
