"""How far can the demo's ViT get on `shapes` in the demo's budget *with* labels? (issue 2, item 7)

The demo target asks a self-supervised model to reach ≥ random-init + 15 points of kNN accuracy on the
shape class after a few CPU minutes. This script measures the supervised ceiling of the same backbone
(4 blocks, width 192, patch 4, 32 px, no LayerScale) trained with cross-entropy on the labels, with the
same batch size and a step budget of the demo's order, plus random horizontal flips. If even
supervision cannot reach the target in that budget, no pretraining objective will.

Reported every ``--eval-every`` steps: test accuracy of the trained linear head, and kNN (k = 20,
T = 0.07) of the backbone's CLS features — the demo's metric.

``--arch cnn`` swaps the ViT for a small 3-layer CNN (32-64-128 channels, global average pool), a
backbone with the locality prior a ViT lacks: if even it needs hundreds of steps, the slowness is the
task's (shapes of random colour, scale, position and rotation), not the ViT's. ``--arch vit-convstem``
keeps the ViT but replaces its 4×4 patch projection by a small convolutional stem (3×3 convs, stride
1-2-2, 32-64-128 channels, then 1×1 to the width; Xiao et al., "Early Convolutions Help Transformers
See Better", arXiv 2106.14881) — same token grid, locality prior added.

Usage::

    python benchmarks/demo_ceiling.py [--steps 400] [--lr 3e-4] [--warmup 50] [--background texture]
                                      [--arch vit|cnn|vit-convstem]
"""

from __future__ import annotations

import argparse
import time

import torch


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([it["image"] for it in items]), torch.tensor([int(it["label"]) for it in items])


class SmallCNN(torch.nn.Module):
    """Three 3×3 conv + ReLU layers (32, 64, 128 channels; max-pool after the first two), average-pooled."""

    embed_dim = 128

    def __init__(self) -> None:
        super().__init__()
        layers, width = [], 3
        for i, channels in enumerate((32, 64, 128)):
            layers += [torch.nn.Conv2d(width, channels, 3, padding=1), torch.nn.ReLU()]
            layers += [torch.nn.MaxPool2d(2)] if i < 2 else []
            width = channels
        self.body = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    def forward_features(self, x: torch.Tensor) -> dict:
        return {"cls": self.body(x)}


def conv_stem(in_chans: int, width: int) -> torch.nn.Sequential:
    """Overall stride 4 (the patch size it replaces): 3×3 convs at stride 1, 2, 2, then a 1×1 projection."""
    layers, channels = [], in_chans
    for out, stride in ((32, 1), (64, 2), (128, 2)):
        layers += [torch.nn.Conv2d(channels, out, 3, stride, 1), torch.nn.ReLU()]
        channels = out
    return torch.nn.Sequential(*layers, torch.nn.Conv2d(channels, width, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--background", default="texture", choices=["texture", "noise", "plain"])
    parser.add_argument("--arch", default="vit", choices=["vit", "cnn", "vit-convstem"])
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sslkit.data.builtin import load_builtin
    from sslkit.eval.knn import KNNConfig, knn_protocol
    from sslkit.nn.vit import build_vit

    torch.manual_seed(args.seed)
    train, test = (load_builtin("shapes", split, background=args.background) for split in ("train", "test"))
    xtr, ytr = stack(train)
    xte, yte = stack(test)
    mean, std = torch.tensor(train.mean).view(1, 3, 1, 1), torch.tensor(train.std).view(1, 3, 1, 1)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if args.arch == "cnn":
        vit = SmallCNN()
    else:
        vit = build_vit("vit_tiny", patch_size=4, depth=4, img_size=32, layerscale_init=None)
        if args.arch == "vit-convstem":
            vit.patch_embed.proj = conv_stem(3, vit.embed_dim)
    head = torch.nn.Linear(vit.embed_dim, train.num_classes)
    params = list(vit.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(args.warmup, 1)))
    generator = torch.Generator().manual_seed(args.seed)

    @torch.no_grad()
    def evaluate(step: int) -> None:
        vit.eval()
        ftr = torch.cat([vit.forward_features(x)["cls"] for x in xtr.split(500)])
        fte = torch.cat([vit.forward_features(x)["cls"] for x in xte.split(500)])
        head_acc = (head(fte).argmax(1) == yte).float().mean().item()
        knn = knn_protocol(ftr, ytr, fte, yte, KNNConfig(ks=(20,), temperature=0.07)).accuracy[20]
        vit.train()
        print(f"| {step} | {100 * head_acc:.1f} | {100 * knn:.1f} | {time.perf_counter() - start:.0f} |", flush=True)

    print(f"shapes ({args.background}), supervised {args.arch.upper()}, batch {args.batch_size}, AdamW lr {args.lr:g}, "
          f"warm-up {args.warmup} steps, seed {args.seed}\n")
    print("| step | test accuracy, linear head % | kNN k=20 on CLS % | seconds |")
    print("|---:|---:|---:|---:|")
    start = time.perf_counter()
    evaluate(0)
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(xtr), (args.batch_size,), generator=generator)
        x = xtr[idx]
        flip = torch.rand(args.batch_size, generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        loss = torch.nn.functional.cross_entropy(head(vit.forward_features(x)["cls"]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)


if __name__ == "__main__":
    main()
