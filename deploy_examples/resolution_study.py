"""Does rectified convolution help when the test resolution differs from the training one?

A small, offline reproduction of the paper's argument: zero padding biases border activations,
and the bias changes with the input size. We train the same small CNN with plain and with
rectified convolutions (same seeds, same schedule) on scikit-learn's bundled digits, placed at
random positions on a larger canvas so that strokes often touch the border, then evaluate each
model at the training resolution and at smaller and larger ones (bilinear resize of the canvas).

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
TEST_SIZES = (14, 18, 24, 32, 40)


def make_dataset(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits upsampled to 16x16 at random offsets on a 24x24 canvas: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(DIGIT, DIGIT), mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(seed)
    canvas = torch.zeros(len(images), 1, CANVAS, CANVAS)
    offsets = torch.randint(0, CANVAS - DIGIT + 1, (len(images), 2), generator=gen)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        canvas[i, :, dy:dy + DIGIT, dx:dx + DIGIT] = images[i]
    canvas = (canvas - 0.5) / 0.5
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(images), generator=gen)
    split = int(0.7 * len(images))
    train, test = order[:split], order[split:]
    return canvas[train], labels[train], canvas[test], labels[test]


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
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int) -> float:
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (model(x).argmax(1) == y).float().mean().item()


def run(seeds: int, epochs: int) -> dict:
    results: dict[str, dict[int, list[float]]] = {"plain": {}, "rectified": {}}
    x_train, y_train, x_test, y_test = make_dataset()
    for seed in range(seeds):
        for kind in results:
            torch.manual_seed(seed)
            model = small_cnn()  # same initial weights for both kinds
            if kind == "rectified":
                rectify_model(model)
            start = time.perf_counter()
            train(model, x_train, y_train, epochs, seed)
            for size in TEST_SIZES:
                results[kind].setdefault(size, []).append(accuracy(model, x_test, y_test, size))
            print(f"  seed {seed} {kind:<9} trained in {time.perf_counter() - start:5.1f} s: "
                  + "  ".join(f"{s}px {results[kind][s][-1]:.3f}" for s in TEST_SIZES), flush=True)
    return {"train_size": CANVAS, "test_sizes": list(TEST_SIZES), "seeds": seeds, "epochs": epochs,
            "accuracy": {k: {str(s): v for s, v in r.items()} for k, r in results.items()}}


def table(result: dict) -> str:
    lines = [f"{'test size':>9} | {'plain':>15} | {'rectified':>15} | {'rf - plain':>10}"]
    lines.append("-" * len(lines[0]))
    for size in result["test_sizes"]:
        p, r = (result["accuracy"][k][str(size)] for k in ("plain", "rectified"))
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

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = result["test_sizes"]
    for kind, color in (("plain", "tab:gray"), ("rectified", "tab:blue")):
        acc = np.array([result["accuracy"][kind][str(s)] for s in sizes])
        ax.errorbar(sizes, acc.mean(1), yerr=acc.std(1), label=kind, color=color, marker="o", capsize=3)
    ax.axvline(result["train_size"], color="k", linestyle=":", label="training size")
    ax.set_xlabel("test resolution (pixels)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Digits on a {result['train_size']}px canvas, {result['seeds']} seeds")
    ax.legend()
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
    print(table(result))
    (args.out / "resolution_study.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "resolution_study.png")
    print(f"Wrote {args.out / 'resolution_study.json'} and {args.out / 'resolution_study.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
