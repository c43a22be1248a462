"""Does the built-in `glyphs` set leave room for pretraining to show? (issue 19, item 1)

Three numbers decide whether a dataset can show self-supervision working on a CPU:

1. kNN (k = 20, T = 0.07, weighted voting as DINOv2) on raw normalised pixels — must be low (≤ 40 %),
   or no learned feature can look better than the trivial one;
2. the same kNN on a randomly initialised backbone (the demo's ViT and a small CNN) — the bar the
   pretrained model must clear by 15 points;
3. a small supervised CNN's test accuracy after a few CPU minutes — must be high (≥ 85 %), or the
   class is not learnable in a CPU budget and nothing self-supervised can reach it either.

The supervised network is ``SmallCNN`` below (four 3×3 conv–BatchNorm–ReLU layers of 32–64–128–128
channels, max-pool after the first three, global average pool, linear classifier), trained with AdamW
(lr 2e-3, cosine), batch 128, random 4-pixel translations, for at most ``--budget-s`` CPU seconds.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/glyphs_headroom.py [--budget-s 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
from torch import nn


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([it["image"] for it in items]), torch.tensor([int(it["label"]) for it in items])


class SmallCNN(nn.Module):
    """Four 3×3 conv–BN–ReLU layers (32, 64, 128, 128 channels), max-pool after the first three, average-pooled."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers, width = [], 3
        for i, channels in enumerate((32, 64, 128, 128)):
            layers += [nn.Conv2d(width, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if i < 3 else []
            width = channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def translate(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random integer translation of up to ``shift`` pixels per image (reflect-padded crop)."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (shift,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(b).argmax(1) for b in x.split(500)])
    model.train()
    return float((pred == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="CPU-time budget of the supervised CNN (process CPU seconds, all threads)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--background", default=None, choices=["noise", "texture", "plain"])
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    from sslkit.data.builtin import load_builtin
    from sslkit.eval.knn import KNNConfig, knn_protocol
    from sslkit.nn.vit import build_vit

    torch.manual_seed(args.seed)
    kwargs = {} if args.background is None else {"background": args.background}
    start = time.perf_counter()
    train, test = (load_builtin("glyphs", split, **kwargs) for split in ("train", "test"))
    xtr, ytr = stack(train)
    xte, yte = stack(test)
    render_s = time.perf_counter() - start
    mean, std = torch.tensor(train.mean).view(1, 3, 1, 1), torch.tensor(train.std).view(1, 3, 1, 1)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    knn_cfg = KNNConfig(ks=(20,), temperature=0.07)

    def knn(f_train: torch.Tensor, f_test: torch.Tensor) -> float:
        return knn_protocol(f_train, ytr, f_test, yte, knn_cfg).accuracy[20]

    @torch.no_grad()
    def features(fn) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([fn(b) for b in xtr.split(500)]), torch.cat([fn(b) for b in xte.split(500)])

    out = {"dataset": "glyphs", "train_images": len(train), "test_images": len(test), "render_s": round(render_s, 1),
           "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    out["raw_pixels_knn"] = knn(xtr.flatten(1), xte.flatten(1))
    vit = build_vit("vit_tiny", patch_size=4, depth=4, img_size=32, layerscale_init=None).eval()
    out["random_vit_knn"] = knn(*features(lambda b: vit.forward_features(b)["cls"]))
    cnn = SmallCNN().eval()
    out["random_cnn_knn"] = knn(*features(cnn.features))
    print(f"raw pixels kNN {100 * out['raw_pixels_knn']:.1f} %, random-init ViT {100 * out['random_vit_knn']:.1f} %, "
          f"random-init CNN {100 * out['random_cnn_knn']:.1f} %", flush=True)

    model = SmallCNN()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    generator = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = len(xtr) // args.batch_size
    curve = []
    # The budget is CPU time (time.process_time, summed over threads), so that a shared, loaded
    # machine measures the same budget as an idle one; wall time is reported next to it.
    start, cpu_start, step = time.perf_counter(), time.process_time(), 0
    while time.process_time() - cpu_start < args.budget_s:
        frac = min(1.0, (time.process_time() - cpu_start) / args.budget_s)
        for group in opt.param_groups:  # cosine over the time budget
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * frac))
        idx = torch.randint(0, len(xtr), (args.batch_size,), generator=generator)
        loss = nn.functional.cross_entropy(model(translate(xtr[idx], 4, generator)), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % steps_per_epoch == 0:
            curve.append({"step": step, "seconds": round(time.perf_counter() - start, 1),
                          "cpu_seconds": round(time.process_time() - cpu_start, 1),
                          "test_accuracy": accuracy(model, xte, yte)})
            print(f"step {step}: {curve[-1]['cpu_seconds']} CPU-s, test accuracy {100 * curve[-1]['test_accuracy']:.1f} %",
                  flush=True)
    out["supervised_cnn"] = {"steps": step, "seconds": round(time.perf_counter() - start, 1),
                             "cpu_seconds": round(time.process_time() - cpu_start, 1),
                             "test_accuracy": accuracy(model, xte, yte), "curve": curve}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
