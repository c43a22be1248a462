"""The learning-outcome tests' margins over ≥ 5 seeds, and proof that each test fails when learning breaks.

Issue 18, item 3. For every method, the run of ``tests/learning_budgets.py`` (150 steps on ``digits``, BYOL 300,
a 2-block ViT) is repeated over ``--seeds``: kNN of the trained model minus kNN of the same ViT at
random init, per seed, with the mean, the standard deviation and a 95 % t interval. Then each
*breakage* — a bug of the kind that leaves the loss finite and the run green — is applied to the same
run (seed 0, as the CI test) by patching sslkit in the worker process:

- ``loss_sign``: the optimiser climbs the method's loss.
- ``identical_views``: both global crops of an image are the same tensor (the augmentation is lost).
- ``no_output_bn`` (SimCLR): the projector without its output BatchNorm (the bug found in issue 18).
- ``projector_no_bn`` (VICReg): the projector's hidden BatchNorms replaced by identities.
- ``decoder_no_positions`` (MAE): the decoder's positions are zero, so it cannot tell the hidden patches apart.
- ``loss_on_visible`` (MAE): the loss is taken on the patches the encoder saw, not the hidden ones.
- ``no_centering`` (DINOv2): the teacher's DINO/iBOT centres stay at zero.
- ``ema_swapped`` (DINOv2): ``ema_update_(student, teacher)``: the student is pulled to a teacher that never moves.
- ``stale_teacher_eval`` (DINOv2): the kNN monitor and the export read a copy of the teacher taken at init.
- ``ema_swapped`` (BYOL): as for DINOv2, the online network is pulled to a target that never moves.
- ``target_bn_eval`` (BYOL): the target's BatchNorms normalise with their initial running statistics (the bug
  found while adding BYOL: Lightning restored the target's eval mode).

A breakage is *caught* when one of the CI test's checks fails for it: the kNN margin below
``THRESHOLDS``, MAE's held-out masked-patch loss above ``MAE_MAX_HELDOUT_LOSS``, DINOv2's teacher
entropy below ``DINOV2_MIN_TEACHER_ENTROPY``, BYOL's final loss below ``BYOL_MIN_FINAL_LOSS``
(``tests/learning/test_learning_outcomes.py``). ``--rescore`` re-applies changed checks to a saved ``--json``. Writes ``benchmarks/results/learning_outcomes.json``.

    OMP_NUM_THREADS=1 python benchmarks/learning_outcomes.py --seeds 0,1,2,3,4 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from learning_budgets import METHODS, learning_run_args, steps  # noqa: E402

BREAKAGES = {
    "simclr": ("loss_sign", "identical_views", "no_output_bn"),
    "vicreg": ("loss_sign", "identical_views", "projector_no_bn"),
    "mae": ("loss_sign", "decoder_no_positions", "loss_on_visible"),
    "dinov2": ("loss_sign", "identical_views", "no_centering", "ema_swapped", "stale_teacher_eval"),
    "byol": ("loss_sign", "identical_views", "ema_swapped", "target_bn_eval"),
}

METHOD_CLASS = {"simclr": "sslkit.methods.simclr.SimCLR", "vicreg": "sslkit.methods.vicreg.VICReg",
                "mae": "sslkit.methods.mae.MAE", "dinov2": "sslkit.methods.dinov2.DINOv2",
                "byol": "sslkit.methods.byol.BYOL"}


def _class(path: str):
    module, name = path.rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


@contextlib.contextmanager
def breakage(method: str, name: str | None):
    """Patch sslkit so that ``method`` trains with the bug ``name`` (None: unchanged). Yields config changes."""
    if name is None:
        yield {}
        return
    stack = contextlib.ExitStack()
    changes: dict = {}
    cls = _class(METHOD_CLASS[method])
    if name == "loss_sign":
        forward = cls.forward

        def negated(self, *args, **kwargs):
            out = dict(forward(self, *args, **kwargs))
            out["loss"] = -out["loss"]
            return out

        stack.enter_context(mock.patch.object(cls, "forward", negated))
    elif name == "identical_views":
        from sslkit.data.augment import MultiCropAugmentation

        views = MultiCropAugmentation.global_views
        stack.enter_context(mock.patch.object(
            MultiCropAugmentation, "global_views", lambda self, image: [views(self, image)[0]] * len(self.groups[0].blur_p)))
    elif name == "no_output_bn":
        changes["simclr.projector_output_bn"] = "false"
    elif name == "projector_no_bn":
        import torch.nn as nn

        stack.enter_context(mock.patch("sslkit.nn.heads.nn.BatchNorm1d", lambda *a, **k: nn.Identity()))
    elif name == "decoder_no_positions":
        import torch

        stack.enter_context(mock.patch("sslkit.nn.mae_decoder.sincos_positions_2d",
                                       lambda h, w, d: torch.zeros(h * w, d)))
    elif name == "loss_on_visible":
        import sslkit.methods.mae as mae

        loss = mae.masked_patch_mse
        stack.enter_context(mock.patch.object(mae, "masked_patch_mse",
                                              lambda pred, target, masks, norm_pix: loss(pred, target, ~masks, norm_pix)))
    elif name == "no_centering":
        import sslkit.methods.dinov2 as dinov2

        stack.enter_context(mock.patch.object(dinov2, "update_center", lambda center, logits, momentum: center))
    elif name == "ema_swapped":
        module = __import__(cls.__module__, fromlist=["ema_update_"])
        ema = module.ema_update_
        stack.enter_context(mock.patch.object(module, "ema_update_", lambda teacher, student, m: ema(student, teacher, m)))
    elif name == "target_bn_eval":
        import sslkit.methods.byol as byol

        stack.enter_context(mock.patch.object(byol, "batchnorm_train", lambda module, mode: module.train(False)))
    elif name == "stale_teacher_eval":
        init = cls.__init__

        def keep_initial_teacher(self, *args, **kwargs):
            init(self, *args, **kwargs)
            # Outside the module tree: the optimiser, the EMA and the checkpoints never see it.
            object.__setattr__(self, "_stale_backbone", copy.deepcopy(self.teacher["backbone"]))

        stack.enter_context(mock.patch.object(cls, "__init__", keep_initial_teacher))
        stack.enter_context(mock.patch.object(cls, "eval_backbone", property(lambda self: self._stale_backbone)))
    else:
        raise ValueError(f"unknown breakage {name!r} for {method}")
    with stack:
        yield changes


def run_one(job: tuple[str, int, str | None, str]) -> dict:
    """One pretraining run (in a worker process, one thread): kNN of the trained and the random-init ViT."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from sslkit.cli import main

    method, seed, name, precision = (*job, "32-true")[:4]  # (method, seed, breakage[, precision])
    with tempfile.TemporaryDirectory() as tmp, breakage(method, name) as changes:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        code = main(learning_run_args(method, out, seed, {**changes, "trainer.precision": precision}))
        wall = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"{method} seed {seed} breakage {name}: sslkit pretrain exited with {code}")
        report = json.loads((out / "report.json").read_text())
        entropy = last_logged(out / "metrics.jsonl", "train/teacher_entropy")
    knn = report["knn_top1"]
    recon = report.get("heldout_reconstruction_loss", {})
    return {"method": method, "seed": seed, "breakage": name, "pretrained": 100 * knn["pretrained"],
            "random_init": 100 * knn["random_init"], "margin": 100 * (knn["pretrained"] - knn["random_init"]),
            "final_loss": report["final_loss"], "wall_s": wall,
            "reconstruction_gain": recon["random_init"] - recon["pretrained"] if recon else None,
            "reconstruction": recon or None, "teacher_entropy": entropy}


def last_logged(metrics: Path, key: str) -> float | None:
    """The last value of ``key`` in a run's metrics.jsonl (None if never logged)."""
    values = [row[key] for row in map(json.loads, metrics.read_text().splitlines()) if key in row]
    return values[-1] if values else None


def t_interval(values: list[float]) -> tuple[float, float]:
    """95 % Student-t interval of the mean (the claims' helper, benchmarks/claims.py)."""
    from claims import paired

    low, high = paired(values, 0.0, None)["ci95"]
    return low, high


def markdown(record: dict) -> str:
    """The two RESULTS.md tables: per-seed margins with the 95 % interval, and the breakage matrix."""
    lines = ["| method | kNN margin per seed (points) | mean [95 % CI] | min | threshold | method's own check, per seed |",
             "|---|---|---:|---:|---:|---|"]
    for m, s in record["summary"].items():
        own = (f"held-out loss {' / '.join(f'{v:.3f}' for v in s['heldout_reconstruction_loss'])} (max 0.75)"
               if s.get("heldout_reconstruction_loss") else
               f"teacher entropy {' / '.join(f'{v:.2f}' for v in s['teacher_entropy'])} (min 6.4)"
               if s.get("teacher_entropy") else
               f"final loss {' / '.join(f'{v:.2f}' for v in s['final_loss'])} (min 1.0)" if m == "byol" else "—")
        lines.append(f"| {m} | {' / '.join(f'{v:+.1f}' for v in s['margin'])} | {s['margin_mean']:+.1f} "
                     f"[{s['margin_ci95'][0]:+.1f}, {s['margin_ci95'][1]:+.1f}] | {s['margin_min']:+.1f} | "
                     f"{s['threshold']:g} | {own} |")
    lines += ["", "| method | breakage | kNN margin | other check | caught by |", "|---|---|---:|---|---|"]
    for m, s in record["summary"].items():
        for b, v in s["breakages"].items():
            other = (f"held-out loss {v['heldout_reconstruction_loss']:.3f}" if v.get("heldout_reconstruction_loss") is not None
                     else f"teacher entropy {v['teacher_entropy']:.2f}" if v.get("teacher_entropy") is not None
                     else f"final loss {v['final_loss']:.2f}" if m == "byol" else "—")
            lines.append(f"| {m} | `{b}` | {v['margin']:+.1f} | {other} | "
                         f"{', '.join(v['caught_by']) if v['caught_by'] else '**not caught**'} |")
    return "\n".join(lines)


def summarise(rows: list[dict], methods: list[str]) -> dict:
    """Per method: the clean seeds' margins with their interval, and which of the CI test's checks each
    breakage fails (the test's thresholds, read from tests/learning/test_learning_outcomes.py)."""
    sys.path.insert(0, str(ROOT / "tests" / "learning"))
    from test_learning_outcomes import (BYOL_MIN_FINAL_LOSS, DINOV2_MIN_TEACHER_ENTROPY, MAE_MAX_HELDOUT_LOSS,
                                        THRESHOLDS)

    def caught(r: dict) -> list[str]:
        """Which of the CI test's checks fail for this run (empty: the test passes)."""
        failed = []
        if r["margin"] < THRESHOLDS[r["method"]]:
            failed.append("knn_margin")
        if r["reconstruction"] is not None and r["reconstruction"]["pretrained"] > MAE_MAX_HELDOUT_LOSS:
            failed.append("heldout_reconstruction_loss")
        if r["teacher_entropy"] is not None and r["teacher_entropy"] < DINOV2_MIN_TEACHER_ENTROPY:
            failed.append("teacher_entropy")
        if r["method"] == "byol" and r["final_loss"] < BYOL_MIN_FINAL_LOSS:
            failed.append("final_loss")
        return failed

    summary = {}
    for m in methods:
        clean = sorted((r for r in rows if r["method"] == m and r["breakage"] is None), key=lambda r: r["seed"])
        margins = [r["margin"] for r in clean]
        low, high = t_interval(margins)
        summary[m] = {
            "seeds": [r["seed"] for r in clean], "pretrained": [r["pretrained"] for r in clean],
            "random_init": [r["random_init"] for r in clean], "margin": margins,
            "margin_mean": statistics.fmean(margins), "margin_sd": statistics.stdev(margins) if len(margins) > 1 else None,
            "margin_ci95": [low, high], "margin_min": min(margins), "threshold": THRESHOLDS[m],
            "heldout_reconstruction_loss": [r["reconstruction"]["pretrained"] for r in clean] if m == "mae" else None,
            "teacher_entropy": [r["teacher_entropy"] for r in clean] if m == "dinov2" else None,
            "final_loss": [r["final_loss"] for r in clean],
            "clean_runs_failing_the_test": [r["seed"] for r in clean if caught(r)],
            "wall_s": [r["wall_s"] for r in clean],
            "breakages": {r["breakage"]: {"pretrained": r["pretrained"], "random_init": r["random_init"],
                                          "margin": r["margin"], "final_loss": r["final_loss"],
                                          "heldout_reconstruction_loss": (r["reconstruction"] or {}).get("pretrained"),
                                          "teacher_entropy": r["teacher_entropy"], "caught_by": caught(r)}
                          for r in rows if r["method"] == m and r["breakage"] is not None},
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--no-breakages", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", default="32-true", help="trainer.precision of every run (e.g. bf16-mixed)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "learning_outcomes.json"))
    parser.add_argument("--markdown", action="store_true", help="print the tables of an existing --json and stop")
    parser.add_argument("--rescore", action="store_true",
                        help="re-apply the CI test's current checks to the runs of an existing --json, rewrite it, stop")
    args = parser.parse_args()
    if args.rescore:
        record = json.loads(Path(args.json).read_text())
        record["summary"] = summarise(record["rows"], list(record["summary"]))
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.markdown or args.rescore:
        print(markdown(json.loads(Path(args.json).read_text())))
        return
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(m, s, None, args.precision) for m in methods for s in seeds]
    if not args.no_breakages:
        jobs += [(m, 0, b, args.precision) for m in methods for b in BREAKAGES[m]]
    load_before = os.getloadavg()[0]
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        rows = []
        for row in pool.imap_unordered(run_one, jobs):
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            rows.append(row)
    summary = summarise(rows, methods)
    record = {"settings": {"steps": {m: steps(m) for m in methods}, "data": "digits, 16 px", "backbone": "ViT 2 blocks, width 64, patch 4",
                           "batch_size": 64, "knn": {"k": 20, "temperature": 0.07}, "seeds": seeds,
                           "precision": args.precision,
                           "breakage_seed": 0, "threads_per_run": int(os.environ.get("OMP_NUM_THREADS", "1")),
                           "workers": args.workers,
                           "command": "OMP_NUM_THREADS=1 python benchmarks/learning_outcomes.py " + " ".join(sys.argv[1:]),
                           "date": datetime.date.today().isoformat()},
              "load_before": load_before, "load_after": os.getloadavg()[0], "summary": summary,
              "rows": sorted(rows, key=lambda r: (r["method"], r["breakage"] or "", r["seed"]))}
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(record))
    for m, s in summary.items():
        print(f"{m}: margin {s['margin_mean']:.1f} (95 % CI {s['margin_ci95'][0]:.1f}..{s['margin_ci95'][1]:.1f}, "
              f"min {s['margin_min']:.1f}); " + ", ".join(f"{b} {v['margin']:+.1f} caught by {v['caught_by'] or 'nothing'}"
                        for b, v in s["breakages"].items()))


if __name__ == "__main__":
    main()
