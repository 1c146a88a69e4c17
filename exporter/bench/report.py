"""The one-line summary of a ``bench`` report (registry RF vs plain, or files): what ran and what
was skipped, with why."""

from __future__ import annotations


def summary(report: dict) -> str:
    """"2 backends ran, 1 skipped: trt (the tensorrt package is not installed)"."""
    ran, skipped = report.get("ran", []), report["skipped"]
    text = f"{len(ran)} backend{'s' if len(ran) != 1 else ''} ran"
    if skipped:
        text += f", {len(skipped)} skipped: " + "; ".join(f"{name} ({why})" for name, why in skipped.items())
    return text
