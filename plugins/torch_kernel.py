"""The RFConvRectify CUDA kernel as a PyTorch function, built lazily from ``trt_plugin_src/`` (GPU only).

The first call compiles a small extension with ``torch.utils.cpp_extension`` (nvcc and ninja needed,
about a minute) and caches it in torch's extension directory. Used to test the kernel against
``exporter.rectify_scale`` and to benchmark it against PyTorch's multiply.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch.nn.modules.utils import _pair

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SOURCES = ROOT / "trt_plugin_src"
BINDING = Path(__file__).resolve().parent / "csrc" / "rectify_torch.cpp"


def compile_extension(build_directory: str | None = None):
    """Compile (or reuse) and import the extension; needs nvcc and a CUDA build of torch, not a GPU."""
    from torch.utils.cpp_extension import load

    return load(name="rfconv_rectify_kernel", sources=[str(BINDING), str(KERNEL_SOURCES / "rfconvRectifyKernel.cu")],
                extra_include_paths=[str(KERNEL_SOURCES)], extra_cflags=["-O3"], extra_cuda_cflags=["-O3"],
                build_directory=build_directory)


@functools.cache
def extension():
    """The compiled extension module; RuntimeError when no CUDA GPU is visible to torch."""
    if not torch.cuda.is_available():
        raise RuntimeError("the RFConvRectify kernel runs on a CUDA GPU and torch sees none "
                           f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
    return compile_extension()


def rectify(y: torch.Tensor, in_hw, kernel_size, stride=1, padding=0, dilation=1, average_mode: bool = False,
            count_mode: str = "exact", *, bias: torch.Tensor | None = None, relu: bool = False,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """``act(y * rectify_scale(in_hw, ...) + bias[c])`` on the GPU in one kernel.

    ``y`` is a contiguous CUDA conv output ``[N, C, Ho, Wo]`` (float32 or float16), ``in_hw`` the conv
    input's ``(H, W)``; geometry arguments are ints or (height, width) pairs as for ``nn.Conv2d``;
    ``bias`` holds ``C`` values. ``out=y`` works in place (then, in sum mode with no bias and no relu,
    only border positions are touched).
    """
    if bias is not None:
        bias = bias.reshape(-1).contiguous()
    pairs = [list(_pair(v)) for v in (in_hw, kernel_size, stride, padding, dilation)]
    return extension().rectify(y, *pairs, bool(average_mode), count_mode, bias, bool(relu), out)
