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


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Tensors from a checkpoint file, loaded with ``weights_only=True``.

    Accepts a raw state dict or a dict wrapping one under a common key (``state_dict``,
    ``model``, ...), and strips ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile)
    prefixes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} as PyTorch tensors with weights_only=True ({first}). "
            "Save it with torch.save(model.state_dict(), path); checkpoints that pickle "
            "arbitrary objects are refused because loading them can run code."
        ) from None
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
