"""``rfconv-deploy triton``: a Triton model repository (:func:`exporter.serving.triton_repo.write_repository`).

Never imports torch.
"""

from __future__ import annotations

import argparse

from exporter.cli.args import as_flags


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("triton", help="write a Triton model repository for an ONNX model or a TensorRT plan")
    p.add_argument("model", help="MODEL.onnx (onnxruntime backend) or MODEL.plan (tensorrt backend)")
    p.add_argument("--repo", required=True, help="model repository directory to write into")
    p.add_argument("--name", help="model name (default: the file's stem)")
    p.add_argument("--max-batch", type=int, default=8,
                   help="max_batch_size for models with a dynamic batch dimension (default: 8; 0 = no batching)")
    p.add_argument("--max-delay-us", type=int, default=2000,
                   help="dynamic batching queue delay, microseconds (default: 2000)")
    p.add_argument("--accelerator", default="tensorrt", choices=["tensorrt", "cuda"],
                   help="ONNX models: ONNX Runtime's TensorRT EP first (default), or only its CUDA EP")
    p.add_argument("--plugin-lib", help="plans: the TensorRT plugin library the engine needs")
    p.add_argument("--onnx", dest="onnx_path",
                   help="plans: the ONNX the plan was built from (default: MODEL.onnx beside it)")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.serving.triton_repo import write_repository

    written = write_repository(
        args.model, args.repo, name=args.name, max_batch=args.max_batch, max_delay_us=args.max_delay_us,
        accelerator=args.accelerator, plugin_lib=args.plugin_lib, onnx_path=args.onnx_path,
    )
    config = written.config
    print(f"wrote {written.model_file} and {written.config_path}")
    print(f"  {config.backend} backend, max_batch_size {config.max_batch_size}, "
          f"{len(config.input)} inputs, {len(config.output)} outputs")
    for line in written.notes:
        print(f"  {as_flags(line, args.command_parser)}")
    return 0
