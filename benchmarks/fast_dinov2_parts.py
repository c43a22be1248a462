"""FastDINOv2 parts (arXiv 2507.03779): FLOPs of the 112/48 -> 224/96 curriculum, and the cost of the
corruption suite and of Gaussian noise patching. Prints a markdown section (figures measured in this run).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fast_dinov2_parts.py (figures go into benchmarks/RESULTS.md)
"""

from __future__ import annotations

import time

import torch

from sslkit.engine.flops import build_on_meta, step_flops
from sslkit.config import load_config
from sslkit.data.corruptions import CORRUPTIONS
from sslkit.data.noise_patch import GaussianBlurPatch, GaussianNoisePatch

ANALYTIC = {"vit_tiny": 2.33, "vit_small": 2.29, "vit_base": 2.27}


def flops_table() -> list[str]:
    lines = ["| backbone | GFLOPs/image 224/96 | GFLOPs/image 112/48 | backbone ratio (spec check 1: 2.2-2.35) | "
             "spec analytic | ratio incl. heads (issue: 2.1-2.4) |", "|---|---|---|---|---|---|"]
    for arch in ("vit_tiny", "vit_small", "vit_base"):
        cfg = load_config("recipes/dinov2-vits16.yaml", [f"model.arch={arch}", "trainer.devices=1"])
        method = build_on_meta(cfg, 3)
        high, low = step_flops(cfg, (224, 96), method=method), step_flops(cfg, (112, 48), method=method)
        backbone = high["backbone"] / (0.75 * low["backbone"] + 0.25 * high["backbone"])
        total = high["total"] / (0.75 * low["total"] + 0.25 * high["total"])
        lines.append(f"| {arch}/16 | {high['per_image']['total'] / 1e9:.1f} | {low['per_image']['total'] / 1e9:.1f} | "
                     f"{backbone:.3f}x | {ANALYTIC[arch]} | {total:.3f}x |")
    return lines


def time_per_image(fn, images: torch.Tensor, repeats: int = 2) -> float:
    fn(images[:1])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / images.shape[0]


def corruption_table() -> list[str]:
    sizes = (32, 64, 224)
    lines = ["| corruption | " + " | ".join(f"ms/image @{s} px (sev 3 / sev 5)" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    batches = {s: torch.rand(8 if s < 224 else 4, 3, s, s, generator=torch.Generator().manual_seed(0)) for s in sizes}
    for name, fn in CORRUPTIONS.items():
        cells = []
        for s in sizes:
            g = torch.Generator().manual_seed(0)
            t3 = time_per_image(lambda x: fn(x, 3, g), batches[s])
            t5 = time_per_image(lambda x: fn(x, 5, g), batches[s])
            cells.append(f"{t3:.1f} / {t5:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def noise_patch_line() -> str:
    image = torch.randint(0, 256, (3, 224, 224)).float() / 255
    out = []
    for transform in (GaussianNoisePatch(0.5), GaussianBlurPatch()):
        g = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(200):
            transform(image, g)
        out.append(f"{type(transform).__name__}: {1000 * (time.perf_counter() - start) / 200:.2f} ms/image")
    return "; ".join(out) + " (224 px, 3 channels, mean over 200 random patches)"


def main() -> None:
    torch.manual_seed(0)
    print("## FastDINOv2 parts: FLOPs of the curriculum, cost of corruptions and noise patching\n")
    print(f"Measured with 1 thread (OMP_NUM_THREADS=1) on a shared 2-core CPU, torch {torch.__version__}.\n")
    print("### FLOPs (torch.utils.flop_counter on the meta device; 2 FLOPs per multiply-add)\n")
    print("Per image: 3 x student forward (2 global + 8 local crops) + teacher forward (2 global crops), "
          "heads 65 536-way with expected iBOT-masked tokens. Ratio = F(224/96) / (0.75 F(112/48) + 0.25 F(224/96)).\n")
    print("\n".join(flops_table()))
    print("\n### Corruption suite cost (CPU, 1 thread)\n")
    print("\n".join(corruption_table()))
    print(f"\n### Noise patching\n\n{noise_patch_line()}")


if __name__ == "__main__":
    main()
