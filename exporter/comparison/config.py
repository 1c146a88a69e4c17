"""What ``rfconv-deploy compare`` can be asked for: :class:`CompareConfig` (light: standard library only).

The command line builds ``compare``'s options from these fields
(:func:`exporter.cli.args.add_config_arguments`), so each default and help text is written here once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from exporter.backends.availability import BACKENDS
from exporter.comparison.defaults import DEFAULT_BACKENDS, NOISE_FLOOR_MULTIPLE, VERDICTS
from exporter.config import option
from exporter.shapes import parse_shape

PRECISIONS = ("fp32", "fp16", "bf16")
BF16_BACKENDS = ("ov-cpu",)
"""The backends that compute in bf16 when asked (``precision="bf16"``): OpenVINO on a CPU with bf16."""
"""Precisions a comparison can be held to (``exporter.onnx.options.PRECISIONS``, kept light here)."""


def backend_list(text: str) -> tuple[str, ...]:
    """An argparse ``type`` for ``torch,ort-cpu`` (the names are checked by :class:`CompareConfig`)."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def hw_list(text: str) -> tuple[tuple[int, int], ...]:
    """An argparse ``type`` for ``224x224,223x223`` -> ``((224, 224), (223, 223))``."""
    try:
        return tuple(parse_shape(item, 2) for item in text.split(",") if item.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def full_shape(text: str) -> tuple[int, ...]:
    """An argparse ``type`` for a full input shape, ``1,3,224,224`` or ``1x3x224x224``."""
    try:
        return parse_shape(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


@dataclass(frozen=True)
class CompareConfig:
    """How one exported file is compared across backends (see :func:`exporter.comparison.compare.compare`).

    ``backends``: the names to run, the first that runs being the reference of the ``tolerance``
    verdict; ``None`` means :data:`~exporter.comparison.defaults.DEFAULT_BACKENDS`, of which those
    that cannot run here are skipped and counted. A backend named here that cannot run here is a
    ``ValueError`` before any work, unless ``skip_unavailable`` (then it is skipped and counted too).

    ``inputs`` is ``"random"`` (seeded with ``seed``), a folder of images or a Polygraphy input JSON;
    ``iterations`` caps the batches (random: 1). ``precision`` defaults to the file's own and sets
    the default ``rtol``; ``atol`` replaces the scale-relative absolute tolerance. ``verdict`` is one
    of :data:`~exporter.comparison.defaults.VERDICTS`, ``floor_multiple`` its K. ``outputs_only``
    skips the per-layer check; ``sizes`` are the ``(H, W)`` a dynamic-H/W file is checked at.
    ``save_results``/``save_inputs`` are paths (a dynamic file's other sizes go beside them).
    ``model_name`` names the PyTorch model in the report. Raises ``ValueError`` naming the field for
    a value out of range.
    """

    backends: tuple[str, ...] | None = option(
        None, parse=backend_list, metavar="LIST", show_default=False,
        help=f"comma-separated, from {','.join(BACKENDS)}; each named one must run here, else compare "
             f"stops before any work (default: {','.join(DEFAULT_BACKENDS)}, skipping and counting those "
             "that cannot run here)")
    inputs: str = option("random", help="'random' (seeded), a folder of images (ImageNet preprocessing) or a "
                                        "Polygraphy input JSON")
    iterations: int | None = option(None, parse=int, help="number of input batches (random: default 1)")
    seed: int = option(0, help="seed of the random inputs")
    batch_size: int | None = option(None, parse=int, help="batch size for a dynamic batch dimension (default 1)")
    input_shape: tuple[int, ...] | None = option(None, parse=full_shape,
                                                 help="full input shape, e.g. 1,3,224,224 (dynamic H/W)")
    precision: str | None = option(None, choices=PRECISIONS,
                                   help="sets the default rtol (fp32 1e-4, fp16 1e-2, bf16 5e-2) and TensorRT "
                                        "build precision (default: the model file's); bf16 applies to ov-cpu only "
                                        "(--backends torch,ov-cpu), refused on a CPU without bf16, and is judged "
                                        "against PyTorch in bf16")
    rtol: float | None = option(None, parse=float,
                                help="relative tolerance (default by precision: fp32 1e-4, fp16 1e-2, bf16 5e-2)")
    atol: float | None = option(None, parse=float,
                                help="absolute tolerance (default: rtol times each output's largest |reference| "
                                     "value)")
    verdict: str = option(VERDICTS[0], choices=VERDICTS,
                          help="noise-floor: every backend's error against PyTorch in float64 must stay within "
                               f"K={NOISE_FLOOR_MULTIPLE:g} times fp32 (fp16, bf16) PyTorch's own, and within the "
                               "tolerance; tolerance: the tolerance alone, against the first backend; int8 (what an "
                               "int8 Q/DQ file gets): cosine, top-1 and an error bound against fp32 PyTorch")
    floor_multiple: float = option(NOISE_FLOOR_MULTIPLE, help="K of the noise-floor verdict")
    outputs_only: bool = option(False, help="check the model outputs only (default: also the tensor after every "
                                            "rectified conv, with the first failing layer named)")
    sizes: tuple[tuple[int, int], ...] | None = option(
        None, parse=hw_list, metavar="HxW,...",
        help="dynamic-H/W files: input sizes to check (default: the --input-shape size, the largest odd size "
             "below it and a larger size where stride-2 layers round)")
    save_results: str | None = option(None, help="save Polygraphy RunResults: FILE.json, or a new directory for one "
                                                 "file per iteration (a dynamic-H/W file's other sizes go beside "
                                                 "it: FILE-HxW.json, or DIR/HxW/)")
    save_inputs: str | None = option(None, help="save the inputs as Polygraphy input JSON (reusable with --inputs; "
                                                "other sizes in FILE-HxW.json)")
    torch_device: str = option("cpu", help="device for the torch backend")
    plugin_library: str | None = option(None, flag="--plugin-lib", metavar="PATH",
                                        help="RFConvRectify TensorRT plugin library for the trt backend "
                                             "(default: the built one)")
    verbose: bool = option(False, help="show Polygraphy's log")
    model_name: str | None = None
    skip_unavailable: bool = False

    def __post_init__(self):
        if self.backends is not None:
            object.__setattr__(self, "backends", tuple(self.backends))
            unknown = [b for b in self.backends if b not in BACKENDS]
            if unknown:
                raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
            if len(set(self.backends)) != len(self.backends):
                raise ValueError(f"backends are listed more than once: {', '.join(self.backends)}")
        for field in ("iterations", "batch_size"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise ValueError(f"{field.replace('_', '-')} must be >= 1, got {value}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.precision == "bf16":
            others = [b for b in self.backend_names if b not in ("torch", *BF16_BACKENDS)]
            if self.backends is None or others or not set(self.backends) & set(BF16_BACKENDS):
                raise ValueError(f"precision bf16 applies to {', '.join(BF16_BACKENDS)} only: name it with "
                                 f"backends=torch,{BF16_BACKENDS[0]}"
                                 + (f" (not {', '.join(others)})" if others and self.backends is not None else ""))
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
        if not self.floor_multiple >= 1:
            raise ValueError(f"floor_multiple must be >= 1, got {self.floor_multiple}")
        for field in ("input_shape", "sizes"):
            value = getattr(self, field)
            if value is not None:
                object.__setattr__(self, field, tuple(tuple(v) if field == "sizes" else v for v in value))
        if self.plugin_library is not None:
            object.__setattr__(self, "plugin_library", str(self.plugin_library))

    @property
    def backends_named(self) -> bool:
        """Whether the backends were named (each must run) rather than the default list."""
        return self.backends is not None and not self.skip_unavailable

    @property
    def backend_names(self) -> tuple[str, ...]:
        return self.backends if self.backends is not None else DEFAULT_BACKENDS
