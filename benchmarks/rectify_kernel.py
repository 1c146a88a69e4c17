"""RFConvRectify CUDA kernel: bandwidth against a device-to-device copy and PyTorch's multiply (GPU only).

For the output ``[N, C, H, W]`` of a 3x3 / padding-1 conv, in fp32 and fp16, in interleaved blocks:

* ``copy``            ``dst.copy_(y)``: the bandwidth ceiling (every byte read and written once)
* ``torch_mul``       ``torch.mul(y, scale, out=dst)``: what the exported graph does (Mul by a constant)
* ``kernel``          ``rectify(y, out=dst)``: one pass, factor computed from the geometry
* ``kernel_inplace``  ``rectify(y, out=y)``: touches only border positions
* ``torch_fused``     ``torch.relu_(torch.mul(y, scale, out=dst).add_(bias))``: three PyTorch kernels
* ``kernel_fused``    ``rectify(y, bias=bias, relu=True, out=dst)``: one kernel

Bandwidth counts 2 x tensor bytes (read + write) per op for every case, so the in-place figure is the
copy-equivalent rate. Target: ``kernel`` >= 80% of ``copy``; ``kernel_inplace`` faster than
``copy``. Run: ``python -m benchmarks.rectify_kernel [--shape N C H W] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json

import torch

from exporter.bench.timing import interleaved
from exporter.model.scale import rectify_scale


def _repeat(op, iterations: int):
    def go():
        for _ in range(iterations):
            op()
        torch.cuda.synchronize()
    return go


def run(shape=(32, 256, 56, 56), dtype=torch.float32, iterations: int = 50, blocks: int = 7, runs: int = 3) -> dict:
    from plugins.torch_kernel import rectify

    n, c, h, w = shape
    y = torch.randn(shape, device="cuda").to(dtype)
    dst = torch.empty_like(y)
    inplace = y.clone()
    bias = torch.randn(c, device="cuda").to(dtype)
    scale = rectify_scale((h, w), 3, 1, 1, dtype=dtype, device="cuda")
    ops = {
        "copy": lambda: dst.copy_(y),
        "torch_mul": lambda: torch.mul(y, scale, out=dst),
        "kernel": lambda: rectify(y, (h, w), 3, 1, 1, out=dst),
        "kernel_inplace": lambda: rectify(inplace, (h, w), 3, 1, 1, out=inplace),
        "torch_fused": lambda: torch.relu_(torch.mul(y, scale, out=dst).add_(bias.view(1, -1, 1, 1))),
        "kernel_fused": lambda: rectify(y, (h, w), 3, 1, 1, bias=bias, relu=True, out=dst),
    }
    comparison = interleaved({name: _repeat(op, iterations) for name, op in ops.items()}, "copy", blocks, runs)
    moved = 2 * y.numel() * y.element_size()
    result = {"shape": list(shape), "dtype": str(dtype).removeprefix("torch."), "gpu": torch.cuda.get_device_name(),
              "cases": {}}
    for name in ops:
        seconds = comparison.median_s(name) / iterations
        result["cases"][name] = {"us": seconds * 1e6, "GB_per_s": moved / seconds / 1e9,
                                 "copy_bandwidth_fraction": comparison.median_s("copy") / comparison.median_s(name),
                                 "summary": comparison.summary(name)}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=(32, 256, 56, 56), metavar=("N", "C", "H", "W"))
    parser.add_argument("--iterations", type=int, default=50, help="ops per timed run")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.rectify_kernel: skipped, needs a CUDA GPU visible to torch")
        return 0
    results = []
    for dtype in (torch.float32, torch.float16):
        r = run(tuple(args.shape), dtype, args.iterations, args.blocks)
        results.append(r)
        print(f"{r['gpu']}, y {r['shape']} {r['dtype']} (3x3, padding 1)")
        for name, case in r["cases"].items():
            print(f"  {name:<15} {case['us']:9.1f} us  {case['GB_per_s']:8.1f} GB/s  "
                  f"{100 * case['copy_bandwidth_fraction']:6.1f}% of copy")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
