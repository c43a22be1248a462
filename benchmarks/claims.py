"""The seed papers' pretraining claims as paired differences over seeds, with 95 % intervals (issue 19, item 3).

Reads the per-seed results that the claim benchmarks write and turns each claim into paired
differences (same seed, same data, the two arms of the claim), their mean, a 95 % Student-t interval
and a verdict. A claim *holds* when the whole interval lies on the claimed side of its bound, *is
refuted* when the whole interval lies on the other side, and is *not shown* otherwise.

- ``--je FILE``: ``benchmarks/je_vs_recon.py`` output (arXiv 2505.12477): joint embedding − MAE
  linear-probe points per noise level; the claim is MAE ahead at the lowest level and JE ahead at the
  highest (the crossing).
- ``--fast FILE...``: ``benchmarks/fast_curriculum.py`` outputs, one per seed (arXiv 2507.03779):
  fast − baseline kNN and linear points (claim ≥ −1) and mean corruption accuracy (claim ≥ 0), with
  the FLOPs ratio (claim ≤ 0.5).

- ``--noisy FILE...``: ``benchmarks/noisy_curriculum.py`` outputs, one per seed (arXiv 2505.12191):
  (d) curriculum + teacher guidance − (a) noisy-only linear and kNN points per noise level, with no
  denoiser at inference (claim ≥ +3 at every level).

A claim with fewer than 5 seeds is reported with its interval but marked ``underpowered``.

    python benchmarks/claims.py --je benchmarks/results/je_vs_recon.json --out benchmarks/results/claims.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_SEEDS = 5


def paired(values: list[float], bound: float, side: str) -> dict:
    """Mean, sd and 95 % t interval of paired differences, and the verdict against ``bound``.

    ``side`` = "above": the claim is difference ≥ bound; "below": difference ≤ bound; None: no claim
    at this point (described, not judged).
    """
    from scipy import stats

    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else float("nan")
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else float("inf")
    low, high = mean - half, mean + half
    holds = low >= bound if side == "above" else high <= bound
    refuted = high < bound if side == "above" else low > bound
    verdict = "no claim here" if side is None else "holds" if holds else "refuted" if refuted else "not shown"
    return {"per_seed": values, "n": n, "mean": mean, "sd": sd, "ci95": [low, high], "bound": bound, "side": side,
            "verdict": verdict,
            "underpowered": n < MIN_SEEDS}


def je_vs_recon(path: Path) -> dict:
    data = json.loads(path.read_text())
    je, rows = data["je"], data["rows"]
    levels = sorted({r["level"] for r in rows})
    per_level = {}
    for level in levels:
        acc = {(r["method"], r["seed"]): 100 * r["linear_top1"] for r in rows if r["level"] == level}
        seeds = sorted(s for (m, s) in acc if m == je and ("mae", s) in acc)
        diffs = [acc[(je, s)] - acc[("mae", s)] for s in seeds]
        per_level[str(level)] = {"seeds": seeds, je: [acc[(je, s)] for s in seeds], "mae": [acc[("mae", s)] for s in seeds],
                                 "je_minus_mae": paired(diffs, 0.0, "above" if level == levels[-1] else
                                                        "below" if level == levels[0] else None)}
    low, high = per_level[str(levels[0])]["je_minus_mae"], per_level[str(levels[-1])]["je_minus_mae"]
    return {"paper": "arXiv 2505.12477", "source": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "statement": f"reconstruction (MAE) ahead of joint embedding ({je}) at the lowest irrelevant-feature "
                         f"magnitude ({levels[0]:g}), joint embedding ahead at the highest ({levels[-1]:g})",
            "metric": "linear-probe top-1 points, JE − MAE, paired by seed", "data": data["data"],
            "epochs": data["epochs"], "levels": per_level,
            "verdict": {"reconstruction_ahead_at_low": low["verdict"], "je_ahead_at_high": high["verdict"],
                        "crossing": "holds" if low["verdict"] == high["verdict"] == "holds" else "not shown"}}


def fast_dinov2(paths: list[Path]) -> dict:
    runs = sorted((json.loads(p.read_text()) for p in paths), key=lambda d: d["seed"])
    def diff(key):
        return [100 * (d["rows"]["fast"][key] - d["rows"]["baseline"][key]) for d in runs]
    knn, linear = paired(diff("knn_top1"), -1.0, "above"), paired(diff("linear_top1"), -1.0, "above")
    corruption = paired(diff("corruption_mean"), 0.0, "above")
    flops = [d["ratios"]["flops"] for d in runs]
    return {"paper": "arXiv 2507.03779", "data": runs[0]["data"], "epochs": runs[0]["epochs"],
            "seeds": [d["seed"] for d in runs],
            "statement": "fast DINOv2 within −1 point of the full-resolution baseline (kNN and linear) at ≤ 0.5× "
                         "FLOPs, mean corruption accuracy ≥ baseline",
            "knn_points": knn, "linear_points": linear, "corruption_points": corruption, "flops_ratio": flops,
            "wall_time_ratio_interleaved": [d["ratios"]["wall_time_interleaved"] for d in runs],
            "verdict": {"knn": knn["verdict"], "linear": linear["verdict"], "corruption": corruption["verdict"],
                        "flops": "holds" if max(flops) <= 0.5 else "refuted"}}


def noisy_dinov2(paths: list[Path]) -> dict:
    runs = sorted((json.loads(p.read_text()) for p in paths), key=lambda d: d["seed"])
    sigmas = sorted({r["sigma"] for d in runs for r in d["rows"]})
    per_level = {}
    for sigma in sigmas:
        cells = []  # (seed, {arm: row}) for seeds that ran both arms of the claim at this level
        for d in runs:
            arms = {r["arm"]: r for r in d["rows"] if r["sigma"] == sigma}
            if {"noisy", "guided"} <= set(arms):
                cells.append((d["seed"], arms))

        def diff(key):
            return [100 * (a["guided"][key] - a["noisy"][key]) for _, a in cells]

        per_level[f"{sigma:g}"] = {
            "seeds": [s for s, _ in cells],
            "noisy_linear": [100 * a["noisy"]["linear_top1"] for _, a in cells],
            "guided_linear": [100 * a["guided"]["linear_top1"] for _, a in cells],
            "noisy_knn": [100 * a["noisy"]["knn_top1"] for _, a in cells],
            "guided_knn": [100 * a["guided"]["knn_top1"] for _, a in cells],
            "linear_points": paired(diff("linear_top1"), 3.0, "above"),
            "knn_points": paired(diff("knn_top1"), 3.0, "above")}
    verdicts = [v["linear_points"]["verdict"] for v in per_level.values()]
    overall = "holds" if all(v == "holds" for v in verdicts) else \
        "refuted" if any(v == "refuted" for v in verdicts) else "not shown"
    return {"paper": "arXiv 2505.12191", "data": runs[0]["data"], "epochs": runs[0]["epochs"],
            "guidance": runs[0]["guidance"], "seeds": [d["seed"] for d in runs],
            "statement": "denoised→noisy curriculum + teacher guidance ≥ noisy-only DINOv2 + 3 points linear probe, "
                         "no denoiser at inference, at two noise levels",
            "levels": per_level, "verdict": {"linear_at_every_level": overall}}


def plot(claims: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = []  # (label, per-seed, mean, ci, bound)
    if "je_vs_recon" in claims:
        for level, v in claims["je_vs_recon"]["levels"].items():
            d = v["je_minus_mae"]
            entries.append((f"JE − MAE, noise {level}", d))
    if "fast_dinov2" in claims:
        for key in ("knn_points", "linear_points", "corruption_points"):
            entries.append((f"fast − base, {key.split('_')[0]}", claims["fast_dinov2"][key]))
    if "noisy_dinov2" in claims:
        for sigma, v in claims["noisy_dinov2"]["levels"].items():
            for key in ("linear_points", "knn_points"):
                entries.append((f"guided − noisy, {key.split('_')[0]}, σ {sigma}", v[key]))
    fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.55 * len(entries)))
    for i, (label, d) in enumerate(entries):
        y = len(entries) - 1 - i
        ax.scatter(d["per_seed"], [y] * d["n"], color="tab:gray", alpha=0.5, s=14, zorder=2)
        ax.errorbar(d["mean"], y, xerr=[[d["mean"] - d["ci95"][0]], [d["ci95"][1] - d["mean"]]], fmt="o",
                    color={"holds": "tab:green", "refuted": "tab:red", "not shown": "tab:orange"}.get(d["verdict"], "tab:gray"),
                    capsize=4, zorder=3)
        ax.plot([d["bound"]] * 2, [y - 0.35, y + 0.35], color="black", lw=1)
    ax.set_yticks(range(len(entries)), [e[0] for e in reversed(entries)])
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_xlabel("paired difference, points (mean, 95 % t interval; dots: seeds)")
    ax.set_title("green holds · orange not shown · red refuted · grey no claim\nblack bar: the claim's bound", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--je", type=Path)
    parser.add_argument("--fast", type=Path, nargs="+")
    parser.add_argument("--noisy", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "claims.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "figures" / "claims.png")
    args = parser.parse_args()
    claims = {}
    if args.je:
        claims["je_vs_recon"] = je_vs_recon(args.je.resolve())
    if args.fast:
        claims["fast_dinov2"] = fast_dinov2([p.resolve() for p in args.fast])
    if args.noisy:
        claims["noisy_dinov2"] = noisy_dinov2([p.resolve() for p in args.noisy])
    for name in ("je_vs_recon", "fast_dinov2", "noisy_dinov2"):
        claims.setdefault(name, {"verdict": f"not measured with ≥ {MIN_SEEDS} seeds yet (benchmarks/RESULTS.md)"})
    record = {"date": datetime.date.today().isoformat(), "min_seeds": MIN_SEEDS, "claims": claims}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    plot({k: v for k, v in claims.items() if "paper" in v}, args.plot)
    print(json.dumps({k: v.get("verdict") for k, v in claims.items()}, indent=2))


if __name__ == "__main__":
    main()
