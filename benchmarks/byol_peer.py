"""BYOL at the learning budget: sslkit against lightly 1.6, paired per seed (is the seed failure BYOL's or sslkit's?).

The learning budget is ``tests/learning_budgets.py``'s BYOL run: ``recipes/byol-tiny.yaml`` (its views: two
16-px crops with BYOL's asymmetric blur/solarize) on the built-in ``digits`` at 16 px, sslkit's ViT with 2
blocks, width 64, 2 heads, patch 4; batch 64; 300 steps; projector 64→256→64, predictor 64→256→64; AdamW at
peak lr 0.008 × sqrt(64/1024) = 2e-3 (the same as 0.008 × 64/256), warm-up 0.3 epochs of 50 steps = 15 steps,
cosine to ``optim.min_lr``; weight decay 0.05; EMA τ 0.99 → 1 on a cosine. kNN (k = 20, T = 0.07) of the CLS
features on the 360 held-out digits, minus the same ViT at random init.

Both sides per seed, built on ``peer_parity``'s helpers:

- the same backbone: ``build_backbone`` under ``seed_all(seed)`` (identical weights; mask token frozen on both);
- the same batches: ``peer_parity.make_loader`` (sslkit's seeded ``AugmentedStream`` of the recipe's views,
  the same stream the CLI builds), a fresh loader per side;
- the same optimiser: AdamW with the recipe's betas and lr / wd schedules; sslkit's side its engine groups
  (``dinov2_param_groups``), lightly's side ``peer_parity.lightly_param_groups`` (lightly's
  ``get_weight_decay_parameters`` split) with lightly's ``cosine_warmup_schedule`` / ``cosine_schedule`` through
  ``peer_parity.LightlySchedules``, as in peer_parity's other lightly arms;
- the same evaluator: ``peer_parity.evaluate`` (online backbone, CLS token) and the random-init baseline.

sslkit's side: ``peer_parity.train_sslkit`` (the engine's training step without Lightning) on
``sslkit.methods.byol.BYOL``. lightly's side follows lightly's ``examples/pytorch/byol.py``:
``BYOLProjectionHead(64, 256, 64)`` and ``BYOLPredictionHead(64, 256, 64)``; the target (momentum) backbone and
projection head are ``copy.deepcopy`` of the online ones with ``deactivate_requires_grad`` and are never put in
eval mode, so the target projector's BatchNorm runs in TRAIN mode (batch statistics) as in lightly's example (and
as sslkit's BYOL does); each view goes through backbone → projector → predictor on its own call (per-view
BatchNorm statistics, online and target); ``update_momentum`` on backbone and projector at the start of each
step (lightly's example and benchmark order) with ``m = cosine_schedule(step, steps, 0.99, 1.0)``; loss
``0.5 * (NegativeCosineSimilarity(p0, z1) + NegativeCosineSimilarity(p1, z0))``.

The loss scales: sslkit's is ``(2 − 2cos(q1, z2')) + (2 − 2cos(q2, z1'))`` (batch means), lightly's example
``0.5 · (−cos(p0, z1) − cos(p1, z0))``: sslkit = 4 + 4 · lightly, an affine map, so the gradients differ by a
factor 4, which AdamW's normalisation removes (up to its eps = 1e-8).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/byol_peer.py --seeds 0,1,2,3,4 --steps 300
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_parity as pp  # noqa: E402

from sslkit.config import load_config  # noqa: E402
from sslkit.data.sources import open_configured  # noqa: E402
from sslkit.engine.builders import build_backbone, build_schedules  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/byol-tiny.yaml"
BATCH = 64
ITERS_PER_EPOCH = 50
# tests/learning_budgets.py, BYOL: _COMMON + METHOD_OVERRIDES["byol"] (training settings only; the monitor and
# logging keys there do not change what is trained). optim.epochs is set from --steps.
BUDGET = {
    "data.source": "digits", "data.image_size": 16, "crops.global_size": 16,
    "model.embed_dim": 64, "model.depth": 2, "model.num_heads": 2, "model.patch_size": 4,
    "optim.batch_size": BATCH, "optim.iters_per_epoch": ITERS_PER_EPOCH, "optim.warmup_epochs": 0.3,
    "byol.projector_hidden_dim": 256, "byol.projector_out_dim": 64, "byol.predictor_hidden_dim": 256,
    "optim.base_lr": 0.008, "trainer.precision": "32-true", "monitor.baselines": "false",
}
LIGHTLY = {"projection_head": "BYOLProjectionHead(64, 256, 64)", "prediction_head": "BYOLPredictionHead(64, 256, 64)",
           "loss": "0.5 * (NegativeCosineSimilarity()(p0, z1) + NegativeCosineSimilarity()(p1, z0))",
           "momentum": "update_momentum at step start, cosine_schedule(step, steps, 0.99, 1.0)",
           "target_batchnorm": "train mode (batch statistics), as lightly's examples/pytorch/byol.py",
           "weight_decay_split": "lightly.models.utils.get_weight_decay_parameters"}
# What still differs between the two sides (measured or read from the code; none of it was tuned).
DEVIATIONS = [
    "Head init: lightly's ProjectionHead gives the Linear before a BatchNorm no bias (bias = not batch_norm); "
    "sslkit's BYOLMLP keeps it. Same function (the BatchNorm removes a constant shift), but one fewer RNG draw, "
    "so the heads' second Linear starts from other weights than sslkit's; the backbone starts identical.",
    "Loss: sslkit (2-2cos)+(2-2cos) summed over both orders = 4 + 4 x lightly's 0.5*(-cos - cos): an affine map, "
    "gradients x4, removed by AdamW's normalisation up to eps 1e-8.",
    "EMA: lightly's update_momentum at the start of each step (first update a no-op, no update after the last "
    "step), m = lightly cosine_schedule(step, steps, 0.99, 1) (cosine over steps-1); sslkit's ema_update_ after "
    "each optimiser step with its own cosine over total steps: max |dm| 3e-5. lightly mul+add vs sslkit lerp.",
    "lr warm-up: lightly's cosine_warmup_schedule starts at peak/15 on step 0, sslkit's at 0 (max |dlr| 1.3e-4, "
    "in the 15 warm-up steps only); same peak 2e-3 and end 1e-6; after the warm-up the cosines differ by at "
    "most 6.4e-6 (lightly's runs over steps-1), a relative gap that grows only in the last steps where both "
    "are near 1e-6; wd identical.",
    "Weight-decay split: lightly's get_weight_decay_parameters vs sslkit's no_weight_decay: no disagreement on "
    "the backbone (pos_embed and cls_token decayed on both); heads: biases and BatchNorm not decayed on both.",
    "Backbone calls: sslkit runs both views through the ViT in one call, lightly one call per view (the ViT has "
    "no batch-coupled op, so per-sample identical); the target ViT is in eval mode in sslkit and train mode in "
    "lightly, identical here (no dropout, drop-path 0). MLPs: per view on both sides, target BatchNorm in train "
    "mode on both sides.",
]
# The CLI's numbers this investigation starts from (sslkit pretrain via tests/learning_budgets.py, 300 steps).
CLI_MARGINS = {0: 14.7, 1: 8.3, 2: 18.9, 3: -8.1, 4: 1.4}


def budget_config(seed: int, steps: int):
    overrides = {**BUDGET, "optim.epochs": repr(steps / ITERS_PER_EPOCH), "trainer.seed": seed}
    cfg = load_config(RECIPE, [f"{k}={v}" for k, v in overrides.items()])
    schedules = build_schedules(cfg, ITERS_PER_EPOCH, BATCH)
    if schedules.total_iters != steps:
        raise RuntimeError(f"schedules span {schedules.total_iters} steps, expected {steps}")
    return cfg, schedules


def check_budget_matches_tests() -> str:
    """Compare BUDGET with tests/learning_budgets.py as it is now (read only); one line for the log."""
    try:
        sys.path.insert(0, str(ROOT / "tests"))
        import learning_budgets as lb

        merged = {**lb._COMMON, **lb.METHOD_OVERRIDES["byol"]}
        diff = {k: (v, merged.get(k)) for k, v in BUDGET.items()
                if k in merged and not k.startswith("monitor.") and str(merged[k]).lower() != str(v).lower()}
        missing = sorted(k for k in merged if k not in BUDGET and not k.startswith(("monitor.", "trainer.")))
        return (f"tests/learning_budgets.py byol: steps {lb.steps('byol')}; differences {diff or 'none'}; "
                f"keys not used here {missing or 'none'}")
    except Exception as err:  # the file is someone else's work in progress: report, do not fail
        return f"tests/learning_budgets.py not compared ({type(err).__name__}: {err})"


def train_lightly_byol(cfg, steps: int, data, loader) -> tuple[nn.Module, list[float]]:
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    b = cfg.byol
    pp.seed_all(cfg.trainer.seed)
    backbone = build_backbone(cfg, data.channels).train()  # the same weights as sslkit's under this seed
    backbone.mask_token.requires_grad_(False)  # as sslkit: only iBOT uses the mask token
    width = backbone.embed_dim
    projection_head = BYOLProjectionHead(width, b.projector_hidden_dim, b.projector_out_dim)
    prediction_head = BYOLPredictionHead(b.projector_out_dim, b.predictor_hidden_dim, b.projector_out_dim)
    backbone_momentum = copy.deepcopy(backbone)
    projection_head_momentum = copy.deepcopy(projection_head)
    deactivate_requires_grad(backbone_momentum)
    deactivate_requires_grad(projection_head_momentum)
    for module in (backbone, projection_head, prediction_head, backbone_momentum, projection_head_momentum):
        module.train()  # lightly's example never calls eval(): the target's BatchNorm uses batch statistics
    criterion = NegativeCosineSimilarity()
    schedules = pp.LightlySchedules(cfg, ITERS_PER_EPOCH, steps)
    optimizer = pp._student_optimizer(cfg, [backbone, projection_head, prediction_head], backbone)

    def online(x):
        return prediction_head(projection_head(backbone(x).flatten(start_dim=1)))

    @torch.no_grad()
    def target(x):
        return projection_head_momentum(backbone_momentum(x).flatten(start_dim=1)).detach()

    losses: list[float] = []
    for step, batch in enumerate(loader):
        pp.apply_lightly_values(optimizer, schedules.at(step))
        m = cosine_schedule(step, steps, 0.99, 1.0)
        update_momentum(backbone, backbone_momentum, m=m)
        update_momentum(projection_head, projection_head_momentum, m=m)
        x0, x1 = batch["global_crops"].chunk(2)
        p0, z0 = online(x0), target(x0)
        p1, z1 = online(x1), target(x1)
        loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
        pp.check_finite(loss, "lightly", step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return backbone, losses


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    n = len(diffs)
    mean = statistics.mean(diffs)
    if n < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--sides", default="sslkit,lightly")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/byol_peer.json")
    args = parser.parse_args(argv)
    lightly = pp.import_peer("lightly")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    seeds = [int(s) for s in args.seeds.split(",")]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    import sslkit
    import timm

    command = ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " .venv-peers/bin/python "
               "benchmarks/byol_peer.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    budget_check = check_budget_matches_tests()
    print(budget_check, flush=True)
    cfg0, sched0 = budget_config(seeds[0], args.steps)
    res = {"settings": {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "seeds": seeds,
                        "steps": args.steps, "batch_size": BATCH, "iters_per_epoch": ITERS_PER_EPOCH,
                        "recipe": str(RECIPE.relative_to(ROOT)), "overrides": BUDGET,
                        "lr_peak": sched0.lr_peak, "warmup_steps": round(cfg0.optim.warmup_epochs * ITERS_PER_EPOCH),
                        "min_lr": cfg0.optim.min_lr, "weight_decay": [cfg0.optim.weight_decay,
                                                                      cfg0.optim.weight_decay_end],
                        "betas": list(cfg0.optim.betas), "ema_tau": [cfg0.optim.momentum_teacher,
                                                                     cfg0.optim.momentum_teacher_end],
                        "knn": {"k": 20, "temperature": 0.07, "pooling": "cls"}, "threads": torch.get_num_threads(),
                        "lightly_side": LIGHTLY, "budget_check": budget_check,
                        "cli_margins_reported": CLI_MARGINS, "deviations": DEVIATIONS},
           "versions": {"torch": torch.__version__, "timm": timm.__version__, "lightly": lightly.__version__,
                        "sslkit": getattr(sslkit, "__version__", "?")},
           "load_before": list(os.getloadavg()), "runs": [], "random_init": {}}

    def save():
        res["load_after"] = list(os.getloadavg())
        tmp = args.json.with_suffix(".json.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(res, indent=2) + "\n")
        os.replace(tmp, args.json)

    for i, seed in enumerate(seeds):
        cfg, schedules = budget_config(seed, args.steps)
        data = open_configured(cfg.data, seed=seed)
        if i == 0:
            res["settings"]["data"] = {"description": data.description, "n_train": len(data.train),
                                       "n_bank": len(data.bank), "n_queries": len(data.queries)}
        pp.seed_all(seed)
        base = pp.evaluate(build_backbone(cfg, data.channels).eval(), data, cfg.crops.global_size)
        res["random_init"][str(seed)] = base
        print(f"seed {seed}: random init kNN {100 * base['knn']:.1f} %", flush=True)
        order = sides[i % len(sides):] + sides[: i % len(sides)]  # alternate which side goes first
        for side in order:
            loader = pp.make_loader(cfg, data, args.steps)
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            if side == "sslkit":
                model, losses = pp.train_sslkit(cfg, schedules, data, loader)
            else:
                model, losses = train_lightly_byol(cfg, args.steps, data, loader)
            train_s = time.perf_counter() - t0
            scores = pp.evaluate(model.eval(), data, cfg.crops.global_size)
            run = {"side": side, "seed": seed, "load_at_start": load, "train_s": train_s, "steps": len(losses),
                   "first_loss": losses[0], "final_loss": losses[-1], "loss_every_10": losses[::10], **scores,
                   "margin_points": 100 * (scores["knn"] - base["knn"])}
            res["runs"].append(run)
            print(f"seed {seed} {side:8s}: kNN {100 * scores['knn']:.1f} % (margin {run['margin_points']:+.1f}), "
                  f"linear {100 * scores['linear']:.1f} %, train {train_s:.0f} s, eval {scores['eval_s']:.0f} s, "
                  f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, load {load:.2f}", flush=True)
            del model
            save()

    # Summary
    by = {(r["side"], r["seed"]): r for r in res["runs"]}
    rows, diffs = [], []
    print("\nseed | random init | sslkit (margin) | lightly (margin) | sslkit - lightly")
    for seed in seeds:
        base = 100 * res["random_init"][str(seed)]["knn"]
        s, l = by.get(("sslkit", seed)), by.get(("lightly", seed))
        row = {"seed": seed, "random_init": base}
        for name, r in (("sslkit", s), ("lightly", l)):
            if r:
                row[name] = 100 * r["knn"]
                row[f"{name}_margin"] = row[name] - base
        if s and l:
            row["diff"] = row["sslkit"] - row["lightly"]
            diffs.append(row["diff"])
        rows.append(row)
        fmt = lambda k: f"{row[k]:.1f} ({row[k + '_margin']:+.1f})" if k in row else "—"  # noqa: E731
        diff = f"{row['diff']:+.1f}" if "diff" in row else "—"
        print(f"{seed} | {base:.1f} | {fmt('sslkit')} | {fmt('lightly')} | {diff}")
    summary = {"rows": rows}
    if diffs:
        mean, lo, hi = t_interval(diffs)
        summary.update({"diff_mean": mean, "diff_ci95": [lo, hi], "n_pairs": len(diffs)})
        print(f"mean paired difference sslkit - lightly: {mean:+.2f} points, 95 % t interval [{lo:+.2f}, {hi:+.2f}] "
              f"(n = {len(diffs)})")
    for name in ("sslkit", "lightly"):
        margins = [r[f"{name}_margin"] for r in rows if f"{name}_margin" in r]
        if margins:
            summary[f"{name}_margin_mean"] = statistics.mean(margins)
            summary[f"{name}_seeds_below_random"] = [r["seed"] for r in rows if r.get(f"{name}_margin", 1) < 0]
            print(f"{name}: mean margin {statistics.mean(margins):+.1f} points; seeds below random init "
                  f"{summary[f'{name}_seeds_below_random']}")
    res["summary"] = summary
    save()
    print(f"load average before {res['load_before']} / after {res['load_after']}; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
