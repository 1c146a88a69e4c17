"""ONNX Runtime CPU latency of INT8 RF-ResNet-50 vs INT8 ResNet-50 and their fp32 files.

Exports RF-ResNet-50 and the plain ResNet-50 (same weights, BatchNorm folded), quantizes each
with :func:`exporter.quantize.quantize.quantize_onnx` (default: int8 symmetric Q/DQ, the
TensorRT-ready file; and ``activations="uint8"``, the ONNX Runtime CPU variant), and times, in one
interleaved run per batch size (:mod:`exporter.bench.timing`):

* ``fp32`` files, ``int8`` files in a default session (on x86 ONNX Runtime converts the int8
  activation pairs to uint8 and runs U8S8 kernels), ``uint8`` files, and with ``--s8s8`` the
  ``int8`` files with ``session.qdqisint8allowed=1`` (ONNX Runtime keeps S8S8 kernels).

Targets: int8 RF / int8 plain <= 1.10; (int8 RF / fp32 RF) <= 1.05 x (int8 plain / fp32 plain).
Also reports, from each session's optimized graph (``optimized_model_filepath``), how many convs
run as ``QLinearConv`` and with which activation type (the kernel family U8S8 or S8S8), and the
CPU's flags. Spinning is off (see ``export_latency``).

Run: ``python -m benchmarks.quantize_latency [--batch 1 8] [--blocks 7] [--runs 2] [--samples 16]
[--s8s8] [--keep DIR [--reuse]]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.harness import export_rf_and_plain, ort_session
from exporter.bench.timing import interleaved

MODEL = "resnet50"
SIZE = 224
FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found = set(re.findall(r"\b(" + "|".join(FLAGS) + r")\b", text))
    return [f for f in FLAGS if f in found]


def write_files(folder: Path, samples: int) -> dict[str, Path]:
    """name -> path: ``{fp32,int8,uint8}_{rf,plain}``."""
    from exporter.quantize.quantize import quantize_onnx

    paths = {}
    for kind, fp32 in export_rf_and_plain(folder, MODEL, SIZE).items():
        paths[f"fp32_{kind}"] = fp32
        for activations in ("int8", "uint8"):
            out = folder / f"{MODEL}_{kind}_{activations}.onnx"
            quantize_onnx(fp32, out, samples=samples, activations=activations)
            paths[f"{activations}_{kind}"] = out
    return paths


def kernels(optimized: Path) -> dict:
    """Convs in ONNX Runtime's optimized graph: how many are int8 and their activation type."""
    import onnx

    model = onnx.load(str(optimized))
    types = {init.name: onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name for init in model.graph.initializer}
    ops = Counter(node.op_type for node in model.graph.node)
    activation = Counter(types.get(node.input[2], "?") for node in model.graph.node if node.op_type == "QLinearConv")
    weight = Counter(types.get(node.input[5], "?") for node in model.graph.node if node.op_type == "QLinearConv")
    return {"QLinearConv": ops["QLinearConv"], "float_conv": ops["Conv"] + ops["FusedConv"],
            "activation_types": dict(activation), "weight_types": dict(weight)}


def _block_ratio(timing, a: str, b: str) -> float:
    """Median over blocks of ``a``'s time over ``b``'s in the same block."""
    return float(np.median([x / y for x, y in zip(timing.seconds[a], timing.seconds[b], strict=True)]))


def run(batches=(1, 8), blocks: int = 7, runs: int = 2, threads: int = 2, samples: int = 16,
        folder: Path | None = None, s8s8: bool = False, reuse: bool = False) -> dict:
    """``s8s8`` also times the int8 files with ONNX Runtime's S8S8 kernels (slow here: see the
    README); ``reuse`` takes the files a previous ``--keep`` run wrote into ``folder``."""
    folder = Path(folder or tempfile.mkdtemp(prefix="quantize_latency_"))
    folder.mkdir(parents=True, exist_ok=True)
    if reuse:
        paths = {f"{p}_{k}": folder / (f"{MODEL}_{k}.onnx" if p == "fp32" else f"{MODEL}_{k}_{p}.onnx")
                 for p in ("fp32", "int8", "uint8") for k in ("rf", "plain")}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise SystemExit(f"--reuse: {', '.join(missing)} missing; run once with --keep {folder} first")
    else:
        paths = write_files(folder, samples)
    candidates = {name: (path, False) for name, path in paths.items()}
    variants = ["int8", "uint8"]
    if s8s8:
        candidates.update({f"int8s8s8_{kind}": (paths[f"int8_{kind}"], True) for kind in ("rf", "plain")})
        variants.append("int8s8s8")
    sessions, picked = {}, {}
    for name, (path, s8s8) in candidates.items():
        optimized = folder / f"{name}.optimized.onnx"
        sessions[name] = ort_session(path, threads, optimized=optimized,
                                     config={"session.qdqisint8allowed": "1"} if s8s8 else None)
        picked[name] = kernels(optimized)
    result = {"model": MODEL, "input_size": SIZE, "threads": threads, "samples": samples,
              "machine": f"{platform.machine()} {platform.processor()}".strip(), "cpu_flags": cpu_flags(),
              "blocks": blocks, "runs_per_block": runs, "kernels": picked, "batches": {}}
    for batch in batches:
        x = np.random.default_rng(batch).uniform(-2, 2, (batch, 3, SIZE, SIZE)).astype(np.float32)
        calls = {name: (lambda s=s, x=x: s.run(None, {"input": x})) for name, s in sessions.items()}
        timing = interleaved(calls, "fp32_plain", blocks=blocks, runs_per_block=runs)
        rows = {name: {"median_ms": timing.median_s(name) * 1e3, "vs_fp32_plain": float(np.median(timing.ratios(name)))}
                for name in calls}

        targets = {}
        for variant in variants:
            rf_vs_plain = _block_ratio(timing, f"{variant}_rf", f"{variant}_plain")
            speedup_rf = _block_ratio(timing, f"{variant}_rf", "fp32_rf")
            speedup_plain = _block_ratio(timing, f"{variant}_plain", "fp32_plain")
            targets[variant] = {"rf_vs_plain": rf_vs_plain, "rf_vs_fp32_rf": speedup_rf,
                                "plain_vs_fp32_plain": speedup_plain,
                                "speedup_ratio": speedup_rf / speedup_plain}
        result["batches"][str(batch)] = {"rows": rows, "targets": targets}
    return result


def print_report(result: dict) -> None:
    print(f"ONNX Runtime CPU, {result['model']} {result['input_size']}x{result['input_size']}, {result['threads']} "
          f"threads, {result['blocks']} interleaved blocks x {result['runs_per_block']} runs ({result['machine']}; "
          f"CPU flags: {' '.join(result['cpu_flags']) or 'unknown'})")
    for name, k in result["kernels"].items():
        print(f"  {name:<16} optimized graph: QLinearConv {k['QLinearConv']}, float convs {k['float_conv']}, "
              f"activations {k['activation_types']}, weights {k['weight_types']}")
    for batch, data in result["batches"].items():
        print(f"  batch {batch}")
        for name, row in data["rows"].items():
            print(f"    {name:<16} {row['median_ms']:8.1f} ms  ({row['vs_fp32_plain']:.3f} x fp32 plain)")
        for variant, t in data["targets"].items():
            print(f"    {variant:<9} RF/plain {t['rf_vs_plain']:.3f} (target <= 1.10); RF int8/fp32 "
                  f"{t['rf_vs_fp32_rf']:.3f}, plain {t['plain_vs_fp32_plain']:.3f}, ratio {t['speedup_ratio']:.3f} "
                  "(target <= 1.05)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--runs", type=int, default=2, help="runs per block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16, help="calibration samples")
    parser.add_argument("--keep", type=Path, help="write the ONNX files here instead of a temporary folder")
    parser.add_argument("--reuse", action="store_true", help="time the files an earlier --keep run wrote there")
    parser.add_argument("--s8s8", action="store_true", help="also time ONNX Runtime's S8S8 kernels (slow)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep DIR")
    result = run(tuple(args.batch), args.blocks, args.runs, args.threads, args.samples, args.keep, args.s8s8,
                 args.reuse)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
