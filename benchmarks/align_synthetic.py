"""Cross-seed and cross-method alignment on the synthetic invertible-mixing world (issue #11 part 4; spec
representation-metrics.md item 9).

World: z uniform on S^(m−1), x = g(z) with a 3-layer leaky-ReLU MLP of square, well-conditioned weights
(Zimmermann et al., arXiv 2102.08850); positives z̃ = normalise(z + 0.2·ε). Learners: 3-layer MLP encoders trained
300 Adam steps with SimCLR's NT-Xent (seeds 1..S) or VICReg (seeds 1..2); untrained encoders of seeds 1, 2 as a
control. Everything is evaluated on 1000 held-out latents.

Printed, measured in one run: the mutual-kNN (k = 10), linear-CKA and CKNNA matrices, the analytic random baseline
k/(n−1) and the shuffled-rows null, the ratio of each pair's mutual kNN to the baseline, and each encoder's
held-out linear R² to z and MCC. Target (issue): the same method trained with two seeds aligns far above the
random baseline.

Run: ``OMP_NUM_THREADS=1 python benchmarks/align_synthetic.py [--latent-dims 5,8] [--seeds 3]`` (about a minute
on one quiet core).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from sslkit.analysis.align import alignment_matrices, latent_identifiability
from sslkit.analysis.synthetic_mixing import EncoderTrainingConfig, MixingConfig, SyntheticMixing, train_encoder


def _matrix(title: str, names: list, m: torch.Tensor) -> None:
    width = max(len(n) for n in names) + 2
    print(f"\n{title}")
    print(" " * width + "".join(f"{n:>{width}}" for n in names))
    for i, n in enumerate(names):
        print(f"{n:<{width}}" + "".join(f"{float(m[i, j]):>{width}.3f}" for j in range(len(names))))


def run(latent_dim: int, seeds: int, steps: int, n_test: int, k: int) -> dict:
    world = SyntheticMixing(MixingConfig(latent_dim=latent_dim, seed=0))
    z, x = world.sample(n_test, seed=123)
    feats, fits = {}, {}
    for seed in range(1, seeds + 1):
        t = train_encoder(world, EncoderTrainingConfig(method="simclr", steps=steps, seed=seed))
        feats[f"simclr-{seed}"], fits[f"simclr-{seed}"] = t.embed(x), t
    for seed in (1, 2):
        t = train_encoder(world, EncoderTrainingConfig(method="vicreg", steps=steps, seed=seed))
        feats[f"vicreg-{seed}"], fits[f"vicreg-{seed}"] = t.embed(x), t
    for seed in (1, 2):
        t = train_encoder(world, EncoderTrainingConfig(method="simclr", steps=0, seed=seed))
        feats[f"untrained-{seed}"] = t.embed(x)
    names = list(feats)
    result = alignment_matrices(feats, metrics=("cka_linear", "mutual_knn", "cknna"), k=k, seed=0)
    ident = latent_identifiability(feats, {"z": z})
    print(f"\n=== m = {latent_dim}: {n_test} held-out samples, k = {k}, random baseline k/(n−1) = "
          f"{result.random_mutual_knn:.4f} (± {result.random_mutual_knn_se:.4f} s.e.)")
    for name, t in fits.items():
        print(f"  {name:<10} loss {t.losses[0]:.3f} → {t.losses[-1]:.3f} in {t.seconds:.1f} s")
    _matrix("mutual kNN", names, result.matrices["mutual_knn"])
    _matrix("linear CKA", names, result.matrices["cka_linear"])
    _matrix("CKNNA", names, result.matrices["cknna"])
    null = result.permutation_null["mutual_knn"]
    off = [float(null[i, j]) for i in range(len(names)) for j in range(len(names)) if i != j]
    print(f"\nshuffled-rows null of mutual kNN over all pairs: {min(off):.4f} .. {max(off):.4f}")
    print("\nlinear R² to z (held out 20 %) / MCC:")
    for name in names:
        print(f"  {name:<12} R² {ident.r2[name]['z']:.3f}   MCC {ident.mcc[name]['z']:.3f}")
    idx = {n: i for i, n in enumerate(names)}
    pairs = {"SimCLR seed 1 vs 2": ("simclr-1", "simclr-2"), "VICReg seed 1 vs 2": ("vicreg-1", "vicreg-2"),
             "SimCLR vs VICReg (seed 1)": ("simclr-1", "vicreg-1"),
             "untrained seed 1 vs 2": ("untrained-1", "untrained-2")}
    print("\npair                          mutual kNN  × baseline  linear CKA   CKNNA")
    rows = {}
    for label, (a, b) in pairs.items():
        i, j = idx[a], idx[b]
        mk = float(result.matrices["mutual_knn"][i, j])
        rows[label] = (mk, mk / result.random_mutual_knn, float(result.matrices["cka_linear"][i, j]),
                       float(result.matrices["cknna"][i, j]))
        print(f"{label:<30}{mk:>10.3f}{rows[label][1]:>11.1f}x{rows[label][2]:>12.3f}{rows[label][3]:>8.3f}")
    return {"pairs": rows, "r2": {n: ident.r2[n]["z"] for n in names}, "mcc": {n: ident.mcc[n]["z"] for n in names}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent-dims", default="5,8")
    parser.add_argument("--seeds", type=int, default=3, help="SimCLR seeds (VICReg always 2)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread")
    for m in (int(v) for v in args.latent_dims.split(",")):
        run(m, args.seeds, args.steps, args.n_test, args.k)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
