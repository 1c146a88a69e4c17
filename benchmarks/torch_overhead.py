"""PyTorch cost of rectification: RF-ResNet-50 / ResNet-50 with identical weights, CPU or CUDA.

Forward (eval, no grad) and forward+backward (train mode), interleaved blocks in one process.
Target: ratio <= 1.05.  Run: ``python -m benchmarks.torch_overhead [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from exporter.bench.timing import interleaved
from exporter.model.registry import build_model


def run(batch: int = 8, size: int = 224, blocks: int = 7, runs: int = 3, device: str = "cpu") -> dict:
    """Median milliseconds per batch of ``batch`` images of ``size`` px, and the RF/plain ratios."""
    rf, plain = build_model("resnet50").to(device), build_model("resnet50", rectify=False).to(device)
    x = torch.randn(batch, 3, size, size, device=device)

    def synchronize():
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    def forward(model):
        def go():
            with torch.no_grad():
                model(x)
            synchronize()
        return go

    def train_step(model):
        def go():
            model.zero_grad(set_to_none=True)
            model(x).sum().backward()
            synchronize()
        return go

    fwd = interleaved({"rf": forward(rf), "plain": forward(plain)}, "plain", blocks, runs)
    for m in (rf, plain):
        m.train()
    bwd = interleaved({"rf": train_step(rf), "plain": train_step(plain)}, "plain", blocks, runs)
    result = {
        "machine": (torch.cuda.get_device_name(x.device) if x.is_cuda
                    else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"),
        "device": device,
        "batch": batch, "size": size,
        "forward": {"rf_ms": fwd.median_s("rf") * 1e3, "plain_ms": fwd.median_s("plain") * 1e3,
                    "ratios": fwd.ratios("rf"), "summary": fwd.summary("rf")},
        "forward_backward": {"rf_ms": bwd.median_s("rf") * 1e3, "plain_ms": bwd.median_s("plain") * 1e3,
                             "ratios": bwd.ratios("rf"), "summary": bwd.summary("rf")},
    }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args.batch, blocks=args.blocks, runs=args.runs, device=args.device)
    print(f"PyTorch {args.device}, ResNet-50, batch {args.batch}, 224x224 ({result['machine']})")
    for key in ("forward", "forward_backward"):
        r = result[key]
        print(f"  {key:<17} rf {r['rf_ms']:8.1f} ms  plain {r['plain_ms']:8.1f} ms  {r['summary']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
