"""``rfconv-deploy triton``: a Triton model repository (:func:`exporter.serving.triton_repo.write_repository`),
and with ``--kserve`` a KServe InferenceService for it (:mod:`exporter.serving.kserve`).

Never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.cli.args import as_flags, shape_range_arguments


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
    shape_range_arguments(p, "ONNX models with --accelerator tensorrt: the TensorRT EP's engine range, so that "
                             "no new input size builds an engine while serving (other shapes fail). The batch "
                             "(first dim) must run from 1 to at least --max-batch.")
    k = p.add_argument_group("KServe (scale-out on Kubernetes with the Triton runtime)")
    k.add_argument("--kserve", metavar="FILE.yaml",
                   help="also write a KServe InferenceService (serving.kserve.io/v1beta1) for the repository")
    k.add_argument("--storage-uri", metavar="URI",
                   help="where the repository folder will be uploaded (gs://, s3://, pvc://...); needed by --kserve")
    k.add_argument("--kserve-name", help="InferenceService name (default: the model name, lower case, '-' for '_')")
    k.add_argument("--gpus", type=int, default=1, help="nvidia.com/gpu per replica (default: 1)")
    k.add_argument("--min-replicas", type=int, default=1, help="fewest replicas (default: 1)")
    k.add_argument("--max-replicas", type=int, help="most replicas, KServe scales between (default: --min-replicas)")
    k.add_argument("--kserve-protocol", dest="protocol", default="v2", choices=["v2", "grpc-v2"],
                   help="protocol the InferenceService exposes: v2 (HTTP, default) or grpc-v2")
    k.add_argument("--runtime-version",
                   help="Triton image tag of the runtime (e.g. 24.08-py3); for a plan, one with its TensorRT")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.serving.triton_repo import write_repository

    if args.kserve and not args.storage_uri:
        raise ValueError("--kserve needs --storage-uri: where the repository will be uploaded (gs://bucket/models)")
    if args.storage_uri and not args.kserve:
        raise ValueError("--storage-uri is for the KServe manifest: add --kserve FILE.yaml")
    kserve_options = dict(name=args.kserve_name, gpus=args.gpus, min_replicas=args.min_replicas,
                          max_replicas=args.max_replicas, protocol=args.protocol, runtime_version=args.runtime_version)
    if args.kserve:  # refuse bad KServe options before the repository is written
        from exporter.serving.kserve import inference_service, manifest_path

        manifest_path(args.kserve)
        inference_service(args.name or Path(args.model).stem, args.storage_uri, **kserve_options)
    written = write_repository(
        args.model, args.repo, name=args.name, max_batch=args.max_batch, max_delay_us=args.max_delay_us,
        accelerator=args.accelerator, plugin_lib=args.plugin_lib, onnx_path=args.onnx_path,
        min_shapes=args.min_shapes, opt_shapes=args.opt_shapes, max_shapes=args.max_shapes,
    )
    config = written.config
    print(f"wrote {written.model_file} and {written.config_path}")
    print(f"  {config.backend} backend, max_batch_size {config.max_batch_size}, "
          f"{len(config.input)} inputs, {len(config.output)} outputs")
    for line in written.notes:
        print(f"  {as_flags(line, args.command_parser)}")
    if args.kserve:
        from exporter.serving.kserve import for_repository, write_manifest

        manifest, notes = for_repository(written, args.storage_uri, **kserve_options)
        notes = [as_flags(line, args.command_parser) for line in notes]
        path = write_manifest(args.kserve, manifest, notes)
        print(f"wrote {path}: InferenceService '{manifest['metadata']['name']}' ({args.gpus} GPU per replica, "
              f"{manifest['spec']['predictor']['minReplicas']}-{manifest['spec']['predictor']['maxReplicas']} "
              "replicas)")
        for line in notes:
            print(f"  {line}")
    return 0
