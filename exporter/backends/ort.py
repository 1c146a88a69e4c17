"""ONNX Runtime sessions, execution providers and their options: the one home for them.

``serve``, ``compare``, ``bench`` and the Triton writer build their ONNX Runtime sessions and the
TensorRT EP's options here:

* :func:`select_providers` turns ``auto``/``tensorrt``/``cuda``/``cpu`` into ONNX Runtime's
  provider list. An explicit ``tensorrt`` is ``[TensorRT, CUDA, CPU]``: nodes TensorRT rejects run
  on CUDA, as the TensorRT EP's documentation asks.
* :func:`create_session` makes an ``InferenceSession`` with ONNX Runtime's CPU fallback turned
  off (at creation and at run time) and checks that every provider that was asked for is in the
  session; otherwise it raises :class:`ProviderUnavailable` naming the provider and ONNX
  Runtime's reason (for a provider library that does not load, the library it misses). Before a
  GPU session the CUDA libraries of the ``nvidia-*`` wheels are loaded
  (:func:`preload_cuda_libraries`), so a command that never imports torch finds the same
  libraries as one that does.
* :func:`tensorrt_ep_options` is the TensorRT EP's option dict (ONNX Runtime's option names,
  string values), the one definition behind ``serve``, compare's ``ort-trt`` and the Triton
  model config: the optimization profile, the fp16/int8 switches from the file's precision, the
  workspace, and engine and timing caches in a folder keyed by the file's contents
  (:func:`model_cache_dir`).

Light: imports neither torch nor polygraphy; onnxruntime only inside functions.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from exporter.backends.availability import (  # noqa: F401 - the loader checks are re-exported here
    CPU_EP,
    CUDA_EP,
    GPU_PROVIDERS,
    PROVIDER_LIBRARIES,
    TENSORRT_EP,
    BackendSkipped,
    preload_cuda_libraries,
    provider_load_error,
)

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {"tensorrt": TENSORRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}
"""``--provider`` value -> ONNX Runtime execution provider."""
PROVIDER_PREFERENCE = (TENSORRT_EP, CUDA_EP, CPU_EP)
"""The ``auto`` order, best first."""
"""The shared library ONNX Runtime loads for each GPU provider (Linux names)."""

TRT_WORKSPACE_BYTES = 1 << 30
"""The TensorRT EP's builder workspace (``trt_max_workspace_size``), bytes."""

QDQ_ON_CUDA_NOTE = ("a Q/DQ (int8) file on the CUDA EP: ONNX Runtime's CUDA EP has no int8 convolution, so the "
                    "convs run in fp32 between DequantizeLinear and QuantizeLinear (slower than the fp32 file); "
                    "serve it with the TensorRT EP (--provider tensorrt) to run int8")


class ProviderUnavailable(BackendSkipped, RuntimeError):
    """An execution provider that was asked for does not run here; ``str(err)`` is one line naming
    the provider and ONNX Runtime's reason. A :class:`~exporter.backends.availability.BackendSkipped`
    (compare and bench record the backend as skipped) and a RuntimeError (the CLI prints it as one line)."""


class NamedShape(Protocol):
    """An input as :func:`tensorrt_ep_options` reads it: ``name`` and ``shape`` (``-1``: any size)."""

    name: str
    shape: tuple[int, ...]


def provider_names(providers: Sequence) -> list[str]:
    """The provider names of an ONNX Runtime provider list (entries are names or ``(name, options)``)."""
    return [p[0] if isinstance(p, tuple) else p for p in providers]


def available_providers() -> list[str]:
    """``onnxruntime.get_available_providers()``: what the installed package was built with (a listed
    GPU provider may still fail to load)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def select_providers(preference: str = "auto", available: Sequence[str] | None = None, *,
                     tensorrt_options: dict[str, str] | None = None,
                     cuda_options: dict[str, str] | None = None) -> list:
    """Execution providers to create a session with, best first.

    ``preference`` ``"auto"``: every available one of TensorRT EP, CUDA EP, CPU, in that order.
    ``"tensorrt"``: ``[TensorRT, CUDA, CPU]``; ``"cuda"``: ``[CUDA, CPU]``; ``"cpu"``: ``[CPU]``.
    ``available`` defaults to :func:`available_providers`. With ``tensorrt_options`` or
    ``cuda_options`` those entries become ``(name, options)``, as ONNX Runtime takes them.
    Raises ValueError for an unknown ``preference`` and :class:`ProviderUnavailable` when the
    installed package lacks an explicitly requested provider.
    """
    if preference != "auto" and preference not in PROVIDER_ALIASES:
        raise ValueError(f"provider {preference!r} is not one of auto, {', '.join(PROVIDER_ALIASES)}")
    available = available_providers() if available is None else list(available)
    if preference == "auto":
        chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    else:
        wanted = PROVIDER_ALIASES[preference]
        chosen = {TENSORRT_EP: [TENSORRT_EP, CUDA_EP, CPU_EP], CUDA_EP: [CUDA_EP, CPU_EP], CPU_EP: [CPU_EP]}[wanted]
        missing = [p for p in chosen if p not in available]
        if missing:
            raise ProviderUnavailable(
                f"{missing[0]}: the installed onnxruntime has no such provider (it has {', '.join(available)}); "
                "install onnxruntime-gpu instead of onnxruntime (docs/onnxruntime.md)"
            )
    options = {TENSORRT_EP: tensorrt_options, CUDA_EP: cuda_options}
    return [(p, options[p]) if options.get(p) else p for p in chosen]


def auto_providers(available: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """``select_providers("auto")`` less the GPU providers whose library does not load here, and
    those left out, each with the reason (:func:`provider_load_error`)."""
    names = select_providers("auto", available)
    if any(name in GPU_PROVIDERS for name in names):
        preload_cuda_libraries()
    left_out = {name: reason for name in names if (reason := provider_load_error(name))}
    return [name for name in names if name not in left_out], left_out


def session_options(intra_op_threads: int = 0, spinning: bool = True):
    """``onnxruntime.SessionOptions`` with ``intra_op_threads`` (0: ONNX Runtime's default) and,
    with ``spinning`` False, worker threads that block instead of spinning while they wait."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(model: str | Path | bytes, providers: Sequence, options=None, *,
                   required: Sequence[str] | None = None):
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path or serialized bytes) on ``providers``
    (:func:`select_providers`), with ONNX Runtime's fallback to the CPU off, at creation and at
    run time: an EP that fails makes the call fail instead of a silent CPU session.

    ``required`` (default: every name in ``providers``) are the providers the session must hold;
    one missing raises :class:`ProviderUnavailable` naming it with ONNX Runtime's reason (the
    library it could not load, or the error it raised). A model ONNX Runtime cannot load on the
    CPU alone raises ValueError. ``options`` defaults to :func:`session_options`.
    """
    import onnxruntime

    names = provider_names(providers)
    required = names if required is None else list(required)
    gpu = [p for p in names if p in GPU_PROVIDERS]
    if gpu:
        preload_cuda_libraries()
    for provider in required:  # a provider library that cannot load: say which library, before ORT tries
        reason = provider_load_error(provider)
        if reason:
            raise ProviderUnavailable(f"{provider} does not load: {reason}")
    what = "the model" if isinstance(model, bytes) else str(model)
    try:
        session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model),
                                               options or session_options(), providers=list(providers),
                                               enable_fallback=0)
    except Exception as err:  # noqa: BLE001 - ORT raises its own pybind exception types
        if not gpu:
            raise ValueError(f"ONNX Runtime cannot load {what}: {err}") from err
        reason = " ".join(str(err).split())
        raise ProviderUnavailable(f"{', '.join(gpu)}: ONNX Runtime could not create a session of {what} "
                                  f"on {names}: {reason}") from err
    session.disable_fallback()
    held = session.get_providers()
    for provider in required:
        if provider not in held:
            reason = provider_load_error(provider) or "ONNX Runtime left it out of the session (its log says why)"
            raise ProviderUnavailable(f"{provider} did not load: {reason} (session providers: {', '.join(held)})")
    return session


def unloaded_gpu_providers(session, available: Sequence[str] | None = None) -> dict[str, str]:
    """The GPU providers the installed onnxruntime lists but ``session`` does not hold, each with
    the reason (:func:`provider_load_error`): what ``--provider auto`` warns about."""
    available = available_providers() if available is None else available
    held = session.get_providers()
    return {p: provider_load_error(p) or "ONNX Runtime left it out of the session"
            for p in PROVIDER_PREFERENCE if p in GPU_PROVIDERS and p in available and p not in held}


def cuda_ep_options(tf32: bool) -> dict[str, str]:
    """CUDA EP options: ``use_tf32`` as given (ONNX Runtime's default is on, which rounds fp32
    matmuls and convs to a 10-bit mantissa on Ampere and later)."""
    return {"use_tf32": "1" if tf32 else "0"}


def tf32_enabled(session) -> bool | None:
    """Whether ``session``'s CUDA EP runs with TF32 (None without a CUDA EP)."""
    options = session.get_provider_options().get(CUDA_EP)
    if options is None:
        return None
    return options.get("use_tf32", "1") not in ("0", "false", "False")


def model_digest(path: str | Path) -> str:
    """Hex SHA-256 of an ONNX file's bytes and of the external-data files next to it that it names
    (``*.data`` written by :func:`exporter.onnx.export.export_onnx`): a key that changes with the weights."""
    path = Path(path)
    digest = hashlib.sha256()
    for part in (path, *sorted(path.parent.glob(f"{path.name}.data*"))):
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def default_cache_root() -> Path:
    """Where the TensorRT EP's engine and timing caches go unless ``--trt-cache`` names a folder:
    ``$XDG_CACHE_HOME/rfconv-deploy/ort-trt`` (``~/.cache/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rfconv-deploy" / "ort-trt"


def model_cache_dir(root: str | Path, model_path: str | Path) -> Path:
    """The cache folder of one ONNX file under ``root``: ``STEM-HASH`` with the first 16 hex digits of
    :func:`model_digest`, so a file re-exported with new weights never loads an old engine (ONNX
    Runtime's own engine key hashes names and versions, not weights). Created when missing;
    OSError when ``root`` is not writable."""
    model_path = Path(model_path)
    folder = Path(root) / f"{model_path.stem}-{model_digest(model_path)[:16]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot create the TensorRT EP cache folder {folder}: {err.strerror or err}; "
                      "give --trt-cache a writable folder") from err
    return folder


def _shape_text(name: str, shape: Sequence[int]) -> str:
    return f"{name}:{'x'.join(map(str, shape))}"


def tensorrt_ep_options(inputs: Sequence[NamedShape], max_batch: int, profiles: Sequence = (), *,
                        precision: str = "fp32", build_fp16: bool = False, cache_dir: str | Path | None = None,
                        custom_ops: Sequence[str] = (),
                        workspace_bytes: int = TRT_WORKSPACE_BYTES) -> dict[str, str]:
    """ONNX Runtime's TensorRT EP options for one ONNX file: ``{option name: string value}``, the
    names as ONNX Runtime's ``TensorrtExecutionProvider`` takes them.

    * Optimization profile (``trt_profile_{min,opt,max}_shapes``, ``name:1x3x224x224`` entries):
      with ``profiles`` (:class:`~exporter.shapes.InputProfile`, e.g. from
      :func:`exporter.serving.session.served_profiles`) their shapes for every dynamic input;
      otherwise, when every input has a dynamic batch and fixed other dims, batches of 1 to
      ``max_batch``. No profile keys at all when no input is dynamic (the EP refuses empty
      values). ValueError for a dynamic input whose name holds ``:`` (the EP splits entries at
      the first ``:``).
    * Precision (``precision`` from :func:`exporter.onnx.precision.file_precision`): the EP builds a
      weakly typed network, so ``fp16`` and ``mixed`` files get ``trt_fp16_enable`` (else their
      fp16 layers may run fp32 kernels), ``int8`` (Q/DQ) files ``trt_int8_enable`` (scales from
      the file, no calibration table), ``fp32`` files ``trt_fp16_enable`` only with ``build_fp16``.
    * ``trt_max_workspace_size`` = ``workspace_bytes``.
    * With ``cache_dir`` (:func:`model_cache_dir`): engine and timing caches in that folder.

    ``custom_ops`` (``domain.op`` of nodes outside the standard domains) raise ValueError: the EP
    cannot run the RFConvRectify plugin node of a plugin-mode export.
    """
    if custom_ops:
        raise ValueError(f"the file has custom ops ({', '.join(custom_ops)}) that ONNX Runtime's TensorRT EP "
                         "cannot run; serve a static-mode export, or build a TensorRT plan with its plugin")
    if precision not in ("fp32", "fp16", "mixed", "int8"):
        raise ValueError(f"precision {precision!r} is not one of fp32, fp16, mixed, int8")
    options = {"trt_max_workspace_size": str(workspace_bytes)}
    if precision == "int8":
        options["trt_int8_enable"] = "True"
    elif precision in ("fp16", "mixed") or build_fp16:
        options["trt_fp16_enable"] = "True"
    if profiles:
        shapes = [(p.name, p.min, p.opt, p.max) for p in profiles if p.dynamic]
    elif inputs and all(s.shape and s.shape[0] == -1 and all(d > 0 for d in s.shape[1:]) for s in inputs):
        shapes = [(s.name, (1, *s.shape[1:]), (max_batch, *s.shape[1:]), (max_batch, *s.shape[1:])) for s in inputs]
    else:
        shapes = []
    for name, *_ in shapes:
        if ":" in name:
            raise ValueError(f"input {name!r} has a ':' in its name: ONNX Runtime's TensorRT EP splits profile "
                             "entries at the first ':', so it cannot be given a shape range; rename the input "
                             "(export with another input name)")
    if shapes:
        for index, label in enumerate(("min", "opt", "max"), start=1):
            options[f"trt_profile_{label}_shapes"] = ",".join(_shape_text(s[0], s[index]) for s in shapes)
    if cache_dir is not None:
        options.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir),
                        "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache_dir)})
    return options


def provider_notes(providers: Sequence[str], precision: str | None, tf32: bool | None = None) -> list[str]:
    """What a user should know about the providers a session runs (``providers`` as
    ``session.get_providers()``): a Q/DQ file on the CUDA EP without TensorRT runs its convs in
    fp32; TF32 on (``tf32``) rounds fp32 convs and matmuls."""
    notes = []
    if precision == "int8" and providers and providers[0] == CUDA_EP:
        notes.append(QDQ_ON_CUDA_NOTE)
    if tf32:
        notes.append("the CUDA EP runs with TF32 (use_tf32=1): fp32 convs and matmuls round inputs to a 10-bit "
                     "mantissa on Ampere and later GPUs")
    return notes
