"""DINOv2 step throughput of sslkit, lightly 1.6 and stable-pretraining 0.1.8, each at its own defaults (issue 22.1).

This is the headline peer speed comparison (it replaces ``benchmarks/vs_stable_pretraining.py``, which ran
every side at sslkit's head width and counted the teacher forward in "bare"). Needs the peer venv
(``make bench-throughput`` builds ``.venv-peers`` with ``lightly==1.6.*`` and ``stable-pretraining==0.1.8``
next to sslkit and runs this script there); a peer that is not importable is skipped with one sentence.

What is the same on every side: the backbone (a ViT of 12 blocks, width 192, 3 heads, patch 4, 32 px, no
LayerScale, no drop-path: ``recipes/dinov2-tiny.yaml`` with ``model.depth=12``, built under seed 0; the peers
get a plain timm ``VisionTransformer`` loaded with exactly these weights), the crops (2 global crops of 32 px
+ 6 local crops of 16 px, synthetic, pre-built once: data loading is not timed), the batch (64 images), the
number of prototypes K = 4096 (every side's default differs: sslkit's tiny recipe 2048, its ViT-S recipe
65 536, lightly's ``DINOv2ProjectionHead``/``DINOLoss`` 65 536, stable-pretraining's ``methods.DINOv2``
65 536 for CLS and 8192 for patches), fp32, one thread, and the schedule values of one mid-run step (lr,
weight decay, EMA momentum < 1 so every EMA runs, teacher temperature).

What is each library's own (``DEFAULTS`` lists it with where it comes from):

sslkit
    The engine's training step (``pretrain_throughput.FullStep``) at ``recipes/dinov2-tiny.yaml``'s heads:
    one head 192 → 512 → 512 → 256 → K shared by CLS and masked patches (run once on their
    concatenation), block masks on half the global crops (10–50 % of the patches), softmax centering,
    KoLeo 0.1, clipping at 3.0 per sub-module, AdamW over layer-decay groups (``foreach``), foreach EMA.
sslkit-h2048
    The same step with the head width of sslkit's ViT-S recipe and of both peers (hidden 2048): separates
    "sslkit has a narrower default head" from "sslkit's step is cheaper at equal head".
lightly
    lightly 1.6's DINOv2 as its ``examples/pytorch/dinov2.py`` writes it: the backbone wrapped in
    ``MaskedVisionTransformerTIMM`` (``antialias=False``, ``pos_embed_initialization="skip"`` as the example;
    ``weight_initialization="skip"`` so the weights stay identical), ``DINOv2ProjectionHead`` at its class
    defaults (hidden 2048, bottleneck 256; the example's default ``ibot_separate_head=False``: one head,
    called separately on teacher CLS, teacher masked tokens, student global CLS, student masked tokens,
    student local CLS), ``random_block_mask`` at its defaults (half the crops, 10–50 %), ``DINOLoss`` +
    ``IBOTPatchLoss`` (softmax centering) + 0.1 ``KoLeoLoss``, torch's default ``AdamW`` (no clipping in the
    example), ``update_momentum``.
stable-pretraining
    ``stable_pretraining.methods.DINOv2.forward`` as shipped (class defaults: hidden 2048, bottleneck 256,
    uniform random masks at 0.3 on every global crop, separate CLS and patch heads with the patch head run
    on *every* patch token of the global crops, Sinkhorn-Knopp targets on both, no KoLeo), torch's default
    ``AdamW`` over the module's parameters (its ``Module`` default; Lightning clips nothing by default), and
    ``TeacherStudentWrapper.update_teacher`` on its three wrappers (what its teacher-student callback does).
bare
    Defined once, for every ratio: the student backbone's forward on the masked global crops and the local
    crops, backward of a trivial sum of their CLS and masked-patch tokens, AdamW over the backbone's engine
    param groups (``pretrain_throughput.BackboneStep(with_teacher=False)``). No teacher, no head.
bare+teacher
    ``bare`` plus the teacher backbone's forward on the global crops (no grad): the backbone work every
    DINOv2 step has.

Measurements. Timing: all sides in one process, steps interleaved round-robin (``pretrain_throughput.
time_steps``) after warm-up rounds, each round feeding every side the same batch; per side the median step
time and images/s = B / median; per round the throughput ratio to bare (bare's time / the side's time of the
same round) and the paired ratio of sslkit to each peer (the peer's time / sslkit's time; > 1: sslkit faster),
each summarised as median and interquartile range over rounds. FLOPs: one step under
``torch.utils.flop_counter.FlopCounterMode`` per side; the FLOP ratio is bare's FLOPs / the side's (comparable
with the throughput ratio: equal when a side's extra work runs at bare's FLOP rate). Peak memory: each side
in its own process (this script re-invoked with ``--memory-child``), peak RSS above the RSS just before the
model is built (``pretrain_throughput.reset_peak_rss``), over 2 steps. The load average is recorded before and
after (the machine may be shared).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/peer_throughput.py [--quick] [--sides a,b,...]
        [--rounds N] [--warmup N] [--no-memory] [--json benchmarks/results/throughput.json [--append]]

``--quick``: B = 4, 2 blocks, K = 256, 1 warm-up + 2 rounds, a smoke run of seconds. ``--append`` adds this run
to the JSON's runs when the settings are the same (a repeat), instead of replacing the file.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_parity as pp  # noqa: E402  (the peers' version pins are defined there once)
import pretrain_throughput as pt  # noqa: E402  (the sslkit step, bare step, timing and memory tools)

from sslkit.atomic_files import write_json_atomic  # noqa: E402
from sslkit.config import load_config  # noqa: E402
from sslkit.engine.builders import build_backbone  # noqa: E402
from sslkit.json_values import json_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/dinov2-tiny.yaml"
SIDES = ("bare", "bare+teacher", "sslkit", "sslkit-h2048", "lightly", "stable-pretraining")
SSLKIT_SIDES = ("sslkit", "sslkit-h2048")
PEERS = {"lightly": ("lightly", pp.LIGHTLY_SERIES), "stable-pretraining": ("stable_pretraining", pp.SP_VERSION)}
MEMORY_STEPS = 2
os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # stable-pretraining's INFO banner is noise here

# Which defaults each side runs at, and where they come from (the RESULTS table is built from this).
DEFAULTS = {
    "sslkit": {
        "head": "192→512→512→256→K, one head shared by CLS and masked patches (run once on both)",
        "masking": "block masks, half the global crops, 10–50 % of patches", "targets": "softmax centering",
        "koleo": 0.1, "optimiser": "AdamW foreach, layer-decay groups, clip 3.0 per sub-module",
        "source": "recipes/dinov2-tiny.yaml (head_hidden_dim 512), DINOv2Config defaults; K 2048 → 4096"},
    "sslkit-h2048": {
        "head": "192→2048→2048→256→K, shared", "masking": "as sslkit", "targets": "as sslkit", "koleo": 0.1,
        "optimiser": "as sslkit",
        "source": "as sslkit with dinov2.head_hidden_dim=2048 (recipes/dinov2-vits16.yaml's and the peers' width)"},
    "lightly": {
        "head": "192→2048→2048→256→K (DINOv2ProjectionHead class defaults), shared, called once per token set",
        "masking": "random_block_mask defaults: half the global crops, 10–50 % of patches",
        "targets": "softmax centering (DINOLoss, IBOTPatchLoss)", "koleo": 0.1,
        "optimiser": "torch AdamW defaults over all parameters, no clipping, update_momentum EMA",
        "source": "lightly 1.6 examples/pytorch/dinov2.py; output_dim 65536 → 4096"},
    "stable-pretraining": {
        "head": "two heads 192→2048→2048→256→K (methods.DINOv2 defaults); patch head on every patch token",
        "masking": "uniform random 30 % of patches on every global crop", "targets": "Sinkhorn-Knopp on both",
        "koleo": 0.0, "optimiser": "torch AdamW defaults (spt.Module default), no clipping, "
                                   "TeacherStudentWrapper EMA",
        "source": "stable-pretraining 0.1.8 methods/dinov2.py; n_cls_prototypes 65536 / n_patch_prototypes "
                  "8192 → 4096"},
    "bare": {"source": "pretrain_throughput.BackboneStep(with_teacher=False)"},
    "bare+teacher": {"source": "pretrain_throughput.BackboneStep(with_teacher=True)"},
}


@dataclass(frozen=True)
class Settings:
    batch_size: int = 64
    depth: int = 12
    head_out_dim: int = 4096
    warmup: int = 2
    rounds: int = 20


QUICK = Settings(batch_size=4, depth=2, head_out_dim=256, warmup=1, rounds=2)


# ------------------------------------------------------------------------------------------- setup


def side_config(settings: Settings, side: str):
    """``recipes/dinov2-tiny.yaml`` at this backbone, batch and K (the head width of ``sslkit-h2048``)."""
    overrides = [f"optim.batch_size={settings.batch_size}", "trainer.precision=32-true",
                 f"model.depth={settings.depth}", f"dinov2.head_out_dim={settings.head_out_dim}"]
    if side == "sslkit-h2048":
        overrides.append("dinov2.head_hidden_dim=2048")
    return load_config(ROOT / RECIPE, overrides)


def schedule_values(cfg) -> dict:
    """lr, wd, EMA momentum and teacher temperature of the mid-run step ``FullStep`` starts at."""
    schedules = pt.make_schedules(cfg)
    values = schedules.at(schedules.lr_warmup_iters)
    return {key: float(values[key]) for key in ("lr", "wd", "momentum", "teacher_temp")}


def peer_problem(side: str) -> str | None:
    """One sentence when a peer side cannot run in this interpreter, else None."""
    if side not in PEERS:
        return None
    module, series = PEERS[side]
    if importlib.util.find_spec(module) is None:
        return (f"{side} skipped: {module} is not importable in {sys.executable} (`make bench-throughput` builds "
                f".venv-peers with lightly=={pp.LIGHTLY_SERIES}.* and stable-pretraining=={pp.SP_VERSION}).")
    return None


def timm_twin(vit) -> torch.nn.Module:
    """A plain timm ``VisionTransformer`` holding exactly the weights of sslkit's ``vit`` (what the peers'
    examples build their backbone from); sslkit's unused ``mask_token`` is the only parameter left out."""
    from timm.models.vision_transformer import VisionTransformer

    c = vit.config
    twin = VisionTransformer(img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans, num_classes=0,
                             embed_dim=c.embed_dim, depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio,
                             qkv_bias=c.qkv_bias, init_values=c.layerscale_init or None, dynamic_img_size=True)
    twin.load_state_dict({k: v for k, v in vit.state_dict().items() if k != "mask_token"})
    return twin.train()


def seeded_backbone(cfg):
    """The backbone every side starts from: built under seed 0, as ``FullStep`` and ``BackboneStep`` build it."""
    torch.manual_seed(0)
    return build_backbone(cfg, pt.IN_CHANS).train()


class LightlyStep:
    """lightly 1.6's DINOv2 step as ``examples/pytorch/dinov2.py`` writes it (see the module docstring)."""

    def __init__(self, cfg, values: dict):
        from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
        from lightly.models.modules import DINOv2ProjectionHead, MaskedVisionTransformerTIMM
        from lightly.models.utils import random_block_mask, update_momentum

        self.random_block_mask, self.update_momentum = random_block_mask, update_momentum
        self.student_backbone = MaskedVisionTransformerTIMM(
            vit=timm_twin(seeded_backbone(cfg)), weight_initialization="skip", antialias=False,
            pos_embed_initialization="skip")
        self.teacher_backbone = copy.deepcopy(self.student_backbone)
        k, width = cfg.dinov2.head_out_dim, self.student_backbone.vit.embed_dim
        self.student_head = DINOv2ProjectionHead(input_dim=width, output_dim=k)
        # weight_norm modules cannot be deep-copied: the example builds the teacher head with the constructor.
        self.teacher_head = DINOv2ProjectionHead(input_dim=width, output_dim=k)
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        for module in (self.teacher_backbone, self.teacher_head):
            module.requires_grad_(False)
            module.eval()
        self.dino, self.ibot, self.koleo = DINOLoss(output_dim=k), IBOTPatchLoss(output_dim=k), KoLeoLoss()
        params = [*self.student_backbone.parameters(), *self.student_head.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=values["lr"], weight_decay=values["wd"])
        self.n_global, self.n_local = cfg.crops.n_global, cfg.crops.n_local
        self.momentum, self.teacher_temp = values["momentum"], values["teacher_temp"]

    def __call__(self, batch: dict) -> None:
        g, loc = batch["global_crops"], batch["local_crops"]
        h, w = self.teacher_backbone.vit.patch_embed.grid_size
        block_mask = self.random_block_mask(size=(g.shape[0], h, w))
        mask = g.new_zeros((g.shape[0], self.teacher_backbone.sequence_length), dtype=torch.bool)
        mask[:, 1:] = block_mask.flatten(start_dim=1)
        with torch.no_grad():
            t = self.teacher_backbone.encode(g)
            t_cls_out = self.teacher_head(t[:, 0])
            t_masked_out = self.teacher_head(t[mask])
        s = self.student_backbone.encode(g, mask=mask)
        s_g_cls = s[:, 0]
        s_g_cls_out = self.student_head(s_g_cls)
        s_masked_out = self.student_head(s[mask])
        s_l_cls_out = self.student_head(self.student_backbone.encode(loc)[:, 0])
        s_cls_out = torch.cat([s_g_cls_out, s_l_cls_out])
        loss = (self.dino(teacher_out=t_cls_out.chunk(self.n_global),
                          student_out=s_cls_out.chunk(self.n_global + self.n_local), teacher_temp=self.teacher_temp)
                + self.ibot(teacher_out=t_masked_out, student_out=s_masked_out, mask=block_mask,
                            teacher_temp=self.teacher_temp)
                + 0.1 * sum(self.koleo(chunk) for chunk in s_g_cls.chunk(self.n_global)))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.update_momentum(self.student_backbone, self.teacher_backbone, m=self.momentum)
        self.update_momentum(self.student_head, self.teacher_head, m=self.momentum)


class StablePretrainingStep:
    """stable-pretraining 0.1.8's ``methods.DINOv2`` step as shipped (see the module docstring)."""

    def __init__(self, cfg, values: dict):
        import stable_pretraining as spt
        from stable_pretraining.backbone import TeacherStudentWrapper

        k = cfg.dinov2.head_out_dim
        self.method = spt.methods.DINOv2(encoder_name=timm_twin(seeded_backbone(cfg)), n_cls_prototypes=k,
                                         n_patch_prototypes=k, temperature_teacher=values["teacher_temp"],
                                         ema_decay_start=values["momentum"], image_size=cfg.crops.global_size)
        self.method.train()
        self.wrappers = [m for m in self.method.modules() if isinstance(m, TeacherStudentWrapper)]
        # What spt.Module.configure_optimizers hands its default optimiser (partial(torch.optim.AdamW)).
        params = self.method.parameters(with_callbacks=False)
        self.optimizer = torch.optim.AdamW(params, lr=values["lr"], weight_decay=values["wd"])
        self.n_global, self.n_local = cfg.crops.n_global, cfg.crops.n_local

    def __call__(self, batch: dict) -> None:
        out = self.method(global_views=list(batch["global_crops"].chunk(self.n_global)),
                          local_views=list(batch["local_crops"].chunk(self.n_local)))
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        for wrapper in self.wrappers:
            wrapper.update_teacher()


def make_side(side: str, settings: Settings):
    cfg = side_config(settings, side)
    if side in SSLKIT_SIDES:
        return pt.FullStep(cfg)
    if side in ("bare", "bare+teacher"):
        return pt.BackboneStep(cfg, with_teacher=(side == "bare+teacher"))
    values = schedule_values(cfg)
    return LightlyStep(cfg, values) if side == "lightly" else StablePretrainingStep(cfg, values)


# ------------------------------------------------------------------------------------ measurements


def memory_child(side: str, settings: Settings) -> dict:
    """In a fresh process: peak RSS (MiB) above the RSS before the model is built, over ``MEMORY_STEPS`` steps."""
    if side in PEERS:
        importlib.import_module(PEERS[side][0])  # imported before the baseline, like torch and sslkit
    batch = pt.make_batches(side_config(settings, "bare"), 1)[0]
    base = pt.proc_status_kib("VmRSS")
    if not pt.reset_peak_rss():
        return {"peak_rss_mib": None}
    step = make_side(side, settings)
    for _ in range(MEMORY_STEPS):
        step(batch)
    return {"peak_rss_mib": (pt.proc_status_kib("VmHWM") - base) / 1024}


def measure_memory(side: str, settings: Settings) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", side, "--settings-json", json.dumps(asdict(settings))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def versions() -> dict:
    import timm

    found = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
    for side, (module, _) in PEERS.items():
        if importlib.util.find_spec(module) is not None:
            found[side] = str(getattr(importlib.import_module(module), "__version__", "?"))
    try:
        found["sslkit_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        found["sslkit_commit"] = None
    return found


def run(sides: list[str], settings: Settings, memory: bool) -> dict:
    """Time, count and (optionally) measure every side; returns one run's record."""
    skipped = {side: problem for side in sides if (problem := peer_problem(side))}
    for sentence in skipped.values():
        print(sentence, flush=True)
    active = [side for side in sides if side not in skipped]
    if "bare" not in active:
        raise SystemExit("peer_throughput: every ratio is to 'bare'; include it in --sides.")
    load_before = os.getloadavg()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    batches = pt.make_batches(side_config(settings, "bare"), n_batches=max(2, min(settings.rounds, 4)))
    steps = {side: make_side(side, settings) for side in active}
    t0 = time.perf_counter()
    times = pt.time_steps(steps, batches, settings.warmup, settings.rounds)
    print(f"timed {len(active)} sides × {settings.warmup}+{settings.rounds} rounds in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    flops = {side: pt.count_flops(step, batches[0]) for side, step in steps.items()}
    del steps
    rss = {side: measure_memory(side, settings)["peak_rss_mib"] if memory else None for side in active}
    return {"started": started, "threads": torch.get_num_threads(), "warmup": settings.warmup,
            "rounds": settings.rounds, "load_before": list(load_before),
            "load_after": list(os.getloadavg()), "skipped": skipped,
            **summarise(times, flops, rss, settings.batch_size)}


# -------------------------------------------------------------------------------------- report


def report(result: dict) -> str:
    """The run's tables in Markdown (RESULTS.md takes them as they are)."""
    r = result["runs"][-1]
    sides = r["sides"]
    rows = []
    for side, s in sides.items():
        ratio = s["ratio_to_bare"]
        rows.append([side, f"{s['median_step_s'] * 1e3:.0f}", f"{s['images_per_s']:.1f}",
                     f"{ratio['median']:.2f} [{ratio['q1']:.2f}–{ratio['q3']:.2f}]", f"{s['gflop']:.1f}",
                     f"{s['flop_ratio_to_bare']:.2f}",
                     "—" if s["peak_rss_mib"] is None else f"{s['peak_rss_mib']:.0f}",
                     "—" if s["rss_ratio_to_bare"] is None else f"{s['rss_ratio_to_bare']:.2f}"])
    lines = [f"load average {r['load_before'][0]:.2f} before / {r['load_after'][0]:.2f} after; "
             f"{r['threads']} thread(s); {r['warmup']} warm-up + {r['rounds']} timed rounds", "",
             pt.fmt_table(["side", "median ms", "images/s", "throughput / bare, per round: median [IQR]",
                           "GFLOP/step", "FLOP ratio (bare / side)", "peak RSS MiB", "RSS / bare"], rows)]
    if r["paired"]:
        lines += ["", pt.fmt_table(["pair (per round: peer time / sslkit time)", "median", "IQR"],
                                   [[pair, f"{p['median']:.2f}×", f"{p['q1']:.2f}–{p['q3']:.2f}"]
                                    for pair, p in r["paired"].items()])]
    return "\n".join(lines)


def write_result(path: Path, result: dict, append: bool) -> dict:
    """Write ``result``; with ``append``, keep the earlier runs of a file with the same settings (a repeat, which
    may time another number of rounds: each run records its own)."""
    if append and path.exists():
        old = json.loads(path.read_text())
        if comparable(old.get("settings", {})) == comparable(result["settings"]):
            result = {**result, "runs": old["runs"] + result["runs"]}
        else:
            print(f"{path} holds other settings; it is replaced, not appended to.", flush=True)
    write_json_atomic(path, json_ready(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: B=4, 2 blocks, K=256, 1+2 rounds")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {','.join(SIDES)}")
    parser.add_argument("--rounds", type=int, help="timed rounds after warm-up (default 20; --quick 2)")
    parser.add_argument("--warmup", type=int, help="warm-up rounds (default 2; --quick 1)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-side peak-RSS processes")
    parser.add_argument("--json", type=Path, help="write the result to this JSON file")
    parser.add_argument("--append", action="store_true", help="add this run to --json's runs (same settings)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--settings-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    if args.memory_child:
        settings = Settings(**json.loads(args.settings_json))
        print(json.dumps(memory_child(args.memory_child, settings)))
        return 0
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        parser.error(f"unknown side(s) {unknown}; choose from {', '.join(SIDES)}")
    settings = QUICK if args.quick else Settings()
    settings = replace(settings, **{k: v for k, v in (("rounds", args.rounds), ("warmup", args.warmup)) if v})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, B={settings.batch_size}, "
          f"depth {settings.depth}, K={settings.head_out_dim}, sides {', '.join(sides)}", flush=True)
    result = {"benchmark": "benchmarks/peer_throughput.py", "settings": comparable(asdict(settings)),
              "crops": "2×32 px + 6×16 px", "backbone": "ViT width 192, 3 heads, patch 4, 32 px, no LayerScale",
              "precision": "fp32", "defaults": {s: DEFAULTS[s] for s in sides}, "versions": versions(),
              "runs": [run(sides, settings, memory=not args.no_memory)]}
    if args.json:
        result = write_result(args.json, result, args.append)
    print("\n" + report(result))
    return 0


# ---------------------------------------------------------------------------------- pure helpers


def comparable(settings: dict) -> dict:
    """The settings two runs must share to be repeats of each other (not their warm-up and round counts)."""
    return {k: v for k, v in settings.items() if k not in ("warmup", "rounds")}


def quartiles(values: list[float]) -> dict:
    """Median and the first and third quartiles (inclusive method; one value is its own quartiles)."""
    if len(values) == 1:
        return {"median": values[0], "q1": values[0], "q3": values[0]}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3}


def per_round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Round by round ``numerator[i] / denominator[i]`` (step times of two sides measured back to back)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} and {len(denominator)} rounds cannot be paired.")
    return [n / d for n, d in zip(numerator, denominator)]


def summarise(times: dict[str, list[float]], flops: dict[str, int], rss: dict[str, float | None],
              batch_size: int) -> dict:
    """Per-side figures and the sslkit-to-peer paired ratios from the raw measurements."""
    bare = times["bare"]
    sides = {}
    for side, t in times.items():
        ratios = per_round_ratios(bare, t)  # throughput relative to bare: bare's time / the side's
        median = statistics.median(t)
        sides[side] = {
            "step_s_all": t, "median_step_s": median, "images_per_s": batch_size / median,
            "ratio_to_bare": {"per_round": ratios, **quartiles(ratios)},
            "gflop": flops[side] / 1e9, "flop_ratio_to_bare": flops["bare"] / flops[side],
            "peak_rss_mib": rss[side],
            "rss_ratio_to_bare": rss[side] / rss["bare"] if rss[side] is not None and rss["bare"] else None,
        }
    paired = {}
    for ours in (s for s in SSLKIT_SIDES if s in times):
        for peer in (p for p in PEERS if p in times):
            ratios = per_round_ratios(times[peer], times[ours])  # > 1: sslkit's step is the faster
            paired[f"{ours}/{peer}"] = {"per_round": ratios, **quartiles(ratios)}
    return {"sides": sides, "paired": paired}


if __name__ == "__main__":
    sys.exit(main())
