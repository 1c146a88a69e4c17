"""The RFConvRectify CUDA kernel through its PyTorch extension, against exporter.rectify_scale.

Without a GPU only the extension's compilation is checked (when nvcc, ninja and a CUDA build of torch
are present); the kernel tests skip. On a GPU the kernel must equal the float32 reference bit for
bit: it does the same correctly rounded multiply, add and ReLU, and fp16 rounds once at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exporter.model.scale import rectify_scale

ROOT = Path(__file__).resolve().parents[2]


def test_extension_compiles_without_a_gpu(tmp_path):
    """In CI (about 30 s, nvcc compiling): the only check on a machine without a GPU that the kernel's
    torch extension still builds; a GPU machine would be the first to find out otherwise."""
    missing = [tool for tool in ("nvcc", "ninja") if shutil.which(tool) is None]
    if torch.version.cuda is None or missing:
        pytest.skip(f"cannot build the torch extension here: CPU-only torch build or missing {missing}")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0"))
    if "CUDA_HOME" not in env and Path("/usr/local/cuda/bin/nvcc").exists():
        env["CUDA_HOME"] = "/usr/local/cuda"
    script = (
        "import sys, torch\n"
        "from plugins.torch_kernel import compile_extension\n"
        "module = compile_extension(sys.argv[1])\n"
        "try:\n"
        "    module.rectify(torch.zeros(1, 1, 4, 4), [4, 4], [3, 3], [1, 1], [1, 1], [1, 1], False, 'exact',"
        " None, False, None)\n"
        "except RuntimeError as err:\n"
        "    print('rejected:', err)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rejected: rectify: y must be a CUDA tensor" in result.stdout


GEOMETRIES = [
    # (N, C, H, W, kernel, stride, padding, dilation, average, count_mode)
    (2, 16, 56, 56, 3, 1, 1, 1, False, "exact"),
    (1, 8, 224, 224, 7, 2, 3, 1, False, "exact"),
    (3, 5, 15, 9, 3, 2, 1, 1, False, "exact"),
    (1, 33, 7, 7, 3, 1, 1, 1, False, "exact"),
    (2, 4, 17, 23, (3, 5), (1, 2), (1, 2), 1, True, "exact"),
    (2, 4, 20, 19, 5, 1, 4, 2, False, "rfconv"),
    (2, 4, 20, 19, 5, 1, 4, 2, False, "exact"),
    (2, 3, 2, 2, 3, 1, 1, 1, False, "exact"),
]


def _conv_out(n, c, h, w, kernel, stride, padding, dilation, dtype, offset=0):
    factor = rectify_scale((h, w), kernel, stride, padding, dilation)
    shape = (n, c, *factor.shape)
    numel = n * c * factor.numel()
    base = torch.randn(numel + offset, device="cuda", dtype=torch.float32).to(dtype)
    return base[offset:].view(shape)  # offset > 0: contiguous but not 16-byte aligned


def _reference(y, in_hw, geometry, bias, relu):
    """act(y * factor + bias) in float32 with PyTorch ops, rounded once to y's dtype."""
    kernel, stride, padding, dilation, average, count_mode = geometry
    factor = rectify_scale(in_hw, kernel, stride, padding, dilation, average, count_mode, device=y.device)
    out = y.float() * factor
    if bias is not None:
        out = out + bias.float().view(1, -1, 1, 1)
    if relu:
        out = torch.relu(out)
    return out.to(y.dtype)


@pytest.mark.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", GEOMETRIES)
@pytest.mark.parametrize("fuse", ["none", "bias", "bias+relu", "relu"])
@pytest.mark.parametrize("placement", ["new", "in_place", "unaligned_in_place"])
def test_kernel_matches_reference_bit_for_bit(case, dtype, fuse, placement):
    from plugins.torch_kernel import rectify

    n, c, h, w, *geometry = case
    y = _conv_out(n, c, h, w, *geometry[:4], dtype, offset=3 if placement == "unaligned_in_place" else 0)
    bias = torch.randn(c, device="cuda").to(dtype) if "bias" in fuse else None
    relu = "relu" in fuse
    expected = _reference(y, (h, w), geometry, bias, relu)
    out = y if placement != "new" else None
    got = rectify(y.clone() if out is None else y, (h, w), *geometry, bias=bias, relu=relu, out=out)
    if out is not None:
        assert got.data_ptr() == y.data_ptr()
    assert torch.equal(got, expected)


@pytest.mark.requires_cuda
def test_fp16_kernel_is_close_to_pytorch_fp16_ops():
    """The fp16 model multiplies in fp16 (two roundings); the kernel rounds once: within an fp16 ulp or two."""
    from plugins.torch_kernel import rectify

    y = _conv_out(4, 64, 28, 28, 3, 1, 1, 1, torch.float16)
    bias = torch.randn(64, device="cuda", dtype=torch.float16)
    model_way = torch.relu(y * rectify_scale((28, 28), 3, 1, 1, dtype=torch.float16, device="cuda")
                           + bias.view(1, -1, 1, 1))
    got = rectify(y, (28, 28), 3, 1, 1, bias=bias, relu=True)
    torch.testing.assert_close(got, model_way, rtol=2e-3, atol=2e-3)


@pytest.mark.requires_cuda
def test_kernel_rejects_bad_input_clearly():
    from plugins.torch_kernel import rectify

    y = _conv_out(1, 2, 8, 8, 3, 1, 1, 1, torch.float32)
    with pytest.raises(RuntimeError, match="contiguous NCHW"):
        rectify(y.transpose(2, 3), (8, 8), 3, 1, 1)
    with pytest.raises(RuntimeError, match="does not match|bad geometry"):
        rectify(y, (9, 9), 3, 1, 1)  # a 9x9 input gives a 9x9 output, y is 8x8
    with pytest.raises(RuntimeError, match="sees only padding"):
        rectify(torch.randn(1, 2, 8, 8, device="cuda"), (4, 4), 3, 1, 3)  # padding 3 > kernel reach 2
    with pytest.raises(RuntimeError, match="bias"):
        rectify(y, (8, 8), 3, 1, 1, bias=torch.ones(3, device="cuda"))


def test_extension_needs_a_gpu_message():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the no-GPU message cannot be checked")
    from plugins.torch_kernel import extension

    with pytest.raises(RuntimeError, match="runs on a CUDA GPU and torch sees none"):
        extension()
