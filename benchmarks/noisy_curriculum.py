"""DINOv2 on noisy images: no denoiser, denoiser, curriculum, curriculum + teacher guidance (issue 5, item 6).

"Ditch the Denoiser" (arXiv 2505.12191; shared/specs/noisy-dinov2.md), four arms per noise level, every
pretraining run the same number of epochs of the same tiny recipe:

(a) ``noisy``      DINOv2 on the noisy training images;
(b) ``denoised``   a Neighbor2Neighbor denoiser, then DINOv2 on the denoised images — the denoiser is
                   needed at test time too (it is evaluated on the denoised test images);
(c) ``curriculum`` the NC curriculum: 70 % of the steps on the denoised copy, then 30 % on the noisy
                   images with restarted schedules;
(d) ``guided``     (c) plus teacher guidance (NCT): in the noisy stage a frozen copy of the end-of-stage-1
                   teacher sees the denoised twin of every noisy crop, weight λ (``--guidance``).

All the data is made with the CLI a user would run: ``sslkit noise`` (Gaussian σ on the 0–255 scale, train
and test splits, seeded per image), ``sslkit denoise train`` on the noisy training images only and
``sslkit denoise apply`` to both splits. (a), (c) and (d) are evaluated on the *noisy* test images with
no denoiser; (b) on the denoised test images. kNN (k = 20, T = 0.07) and a linear probe (LR × weight-decay
sweep on a validation split) read the class from the frozen teacher CLS features; the bank / probe
training set is the same split's training images at the same noise (denoised for (b)).

Target (issue 5): (d) ≥ (a) + 3 points, without any denoiser at inference.

Usage::

    python benchmarks/noisy_curriculum.py [--data digits] [--levels 100,255] [--epochs 6] [--quick]

Writes ``benchmarks/figures/noisy_curriculum/noisy_curriculum-<data>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("noisy", "denoised", "curriculum", "guided")


def cli(*args: str) -> None:
    from sslkit.cli import main

    code = main(list(args))
    if code != 0:
        raise SystemExit(f"sslkit {' '.join(args)} failed with exit code {code}")


def make_data(data: str, level: float, work: Path, denoise_epochs: int, steps_per_epoch: int) -> dict[str, Path]:
    """Noisy train/test copies and their denoised twins, with the CLI; returns the four folders.

    A folder (or the denoiser) that is already complete from an earlier run is reused.
    """
    d = {"noisy_train": work / "noisy-train", "noisy_test": work / "noisy-test",
         "denoised_train": work / "denoised-train", "denoised_test": work / "denoised-test"}
    for split in ("train", "test"):
        if not (d[f"noisy_{split}"] / "noise.json").is_file():
            cli("noise", "--data", data, "--split", split, "--kind", "gaussian", "--level", f"{level:g}",
                "--out", str(d[f"noisy_{split}"]))
    if not (work / "n2n" / "denoiser.json").is_file():
        cli("denoise", "train", "--data", str(d["noisy_train"]), "--out", str(work / "n2n"),
            "--epochs", str(denoise_epochs), "--steps-per-epoch", str(steps_per_epoch), "--width", "32", "--depth", "3")
    for split in ("train", "test"):
        if not (d[f"denoised_{split}"] / "denoise.json").is_file():
            cli("denoise", "apply", "--model", str(work / "n2n"), "--data", str(d[f"noisy_{split}"]),
                "--out", str(d[f"denoised_{split}"]))
    return d


def arm_overrides(arm: str, d: dict[str, Path], guidance: float) -> tuple[str, list[str]]:
    """(recipe, overrides) of one arm."""
    noisy, denoised = d["noisy_train"], d["denoised_train"]
    if arm == "noisy":
        return "dinov2-tiny.yaml", [f"data.source={noisy}"]
    if arm == "denoised":
        return "dinov2-tiny.yaml", [f"data.source={denoised}"]
    stage_b = "{fraction: 0.3, restart_schedules: true"
    if arm == "guided":
        stage_b += f", teacher_guidance: {guidance:g}, paired_data: {denoised}"
    return "noisy-dinov2-tiny.yaml", [f"data.source={noisy}",
                                      f"curriculum=[{{fraction: 0.7, data: {denoised}}}, {stage_b}}}]"]


def pretrain_arm(arm: str, d: dict[str, Path], epochs: float, guidance: float, seed: int, out: Path,
                 quick: bool, extra: tuple[str, ...] = ()) -> float:
    from sslkit.config import load_config
    from sslkit.engine.run import pretrain

    recipe, overrides = arm_overrides(arm, d, guidance)
    overrides += [f"optim.epochs={epochs}", f"trainer.seed={seed}", "trainer.progress_bar=false",
                  "monitor.knn_every_n_steps=0", "monitor.baselines=false", "trainer.checkpoint_every_n_steps=0"]
    if quick:
        overrides += ["optim.iters_per_epoch=4", "optim.warmup_epochs=0.5", "dinov2.warmup_teacher_temp_epochs=0.5"]
    cfg = load_config(str(ROOT / "recipes" / recipe), overrides + list(extra))
    start = time.perf_counter()
    pretrain(cfg, out, log=lambda *_: None)
    return time.perf_counter() - start


def eval_data(train: Path, test: Path, image_size: int = 32):
    """Train / test folders (item i = source item i) as one EvalData for the feature pass."""
    from sslkit.data.noise import open_noisy_copy
    from sslkit.eval.models import EvalData

    train_set, _ = open_noisy_copy(train)
    test_set, _ = open_noisy_copy(test)
    base = train_set.dataset if hasattr(train_set, "dataset") else train_set
    return EvalData(source=str(train), splits={"train": train_set, "test": test_set}, channels=base.channels,
                    num_classes=base.num_classes, class_names=base.class_names, mean=tuple(base.mean),
                    std=tuple(base.std), image_size=image_size, options={}, fingerprint=f"{train}|{test}")


def evaluate(run: Path, data, quick: bool) -> dict:
    from sslkit.eval.knn import KNNConfig, knn_protocol
    from sslkit.eval.linear import LinearProbeConfig, linear_probe
    from sslkit.eval.models import compute_features

    xtr, ytr = compute_features(str(run), data, "train", "cls", cache_dir=None)
    xte, yte = compute_features(str(run), data, "test", "cls", cache_dir=None)
    knn = knn_protocol(xtr, ytr, xte, yte, KNNConfig(ks=(20,), temperature=0.07))
    probe = linear_probe(xtr, ytr, xte, yte, LinearProbeConfig(lrs=(1e-3, 1e-2), weight_decays=(0.0,), epochs=1)
                         if quick else None)
    return {"knn_top1": knn.accuracy[20], "linear_top1": probe.test_accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--levels", default="100,255", help="Gaussian σ on the 0-255 scale")
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--guidance", type=float, default=2.0, help="λ of the teacher-guided terms in arm (d)")
    parser.add_argument("--denoise-epochs", type=int, default=10)
    parser.add_argument("--denoise-steps-per-epoch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="4 steps per epoch, a 2-epoch denoiser: a smoke run")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help="arms to run (default all four; the claim (d) >= (a) + 3 needs only noisy,guided)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for every arm (repeatable), e.g. a smaller ViT for more seeds")
    parser.add_argument("--eval-size", type=int, default=32, help="image side of the evaluation (the training size)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "figures" / "noisy_curriculum"))
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not arms:
        parser.error(f"--arms {args.arms!r}: choose from {', '.join(ARMS)}")
    from sslkit.commands.pretrain import quiet_lightning

    quiet_lightning()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    denoise_epochs, steps = (2, 5) if args.quick else (args.denoise_epochs, args.denoise_steps_per_epoch)
    rows = []
    for level in [float(v) for v in args.levels.split(",")]:
        work = out / f"{args.data}-sigma{level:g}"
        d = make_data(args.data, level, work, denoise_epochs, steps)
        psnr = json.loads((d["denoised_test"] / "denoise.json").read_text())
        noisy_eval = eval_data(d["noisy_train"], d["noisy_test"], args.eval_size)
        denoised_eval = eval_data(d["denoised_train"], d["denoised_test"], args.eval_size)
        for arm in arms:
            run = work / f"{arm}-seed{args.seed}"
            seconds = pretrain_arm(arm, d, args.epochs, args.guidance, args.seed, run, args.quick, tuple(args.set))
            scores = evaluate(run, denoised_eval if arm == "denoised" else noisy_eval, args.quick)
            rows.append({"sigma": level, "arm": arm, **scores, "pretrain_seconds": seconds,
                         "psnr_noisy_test": psnr.get("psnr_noisy"), "psnr_denoised_test": psnr.get("psnr_denoised")})
            print(f"σ={level:g} {arm:<10} kNN {100 * scores['knn_top1']:5.1f} %  linear {100 * scores['linear_top1']:5.1f} %"
                  f"  ({seconds:.0f} s)", flush=True)
    (out / f"noisy_curriculum-{args.data}-seed{args.seed}.json").write_text(
        json.dumps({"data": args.data, "epochs": args.epochs, "guidance": args.guidance, "seed": args.seed,
                    "overrides": args.set, "eval_size": args.eval_size,
                    "rows": rows}, indent=2))
    print(f"\n{args.data}, {args.epochs:g} epochs, λ = {args.guidance:g}, seed {args.seed}\n")
    print("| σ | (a) noisy kNN / lin | (b) denoiser kNN / lin | (c) curriculum kNN / lin | (d) + guidance kNN / lin |"
          " (d) − (a) lin |")
    print("|---:|---|---|---|---|---:|")
    for level in sorted({r["sigma"] for r in rows}):
        cell = {r["arm"]: r for r in rows if r["sigma"] == level}
        fmt = lambda r: f"{100 * r['knn_top1']:.1f} / {100 * r['linear_top1']:.1f}"  # noqa: E731
        gain = (f"{100 * (cell['guided']['linear_top1'] - cell['noisy']['linear_top1']):+.1f}"
                if {"guided", "noisy"} <= set(cell) else "—")
        print(f"| {level:g} | " + " | ".join(fmt(cell[a]) if a in cell else "—" for a in ARMS) + f" | {gain} |")


if __name__ == "__main__":
    main()
