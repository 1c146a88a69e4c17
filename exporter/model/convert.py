"""Model conversion: swap ``nn.Conv2d`` (or the official ``rfconv.RFConv2d``) for our layer."""

from __future__ import annotations

import warnings

from torch import nn

from exporter.model.layer import RFConv2d

OFFICIAL_CLASS_NAME = "RFConv2d"
OFFICIAL_MODULE = "rfconv"


def _is_official(module: nn.Module) -> bool:
    """True for an instance of the official ``rfconv.RFConv2d`` (detected without importing it)."""
    cls = type(module)
    return (
        cls.__name__ == OFFICIAL_CLASS_NAME
        and cls.__module__.split(".")[0] == OFFICIAL_MODULE
        and isinstance(module, nn.Conv2d)
        and hasattr(module, "average")
        and hasattr(module, "rectify")
    )


def _pixel_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """``conv.padding`` in pixels, resolving ``"valid"`` and symmetric ``"same"``."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        totals = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]
        if any(t % 2 for t in totals):
            raise ValueError(
                f"cannot rectify {conv}: padding='same' is asymmetric for this kernel; "
                "give explicit integer padding"
            )
        return (totals[0] // 2, totals[1] // 2)
    return conv.padding


def _rebuild(conv: nn.Conv2d, average_mode: bool, count_mode: str) -> RFConv2d:
    """An ``RFConv2d`` with ``conv``'s geometry, sharing its parameters (no copy)."""
    new = RFConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=_pixel_padding(conv), dilation=conv.dilation, groups=conv.groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
        average_mode=average_mode, count_mode=count_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new


def _replace(model: nn.Module, pick, build, prefix: str = "") -> nn.Module:
    """Replace every submodule for which ``pick(module, qualified_name)`` holds with ``build(module)``."""
    if pick(model, prefix):
        return build(model)
    for name, child in list(model.named_children()):
        setattr(model, name, _replace(child, pick, build, f"{prefix}.{name}" if prefix else name))
    return model


def _listing(names: list[str], limit: int = 6) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _computes_like_conv2d(conv: nn.Conv2d) -> bool:
    """True when ``conv``'s class (``nn.Conv2d`` or a subclass) keeps ``nn.Conv2d``'s computation."""
    cls = type(conv)
    return cls.forward is nn.Conv2d.forward and cls._conv_forward is nn.Conv2d._conv_forward


def rectify_model(
    model: nn.Module,
    average_mode: bool = False,
    count_mode: str = "exact",
    include_non_zero_padding: bool = False,
) -> nn.Module:
    """Replace every ``nn.Conv2d`` in ``model`` (subclasses included) with an ``RFConv2d`` holding the
    same weights.

    Convs with padding > 0 change behaviour (their border outputs are rectified); 1x1 convs
    stay plain ``nn.Conv2d``, as in the paper's models. A subclass that computes differently
    (its own ``forward``, e.g. timm's ``Conv2dSame`` padding in forward or ``ScaledStdConv2d``
    standardizing its weight) cannot become an ``RFConv2d`` without changing what it computes: it
    stays as it is, and a ``UserWarning`` names every such module.

    Convs whose ``padding_mode`` is not ``"zeros"`` (``reflect``, ``replicate``, ``circular``) pad
    with input values, so no tap falls on padding that rectification would compensate for: by
    default they stay as they are and one ``UserWarning`` names them. The official ``rfconv``
    layer scales by the zero-padding count whatever its ``padding_mode`` (its factor depends
    only on the geometry); ``include_non_zero_padding=True`` converts them too, for parity with
    models trained that way. Modules that already are ``RFConv2d`` (ours or the official class)
    are never touched. Works in place, returns ``model``.
    """
    overriding: list[str] = []
    non_zero: dict[str, list[str]] = {}

    def pick(m: nn.Module, name: str) -> bool:
        if not isinstance(m, nn.Conv2d) or isinstance(m, RFConv2d) or _is_official(m) or m.kernel_size == (1, 1):
            return False
        if not _computes_like_conv2d(m):
            overriding.append(f"{type(m).__module__}.{type(m).__qualname__}")
            return False
        if m.padding_mode != "zeros" and not include_non_zero_padding:
            non_zero.setdefault(m.padding_mode, []).append(name or type(m).__name__)
            return False
        return True

    model = _replace(model, pick, lambda m: _rebuild(m, average_mode, count_mode))
    if overriding:
        kinds = ", ".join(sorted(set(overriding)))
        warnings.warn(
            f"rectify_model left {len(overriding)} conv(s) unrectified: their class overrides nn.Conv2d's forward "
            f"({kinds}), so an RFConv2d would compute something else; rectify them by hand (an RFConv2d "
            "with the same geometry, and the class's own weight handling) or keep them plain",
            UserWarning, stacklevel=2,
        )
    if non_zero:
        names = [n for mode in sorted(non_zero) for n in non_zero[mode]]
        modes = sorted(non_zero)
        which = f"padding_mode='{modes[0]}'" if len(modes) == 1 else f"padding_mode in {tuple(modes)}"
        warnings.warn(
            f"rectify_model left {len(names)} conv(s) with {which} as they are ({_listing(names)}): they pad "
            "with input values, not zeros, so there is nothing to rectify; pass include_non_zero_padding=True "
            "to rectify them as the official rfconv code does (it scales by the zero-padding count whatever "
            "the padding mode)",
            UserWarning, stacklevel=2,
        )
    return model


def from_official(model: nn.Module) -> nn.Module:
    """Replace official ``rfconv.RFConv2d`` modules with ours (``count_mode="rfconv"``).

    The official class is recognised by its name, module and attributes, so the ``rfconv``
    package need not be importable. Works in place and returns ``model``.
    """
    return _replace(model, lambda m, _name: _is_official(m), lambda m: _rebuild(m, m.average, "rfconv"))
