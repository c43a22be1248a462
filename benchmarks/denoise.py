"""Neighbor2Neighbor on noisy `shapes`: PSNR of the noisy input vs the denoised output, with a CPU budget.

Trains on the noisy train split only (no clean image), evaluates on held-out noisy test images against
their clean versions, and prints a Gaussian-blur baseline measured in the same run for scale.

    OMP_NUM_THREADS=1 python benchmarks/denoise.py --levels 100 255 --epochs 10 --steps-per-epoch 50
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.transforms.functional import gaussian_blur

from sslkit.analysis.denoise import DenoiserTrainConfig, denoise_images, mean_psnr, train_denoiser
from sslkit.data.builtin import ShapesDataset
from sslkit.data.noise import NoisyDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=float, nargs="+", default=[100.0, 255.0], help="Gaussian σ (0-255 scale)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--eval-images", type=int, default=200)
    args = parser.parse_args()

    clean_train = ShapesDataset("train", size=32)
    clean_test = ShapesDataset("test", size=32)
    xs = [clean_test[i]["image"] for i in range(args.eval_images)]
    print(f"threads={torch.get_num_threads()} width={args.width} depth={args.depth} epochs={args.epochs} "
          f"steps/epoch={args.steps_per_epoch} batch=8 crop=32 (whole image) lr=3e-4")
    print("| σ | noisy input PSNR | N2N output PSNR | gain | blur σ=1 PSNR | train time |")
    print("|---|---|---|---|---|---|")
    for level in args.levels:
        train = NoisyDataset(clean_train, "gaussian", level)
        test = NoisyDataset(clean_test, "gaussian", level)
        ys = [test[i]["image"] for i in range(args.eval_images)]
        config = DenoiserTrainConfig(width=args.width, depth=args.depth, epochs=args.epochs,
                                     steps_per_epoch=args.steps_per_epoch, seed=0)
        started = time.perf_counter()
        result = train_denoiser(train, config, progress=False)
        seconds = time.perf_counter() - started
        before = mean_psnr(ys, xs)
        after = mean_psnr([denoise_images(result.model, y) for y in ys], xs)
        blur = mean_psnr([gaussian_blur(y[None], 5, 1.0)[0] for y in ys], xs)
        print(f"| {level:g} | {before:.2f} dB | {after:.2f} dB | {after - before:+.2f} dB | {blur:.2f} dB | "
              f"{seconds:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
