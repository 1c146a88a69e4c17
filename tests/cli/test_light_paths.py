"""Light paths stay light: serving, the Triton writer, the TensorRT engine builder (an ONNX file
in, a plan out) and ``--help`` never load torch, torchvision or onnx-graphsurgeon (checked in a
fresh interpreter through ``sys.modules``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.serving_models import tiny_models

HEAVY = ("torch", "torchvision", "onnx_graphsurgeon")
REPORT = f"import json, sys; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"


def heavy_modules_after(code: str, *args: str) -> list[str]:
    """Which of :data:`HEAVY` a fresh interpreter has loaded after running ``code``."""
    result = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


HELP = """
from exporter.cli import COMMANDS, main
for argv in [["--help"]] + [[command, "--help"] for command in COMMANDS]:
    try:
        main(argv)
    except SystemExit:
        pass
"""


@pytest.mark.parametrize("code", [
    "import exporter",
    "import exporter.serving.server",
    "import exporter.serving.triton_repo",
    "import exporter.serving.grpc_server, exporter.serving.metrics, exporter.serving.kserve, prometheus_client, yaml",
    HELP,
    "import exporter.trt.engine, plugins",
], ids=["exporter", "serving.server", "serving.triton_repo", "serving.grpc-metrics-kserve", "cli-help",
        "trt.engine-plugins"])
def test_imports_load_no_torch(code):
    assert heavy_modules_after(code) == []


def test_serving_a_model_and_writing_a_triton_repository_load_no_torch(tmp_path):
    models = tiny_models()
    code = """
import sys
from exporter.serving.server import load_service
from exporter.serving.service import ServeConfig
from exporter.serving.triton_repo import write_repository
import numpy as np
service = load_service(sys.argv[1], ServeConfig(name="tiny"))
service.model.run({"input": np.zeros((1, 3, 16, 16), np.float32)})
service.close()
write_repository(sys.argv[1], sys.argv[2])
"""
    assert heavy_modules_after(code, str(models.dynamic), str(tmp_path / "repo")) == []
    assert (tmp_path / "repo" / "tiny" / "config.pbtxt").is_file()


def test_public_api_is_lazy_and_complete():
    import exporter

    assert set(exporter.__all__) >= {"RFConv2d", "rectify_model", "rectify_scale", "export_onnx", "compare",
                                     "build_model"}
    for name in exporter.__all__:
        assert getattr(exporter, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        exporter.nope  # noqa: B018
