"""``rfconv-deploy triton``: a Triton model repository (:func:`exporter.serving.triton_repo.write_repository`),
with ``--kserve`` a KServe InferenceService for it (:mod:`exporter.serving.kserve`), and with ``--check REPO``
a repository checked the way Triton would load it (:mod:`exporter.serving.triton_check`).

Never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.cli.args import add_config_arguments, as_flags, config_from_args, shape_range_arguments
from exporter.serving.triton_config import TritonConfig


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("triton", help="write a Triton model repository for an ONNX model or a TensorRT plan, or "
                                      "check one (--check REPO)")
    p.add_argument("model", nargs="?",
                   help="MODEL.onnx (onnxruntime backend) or MODEL.plan (tensorrt backend); not with --check")
    add_config_arguments(p, TritonConfig)
    shape_range_arguments(p, "ONNX models with --accelerator tensorrt: the TensorRT EP's engine range, so that "
                             "no new input size builds an engine while serving (other shapes fail). The batch "
                             "(first dim) must run from 1 to at least --max-batch.")
    return p


def _check(config: TritonConfig) -> int:
    from exporter.serving.triton_check import RULES, check_repository

    report = check_repository(config.check)
    for model in report.models:
        ran = report.ran.get(model, [])
        print(f"{model}: {len(ran)} rules checked ({', '.join(ran)})")
    for finding in report.unchecked:
        print(f"  NOT CHECKED {finding}")
    for finding in report.failures:
        print(f"  FAIL {finding}")
    if report.failures:
        print(f"Result: FAIL ({len(report.failures)} problems in {report.repo}; rules from Triton's sources: "
              f"{len(RULES)})")
        return 1
    verdict = "PASS" if not report.unchecked else f"PASS for the rules checked ({len(report.unchecked)} not checked)"
    print(f"Result: {verdict}")
    return 0


def run(args: argparse.Namespace) -> int:
    config = config_from_args(TritonConfig, args)
    if config.check is not None:
        return _check(config)
    from exporter.serving.triton_repo import write_repository

    kserve_options = config.kserve_options()
    if config.kserve:  # refuse bad KServe options before the repository is written
        from exporter.serving.kserve import inference_service, manifest_path

        manifest_path(config.kserve)
        inference_service(config.name or Path(config.model).stem, config.storage_uri, **kserve_options)
    written = write_repository(config.model, config.repo, **config.writer_options())
    model_config = written.config
    print(f"wrote {written.model_file} and {written.config_path}")
    print(f"  {model_config.backend} backend, max_batch_size {model_config.max_batch_size}, "
          f"{len(model_config.input)} inputs, {len(model_config.output)} outputs")
    for line in written.notes:
        print(f"  {as_flags(line, args.command_parser)}")
    check = written.check
    print(f"  checked as Triton would load it: {len(check.ran.get(written.model_dir.name, []))} rules pass"
          + (f", {len(check.unchecked)} not checked" if check.unchecked else ""))
    for finding in check.unchecked:
        print(f"  not checked: {finding}")
    if config.kserve:
        from exporter.serving.kserve import for_repository, write_manifest

        manifest, notes = for_repository(written, config.storage_uri, **kserve_options)
        notes = [as_flags(line, args.command_parser) for line in notes]
        path = write_manifest(config.kserve, manifest, notes)
        gpus = kserve_options["gpus"]
        print(f"wrote {path}: InferenceService '{manifest['metadata']['name']}' "
              f"({f'{gpus} GPU' if gpus else 'no GPU'} per replica, "
              f"{manifest['spec']['predictor']['minReplicas']}-{manifest['spec']['predictor']['maxReplicas']} "
              "replicas)")
        for line in notes:
            print(f"  {line}")
    return 0
