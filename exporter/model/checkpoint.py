"""Checkpoint loading: untrusted files, common wrappers, clear reports of what did not match."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "module")
PREFIXES = ("module.", "model.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the model."""


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


SAFETENSORS_SUFFIX = ".safetensors"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_OPCODE = 0x80
SNIFF_BYTES = 4096
ONNX_SECOND_FIELDS = (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42)
"""Tags of ``ModelProto`` fields 2-8 (producer, version, domain, model_version, doc, graph, opsets)."""
WEIGHTS_FORMATS = "the PyTorch weights (.pt/.pth/.safetensors)"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A little-endian u64 header length that fits the file, then the JSON header's ``{``."""
    return len(head) > 8 and 0 < int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{"


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ``ModelProto``: field 1 (``ir_version``, a small varint) then another of its fields."""
    return len(head) > 3 and head[0] == 0x08 and head[1] < 0x80 and head[2] in ONNX_SECOND_FIELDS


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3  # a multi-byte character cut by the sniffed window
    return True


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _not_a_checkpoint(path: Path, head: bytes, size: int) -> CheckpointError | None:
    """The one-line error for a file that is recognisably not a PyTorch checkpoint, else ``None``."""
    if size == 0:
        return CheckpointError(f"{path} is empty, not a checkpoint: pass {WEIGHTS_FORMATS}")
    if path.suffix.lower() == ".onnx" or _looks_like_onnx(head):
        return CheckpointError(f"{path} is an ONNX model, not a checkpoint: pass {WEIGHTS_FORMATS}")
    if head.startswith(ZIP_MAGIC):
        names = _zip_names(path)
        if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
            return CheckpointError(
                f"{path} is a TorchScript archive (torch.jit.save), not a state dict: save the weights with "
                "torch.save(model.state_dict(), path) and pass that file"
            )
        return None
    if head[:1] == bytes([PICKLE_PROTOCOL_OPCODE]):
        return None
    if _is_text(head):
        return CheckpointError(f"{path} is a text file, not a checkpoint: pass {WEIGHTS_FORMATS}")
    return CheckpointError(
        f"{path} is not a PyTorch checkpoint: it is neither a torch.save zip archive, nor a pickle, nor a "
        f"safetensors file; pass {WEIGHTS_FORMATS}"
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as err:
        raise CheckpointError(f"reading {path} needs the safetensors package: pip install safetensors") from err
    try:
        return load_file(path, device="cpu")
    except SafetensorError as err:
        raise CheckpointError(f"{path} is truncated or not a valid safetensors file ({_first_line(err)})") from err


def _read_torch(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower() and "unsupported" in str(err).lower():
            raise CheckpointError(
                f"{path} pickles objects other than tensors ({_weights_only_reason(err)}); it is read with "
                "weights_only=True because checkpoints that pickle arbitrary objects can run code when loaded: "
                "save the weights with torch.save(model.state_dict(), path)"
            ) from err
        raise CheckpointError(f"{path} is truncated or corrupt ({_corrupt_reason(err)})") from err
    except (RuntimeError, zipfile.BadZipFile, EOFError, KeyError, IndexError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({_corrupt_reason(err)})") from err


def _weights_only_reason(err: BaseException) -> str:
    """The line of torch's weights-only message that names what was refused (``Unsupported global: ...``)."""
    for line in str(err).splitlines():
        if "unsupported" in line.lower():
            line = line.split("WeightsUnpickler error: ")[-1].split(" was not an allowed")[0]
            return line.strip().rstrip(".")
    return _first_line(err)


def _corrupt_reason(err: BaseException) -> str:
    """torch's own words for a broken file, without its advice to retry with ``weights_only=False``."""
    text = _first_line(err)
    for cut in (". This is an internal miniz error", ". In PyTorch 2.6", " In PyTorch 2.6"):
        text = text.split(cut)[0]
    if isinstance(err, EOFError | KeyError | IndexError):
        text = f"{type(err).__name__}: {text}" if str(err) else f"{type(err).__name__}: the data ends early"
    return text.rstrip(".")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Tensors from a checkpoint file: ``torch.save`` output loaded with ``weights_only=True``, or a
    ``.safetensors`` file read with the ``safetensors`` package.

    Accepts a raw state dict or a dict wrapping one under a common key (``state_dict``,
    ``model``, ...), and strips ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile)
    prefixes. Raises :class:`CheckpointError` (a ``ValueError``) in one line naming the file and
    what it is not: missing, empty, an ONNX model, a TorchScript archive, text, truncated or
    corrupt, or a pickle of objects other than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if path.suffix.lower() == SAFETENSORS_SUFFIX or _looks_like_safetensors(head, size):
        obj = _read_safetensors(path)
    else:
        problem = _not_a_checkpoint(path, head, size)
        if problem is not None:
            raise problem
        obj = _read_torch(path)
    state = obj
    while not _is_state_dict(state):
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state, dict) and k in state), None)
        if inner is None:
            kind = type(obj).__name__
            keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else ""
            raise CheckpointError(
                f"checkpoint {path} holds a {kind} ({keys or 'no keys'}) but no state dict of "
                f"tensors, directly or under one of the keys {WRAPPER_KEYS}"
            )
        state = inner
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _listing(keys: list[str], limit: int = 6) -> str:
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(model: nn.Module, path, strict: bool = True) -> nn.Module:
    """Load the weights in ``path`` into ``model`` and return it.

    With ``strict`` (the default) any missing, unexpected or wrongly shaped key raises a
    :class:`CheckpointError` that lists them; otherwise only shape mismatches do.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    mismatched = [
        f"{k} (checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in state.items() if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch: {_listing(mismatched)}")
    if strict and missing:
        problems.append(f"missing from the checkpoint: {_listing(missing)}")
    if strict and unexpected:
        problems.append(f"not in the model: {_listing(unexpected)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: " + "; ".join(problems)
            + ". Check that the model name and options match the ones it was trained with."
        )
    model.load_state_dict(state, strict=False)
    return model
