"""What ``rfconv-deploy build`` can be asked for: :class:`BuildConfig` (light: standard library only), and
the optimization profile a build uses when no shapes are given (:func:`default_shapes`).

The command line builds ``build``'s options from these fields (:func:`exporter.cli.args.add_config_arguments`),
so each default and help text is written here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import option


@dataclass(frozen=True)
class BuildConfig:
    """Options of one TensorRT engine build.

    ``min_shapes`` / ``opt_shapes`` / ``max_shapes``: the optimization profile of dynamic inputs, as
    text for :func:`exporter.shapes.parse_shapes` (None: not given). When none is given and every
    input's only dynamic dimension is the first (the batch), the profile is batch 1 to ``max_batch``
    (opt = max) at the file's fixed C, H, W (:func:`default_shapes`); a dynamic H or W needs shapes.
    ``plugin_library``: the RFConvRectify library (None: :func:`plugins.find_library`'s search, used
    when the model has plugin nodes). ``timing_cache``: a file read if present and written after the
    build. ``workspace_mb``: TensorRT's workspace limit in MiB (None: TensorRT's default).
    ``embed_plugin``: serialize the plugin library into a version-compatible plan.
    ``aliased_plugin_io``: the preview feature that lets RFConvRectify work in place. ``tf32``: let
    fp32 layers round inputs to TF32. ``verbose``: TensorRT's INFO log. Raises ``ValueError`` naming
    the field for a value out of range.
    """

    min_shapes: str | None = None
    opt_shapes: str | None = None
    max_shapes: str | None = None
    max_batch: int = option(8, help="largest batch of the profile built for a file whose only dynamic dim is the "
                                    "batch, when no --min/--opt/--max-shape is given: batch 1 to this (opt = max), "
                                    "at the file's C, H, W")
    plugin_library: str | None = option(None, flag="--plugin-lib", metavar="PATH",
                                        help="RFConvRectify plugin library librfconv_trt_plugin.so (default: "
                                             "$RFCONV_TRT_PLUGIN, else the package's plugins/lib/, else the source "
                                             "checkout's build/trt_plugin/; used when the model has plugin nodes)")
    timing_cache: str | None = option(None, metavar="FILE", help="timing cache to read (if present) and update")
    workspace_mb: int | None = option(None, flag="--workspace", metavar="MB", parse=int,
                                      help="workspace memory limit in MiB (default: TensorRT's)")
    embed_plugin: bool = option(True, negative="--no-embed-plugin",
                                help="do not build a version-compatible plan with the plugin library inside; the "
                                     "runtime must then load the library before deserializing")
    aliased_plugin_io: bool = option(False, flag="--aliased-io",
                                     help="let RFConvRectify work in place (TensorRT preview feature "
                                          "ALIASED_PLUGIN_IO_10_03)")
    tf32: bool = option(False, help="let fp32 layers use TF32 (faster on Ampere+, ~1e-3 relative error); off by "
                                    "default so that an fp32 engine matches PyTorch fp32 and compare --backends trt")
    verbose: bool = option(False, help="TensorRT INFO log")

    def __post_init__(self):
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.workspace_mb is not None and self.workspace_mb < 1:
            raise ValueError(f"workspace_mb={self.workspace_mb} must be >= 1")

    @property
    def shapes_given(self) -> bool:
        """Whether any of min/opt/max shapes was given."""
        return any(s is not None for s in (self.min_shapes, self.opt_shapes, self.max_shapes))


def default_shapes(inputs: dict[str, tuple], max_batch: int) -> tuple[str, str, str] | None:
    """The (min, opt, max) shape texts of a batch range 1..``max_batch`` (opt = max), or None.

    ``inputs`` maps each graph input to its dims (int, or str/None for a dynamic dim), as
    :func:`exporter.trt.engine.summarize_onnx` reads them. A range is returned only when some input
    is dynamic and every dynamic input's only dynamic dim is the first; the texts name every input
    (``name:1x3x224x224,...``). None otherwise: a static file needs no profile, and a dynamic H/W
    (or another dynamic dim) has no size to default to.
    """
    dynamic = {name: dims for name, dims in inputs.items() if any(not isinstance(d, int) or d < 1 for d in dims)}
    if not dynamic:
        return None
    for dims in dynamic.values():
        if not dims or any(not isinstance(d, int) or d < 1 for d in dims[1:]):
            return None

    def text(batch: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, (batch, *dims[1:])))}" for name, dims in dynamic.items())

    return text(1), text(max_batch), text(max_batch)
