"""Does rectified convolution help when the test resolution differs from the training one?

A small, offline reproduction of the paper's argument: zero padding biases border activations,
and the bias changes with the input size. We train the same small CNN with plain and with
rectified convolutions (same seeds, same schedule) on scikit-learn's bundled digits, placed at
random positions on a larger canvas so that strokes often touch the border, then evaluate each
model at the training resolution and at smaller and larger ones, in two ways:

* ``resize``: the whole test canvas is resized (content and border change scale together, as
  when a classifier trained at 224 px is run at another resolution);
* ``canvas``: the digits keep their pixel size and are placed on smaller or larger canvases, so
  only the amount of border around the content changes.

Writes a table (mean and spread over seeds), ``resolution_study.json`` and
``resolution_study.png`` into ``--out``. Runs on the CPU in a few minutes.

    python deploy_examples/resolution_study.py --seeds 3 --epochs 12 --out artifacts/study
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from exporter import rectify_model

CANVAS = 24      # training resolution, pixels
DIGIT = 16       # digit size on the canvas, pixels
RESIZE_SIZES = (14, 18, 24, 32, 40)
CANVAS_SIZES = (16, 20, 24, 32, 40)


def load_digits16() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits upsampled to ``[N, 1, 16, 16]`` in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(DIGIT, DIGIT), mode="bilinear", align_corners=False)
    return images, torch.tensor(digits.target)


def place(images: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Each image at a seeded random offset on a ``size`` x ``size`` canvas, normalised to [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    canvas = torch.zeros(len(images), 1, size, size)
    offsets = torch.randint(0, size - DIGIT + 1, (len(images), 2), generator=gen)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        canvas[i, :, dy:dy + DIGIT, dx:dx + DIGIT] = images[i]
    return (canvas - 0.5) / 0.5


def split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """70/30 split: (train digits, train labels, test digits, test labels), digits un-placed."""
    images, labels = load_digits16()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    cut = int(0.7 * len(images))
    return images[order[:cut]], labels[order[:cut]], images[order[cut:]], labels[order[cut:]]


def small_cnn() -> nn.Module:
    """Four 3x3 convs (two with stride 2), BN, ReLU, global average pooling, linear head."""
    def block(c_in, c_out, stride):
        return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(*block(1, 16, 1), *block(16, 32, 2), *block(32, 32, 1), *block(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * ((len(x) + 63) // 64))
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def test_sets(digits: torch.Tensor) -> dict[str, dict[int, torch.Tensor]]:
    """The evaluation inputs per protocol and size (same digits and offsets for every model)."""
    base = place(digits, CANVAS, seed=1)
    return {
        "resize": {s: F.interpolate(base, size=(s, s), mode="bilinear", align_corners=False)
                   if s != CANVAS else base for s in RESIZE_SIZES},
        "canvas": {s: place(digits, s, seed=1) for s in CANVAS_SIZES},
    }


def run(seeds: int, epochs: int) -> dict:
    kinds = ("plain", "rectified")
    results = {p: {k: {} for k in kinds} for p in ("resize", "canvas")}
    train_digits, y_train, test_digits, y_test = split()
    evaluation = test_sets(test_digits)
    for seed in range(seeds):
        x_train = place(train_digits, CANVAS, seed=100 + seed)
        for kind in kinds:
            torch.manual_seed(seed)
            model = small_cnn()  # same initial weights for both kinds
            if kind == "rectified":
                rectify_model(model)
            start = time.perf_counter()
            train(model, x_train, y_train, epochs, seed)
            for protocol, inputs in evaluation.items():
                for size, x in inputs.items():
                    results[protocol][kind].setdefault(size, []).append(accuracy(model, x, y_test))
            print(f"  seed {seed} {kind:<9} trained in {time.perf_counter() - start:5.1f} s; resize: "
                  + "  ".join(f"{s}px {v[-1]:.3f}" for s, v in results["resize"][kind].items()), flush=True)
    return {"train_size": CANVAS, "seeds": seeds, "epochs": epochs,
            "sizes": {"resize": list(RESIZE_SIZES), "canvas": list(CANVAS_SIZES)},
            "accuracy": {p: {k: {str(s): v for s, v in r.items()} for k, r in by_kind.items()}
                         for p, by_kind in results.items()}}


def table(result: dict, protocol: str) -> str:
    lines = [f"{protocol + ' to':>9} | {'plain':>15} | {'rectified':>15} | {'rf - plain':>10}"]
    lines.append("-" * len(lines[0]))
    for size in result["sizes"][protocol]:
        p, r = (result["accuracy"][protocol][k][str(size)] for k in ("plain", "rectified"))
        spread = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        mark = " (train)" if size == result["train_size"] else ""
        lines.append(f"{size:>7}px | {statistics.mean(p):.4f} ± {spread(p):.4f} | "
                     f"{statistics.mean(r):.4f} ± {spread(r):.4f} | "
                     f"{statistics.mean(r) - statistics.mean(p):+10.4f}{mark}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, protocol in zip(axes, ("resize", "canvas"), strict=True):
        sizes = result["sizes"][protocol]
        for kind, color in (("plain", "tab:gray"), ("rectified", "tab:blue")):
            acc = np.array([result["accuracy"][protocol][kind][str(s)] for s in sizes])
            ax.errorbar(sizes, acc.mean(1), yerr=acc.std(1), label=kind, color=color, marker="o", capsize=3)
        ax.axvline(result["train_size"], color="k", linestyle=":", label="training size")
        ax.set_xlabel(f"test {'resolution' if protocol == 'resize' else 'canvas size'} (pixels)")
        ax.set_title(f"{protocol}: {result['seeds']} seeds, mean ± std")
    axes[0].set_ylabel("test accuracy")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Plain vs rectified conv across test resolutions.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("artifacts/resolution_study"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"Training plain and rectified CNNs on {args.seeds} seeds x {args.epochs} epochs ...")
    result = run(args.seeds, args.epochs)
    for protocol in ("resize", "canvas"):
        print(table(result, protocol))
    (args.out / "resolution_study.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "resolution_study.png")
    print(f"Wrote {args.out / 'resolution_study.json'} and {args.out / 'resolution_study.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
