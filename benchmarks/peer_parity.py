"""Accuracy parity with peer libraries: sslkit against lightly 1.6 and stable-pretraining 0.1.8 (issue 18, item 2).

Needs the peer venv (``make bench-peers`` builds ``.venv-peers`` with ``lightly==1.6.*`` and
``stable-pretraining==0.1.8`` next to sslkit; pip resolves both in one venv); the test environment has
neither. Exit code 2 if a peer named by ``--peers`` is not importable.

For every method a peer ships (both ship DINOv2, SimCLR, VICReg and MAE), each seed trains once per
library, on the same things:

- backbone: sslkit's ViT (``sslkit.nn.vit.build_vit``, a timm ``VisionTransformer`` subclass) with
  the tiny recipe's model settings (4 blocks, width 192, 3 heads, patch 4, no LayerScale), built
  under the same seed, so every side starts from identical backbone weights. lightly's side calls
  it through its plain interfaces: ``backbone(x)`` for the CLS token, ``forward_features(x, masks)``
  for iBOT's masked tokens and ``forward_visible(x, masks)`` for MAE's visible-only encoder;
  lightly's ``MaskedVisionTransformerTIMM`` wrapper is not used (it re-initialises the weights
  and resamples the position table differently for the 16-px local crops). stable-pretraining's
  method classes take the module as their encoder and reach its timm internals themselves
  (``patch_embed``, ``pos_embed``/``_pos_embed``, ``blocks``, ``norm``), as they do for any timm ViT;
- crops: sslkit's views of the recipe (``build_views``: ``MultiCropAugmentation`` + collate),
  one seeded stream (``AugmentedStream``), so every side sees bit-identical batches;
- batch (64), steps (``--steps``), optimiser (AdamW with the recipe's betas), the recipe's peak lr
  (``base_lr`` × sqrt(B/1024)), lr warm-up + cosine, weight-decay schedule, layer-wise lr decay
  and patch-embed lr multiplier; for DINOv2 also the recipe's EMA-momentum and teacher-temperature
  schedules, last-layer freeze and clipping at 3.0;
- evaluator: the CLS features (DINOv2: the EMA teacher's backbone, both sides) of the 1437 train
  images (bank) and 360 test images (queries) under sslkit's ``EvalTransform``; sslkit's kNN
  (``knn_protocol``, k = 20, T = 0.07, softmax-weighted votes) and sslkit's linear probe
  (``linear_probe``, a 5 lr × 2 wd sweep selected on a 10 % validation split of train).

What is lightly's own on lightly's side: the heads, the losses, the masking utilities, the EMA
update and the schedule functions, at lightly's defaults (class defaults, or lightly's example for
a small backbone where a class default is sized for a 2048-d ResNet-50 and would not fit the CPU
budget). What is stable-pretraining's own on its side: its shipped method classes
(``stable_pretraining.methods.SimCLR/VICReg/MAE/DINOv2``) with their forward passes, heads, losses, masking
and ``TeacherStudentWrapper`` EMA, at their class defaults or the package's own benchmark script for a
small backbone, and its default weight-decay rule (every parameter decayed); the schedule values are the
recipe's through sslkit's schedule functions. ``NOTES`` lists, per peer and method, every difference.
The table's target compares sslkit with the best peer (highest kNN mean) per method.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/peer_parity.py [--methods dinov2,simclr,vicreg,mae]
        [--peers lightly,sp] [--seeds 0,1,2] [--steps 66] [--data digits] [--json FILE] [--resume]
        [--append-md FILE]

``--resume`` keeps the runs already in ``--json`` that have the same settings (a stopped benchmark
continues where it was; a peer's runs are kept when its settings for that method are unchanged, so a
new peer trains only its own arms; runs of peers not named by ``--peers`` are kept too, so each peer
can run in its own venv against one JSON). ``--append-md`` appends the result section to a Markdown file.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from sslkit.config import load_config
from sslkit.data.augment import EvalTransform
from sslkit.data.sources import TransformedDataset, open_data
from sslkit.data.stream import AugmentedStream, StreamSampler
from sslkit.engine.builders import build_backbone, build_method, build_schedules, build_views
from sslkit.engine.module import PretrainModule
from sslkit.engine.param_groups import dinov2_param_groups
from sslkit.engine.schedules import lr_peak_from_batch
from sslkit.eval.features import extract_features, raw_pixels
from sslkit.eval.knn import KNNConfig, knn_protocol
from sslkit.eval.linear import LinearProbeConfig, linear_probe

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dinov2", "simclr", "vicreg", "mae")
PEERS = ("lightly", "sp")  # "sp" = stable-pretraining
PEER_NAMES = {"lightly": "lightly", "sp": "stable-pretraining"}
SIDES = ("sslkit",) + PEERS
LIGHTLY_SERIES = "1.6"
SP_VERSION = "0.1.8"
KNN = KNNConfig(ks=(20,), temperature=0.07)
# A small sweep: the probe's cost is negligible next to pretraining, but 39 heads are not needed here.
PROBE = LinearProbeConfig(lrs=(1e-3, 3e-3, 1e-2, 3e-2, 0.1), weight_decays=(0.0, 1e-4), epochs=10, min_steps=500)
TARGET_POINTS = 1.0  # sslkit >= best peer - 1 point kNN, on the mean over seeds

# lightly's side, per method: what it is built from and where it differs from sslkit's recipe.
LIGHTLY_SETTINGS = {
    "dinov2": {"head_hidden_dim": 2048, "head_bottleneck_dim": 256, "head_out_dim": 2048, "koleo_weight": 0.1},
    "simclr": {"head_hidden_dim": 2048, "head_out_dim": 128, "temperature": 0.5},
    "vicreg": {"head_hidden_dim": 2048, "head_out_dim": 2048, "head_layers": 2},
    "mae": {"decoder_dim": 512, "decoder_depth": 1, "decoder_num_heads": 16, "mask_ratio": 0.75,
            "norm_pix_loss": False},
}
LIGHTLY_NOTES = {
    "dinov2": (
        "lightly: `DINOv2ProjectionHead(192, 2048, 256, 2048)` (class defaults hidden 2048 / bottleneck 256; "
        "output 2048 instead of the default 65 536, which would cost ~5 s a step here; 2048 is also what "
        "lightly's DINO example uses for a small backbone), one head shared by CLS and iBOT (lightly's default), "
        "`DINOLoss` + `IBOTPatchLoss` (softmax centring, momentum 0.9) + 0.1 `KoLeoLoss`, "
        "`random_block_mask` (half of the crops, 10–50 % of the patches), `update_momentum`; one "
        "gradient clip at 3.0 over all student parameters (lightly's benchmark: Lightning's clip) and "
        "weight decay off for biases and norms (`get_weight_decay_parameters`). sslkit: `DINOHead(192, 512, 256, "
        "2048)`, the same losses, sslkit's own block masks, clipping per sub-module (backbone, head) at 3.0, "
        "no weight decay on biases, norms and 1-D tensors. Same: 2×32 px + 6×16 px crops, student τ 0.1, "
        "teacher τ 0.04, EMA 0.95→0.995, lr/wd schedules, layer decay 0.9, patch-embed lr ×0.2."),
    "simclr": (
        "lightly: `SimCLRProjectionHead(192, 2048, 128)` (class defaults: BatchNorm after both Linears, "
        "the output BN with a learned shift), each view through the head separately (lightly's example), "
        "`NTXentLoss()` at its default τ = 0.5. sslkit: `ProjectionMLP(192, 512, 128)` with the scale-only "
        "output BN, both views in one head call, NT-Xent at the recipe's τ = 0.2."),
    "vicreg": (
        "lightly: `VICRegProjectionHead(192, 2048, 2048, num_layers=2)` (lightly's VICReg example; the class "
        "default 8192-8192-8192 is 135 M parameters, 75× the backbone), `VICRegLoss()` (25/25/1). sslkit: "
        "`ProjectionMLP(192, 512, 512, 3 layers)`, its VICReg loss at 25/25/1."),
    "mae": (
        "lightly: `MaskedVisionTransformerDecoderTIMM` (1 block, width 512, 16 heads; lightly's MAE example) "
        "with its `decoder_embed`/prediction Linears, `random_token_mask` at 0.75, MSE on raw pixels "
        "(lightly's default: no per-patch normalisation). sslkit: `MAEDecoder` (2 blocks, width 128, 4 heads), "
        "its own random masks at 0.75, per-patch normalised pixel targets (`norm_pix_loss`). Both encoders "
        "run the visible patches only (`ViT.forward_visible`)."),
}

# stable-pretraining's side: its shipped method classes (``stable_pretraining.methods``) with their class
# defaults, except where a default is sized for a ResNet-50 / ViT-B and would not fit the CPU budget (then the
# package's own benchmark script for a small backbone, or the same reduction as lightly's side; NOTES says which).
SP_SETTINGS = {
    "dinov2": {"class": "methods.DINOv2", "projector_hidden_dim": 2048, "projector_bottleneck_dim": 256,
               "n_cls_prototypes": 2048, "n_patch_prototypes": 2048, "mask_ratio": 0.3, "patch_loss_weight": 1.0,
               "temperature_student": 0.1, "weight_decay_on_all": True},
    "simclr": {"class": "methods.SimCLR", "projector_dims": [2048, 2048, 256], "temperature": 0.5,
               "weight_decay_on_all": True},
    "vicreg": {"class": "methods.VICReg", "projector_dims": [2048, 2048, 2048], "sim_coeff": 25.0,
               "std_coeff": 25.0, "cov_coeff": 1.0, "weight_decay_on_all": True},
    "mae": {"class": "methods.MAE", "decoder_embed_dim": 512, "decoder_depth": 1, "decoder_num_heads": 16,
            "mask_ratio": 0.75, "block_size": 1, "norm_pix_loss": True, "loss_type": "mse",
            "weight_decay_on_all": True},
}
_SP_COMMON = (
    " Optimiser as every side (AdamW, the recipe's lr/wd schedules through sslkit's schedule functions, layer decay "
    "and patch-embed multiplier), with stable-pretraining's default weight-decay rule: `create_optimizer` "
    "decays every parameter unless `exclude_bias_norm` is set (its global default is off), so biases, norms, "
    "`pos_embed` and `cls_token` are decayed too.")
SP_NOTES = {
    "dinov2": (
        "stable-pretraining: `spt.methods.DINOv2` as shipped (its `forward`, its `_encode` through the ViT's "
        "`patch_embed`/`_pos_embed`/`blocks`/`norm`, its own `mask_token`): separate CLS and patch heads "
        "(`_ibot_head`: Linear-GELU-Linear-GELU-Linear(256)-L2Norm-prototypes, no BatchNorm, plain prototype "
        "Linear without weight norm), the patch head run on every patch token, Sinkhorn-Knopp targets on CLS and "
        "patches (`DINOv2Loss`), uniform random masks at its default ratio 0.3 on every global crop, no KoLeo, "
        "`TeacherStudentWrapper` EMA. Class defaults kept: hidden 2048, bottleneck 256, mask 0.3, patch weight 1, "
        "student τ 0.1; prototypes 2048 / 2048 instead of 65 536 / 8192 (the same cost reduction as lightly's "
        "side; the package's `imagenet100/dinov2-vit-tiny.py` uses 65 536). Set per step from the recipe, as "
        "lightly's side: teacher τ (its default is a fixed 0.07; here 0.04 warm-up schedule), EMA coefficient "
        "(its default 0.996→1; here 0.95→0.995), last-layer freeze on both prototype layers, one clip at 3.0 over "
        "all student parameters (Lightning's `gradient_clip_val`). The constructor's dimension probe feeds a "
        "3-channel 32 px zero image: a shim maps it to the ViT's 1 channel during construction only." + _SP_COMMON),
    "simclr": (
        "stable-pretraining: `spt.methods.SimCLR` as shipped with its class defaults: projector `(2048, 2048, "
        "256)` (Linear without bias, BN, ReLU; the last BN `BatchNorm1dNoBias`), each view through backbone and "
        "projector separately, `NTXEntLoss` at τ = 0.5. The constructor's dimension probe (a 3-channel 224 px "
        "zero image) goes through a shim that maps it to the ViT's 1 channel during construction only."
        + _SP_COMMON),
    "vicreg": (
        "stable-pretraining: `spt.methods.VICReg` as shipped (each view separately, `VICRegLoss` 25/25/1) with "
        "`projector_dims=(2048, 2048, 2048)` from the package's `cifar10/vicreg-resnet18.py` (the class default "
        "8192-8192-8192 is sized for ResNet-50: 135 M parameters here); the class's projector: Linear-BN-ReLU "
        "twice, last Linear without bias." + _SP_COMMON),
    "mae": (
        "stable-pretraining: `spt.methods.MAE` as shipped with its class defaults: `MaskedEncoder` (its own token "
        "path through the ViT's `patch_embed`/`pos_embed`/`blocks`/`norm`, visible patches only), "
        "`PatchMasking(0.75, block_size=1)` (uniform random), `MAEDecoder` at its width 512 / 16 heads / fixed "
        "2-D sin-cos positions, predicting every position (loss on the masked ones), `MAELoss` (MSE on per-patch "
        "normalised pixels, masked patches only). One deviation: decoder depth 1 instead of the class default 8 "
        "(the ViT-B size, also in the package's `imagenet10/mae-vit-base.py`), which measured 12 s a step here "
        "(~13 min a run, 10× lightly's); 1 block is what lightly's side runs (lightly's MAE example), so both "
        "peers' decoders have the same size." + _SP_COMMON),
}
PEER_SETTINGS = {"lightly": LIGHTLY_SETTINGS, "sp": SP_SETTINGS}
NOTES = {"lightly": LIGHTLY_NOTES, "sp": SP_NOTES}


# ----------------------------------------------------------------------------------------- setup


def import_peer(peer: str):
    """Import a peer library or exit 2 with one sentence (the peers live in ``.venv-peers`` only)."""
    module, series = {"lightly": ("lightly", LIGHTLY_SERIES), "sp": ("stable_pretraining", SP_VERSION)}[peer]
    if peer == "sp":
        os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # its INFO banner and wrapper warnings are noise here
    if importlib.util.find_spec(module) is None:
        print(f"{module} is not importable in {sys.executable}; run `make bench-peers`, which builds .venv-peers "
              f"with lightly=={LIGHTLY_SERIES}.* and stable-pretraining=={SP_VERSION} and runs this benchmark there "
              f"(or pass --peers with the peers this venv has).")
        sys.exit(2)
    lib = importlib.import_module(module)
    version = str(getattr(lib, "__version__", "?"))
    if not (version == series or version.startswith(series + ".")):
        print(f"warning: {module} {version} is installed; this benchmark was written for {series}"
              f"{'.x' if peer == 'lightly' else ''}.", flush=True)
    return lib


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)  # lightly's random_block_mask draws from Python's generator
    np.random.seed(seed)


def load_method_config(method: str, data: str, seed: int, steps: int, batch_size: int, train_size: int,
                       extra_overrides: tuple[str, ...] = ()):
    """The method's tiny recipe on ``data``, with its epoch count set so the run is ``steps`` steps long
    (``extra_overrides``: recipe overrides for an ablation)."""
    iters_per_epoch = max(1, train_size // batch_size)  # what the engine uses (optim.iters_per_epoch: null)
    epochs = (steps - 1e-6) / iters_per_epoch  # ceil(epochs * iters_per_epoch) == steps
    overrides = [f"data.source={data}", f"trainer.seed={seed}", f"optim.batch_size={batch_size}",
                 f"optim.epochs={epochs!r}", "trainer.precision=32-true", "monitor.baselines=false",
                 *extra_overrides]
    cfg = load_config(ROOT / f"recipes/{method}-tiny.yaml", overrides)
    # A smoke run shorter than a recipe's warm-up (e.g. --steps 4): cap each epoch-based warm-up at half the run,
    # as the engine does for restarted stages. At the default 66 steps nothing is capped.
    cap = (steps / 2) / iters_per_epoch
    capped = [f"{key}={cap!r}" for key, value in (("optim.warmup_epochs", cfg.optim.warmup_epochs),
                                                  ("dinov2.warmup_teacher_temp_epochs",
                                                   cfg.dinov2.warmup_teacher_temp_epochs),
                                                  ("optim.freeze_last_layer_epochs", cfg.optim.freeze_last_layer_epochs))
              if value * iters_per_epoch > steps]
    if capped:
        cfg = load_config(ROOT / f"recipes/{method}-tiny.yaml", overrides + capped)
    schedules = build_schedules(cfg, iters_per_epoch, batch_size)
    if schedules.total_iters != steps:
        raise RuntimeError(f"schedules span {schedules.total_iters} steps, expected {steps}")
    return cfg, schedules, iters_per_epoch


def make_loader(cfg, data, steps: int) -> DataLoader:
    """The seeded stream of the recipe's views: both sides iterate the same batches."""
    augmentation, collate = build_views(cfg, data.channels, data.mean, data.std)
    stream = AugmentedStream(data.train, augmentation, seed=cfg.trainer.seed)
    b = cfg.optim.batch_size
    return DataLoader(stream, batch_size=b, sampler=StreamSampler(b, steps), collate_fn=collate, num_workers=0,
                      generator=torch.Generator().manual_seed(cfg.trainer.seed))


def check_finite(loss: torch.Tensor, side: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{side}: non-finite loss {loss.item()} at step {step}")


# ----------------------------------------------------------------------------------- sslkit side


def optimiser_step(optimizer, loss: torch.Tensor, side: str, step: int, losses: list[float],
                   clip_params=None, clip: float = 0.0) -> None:
    """One peer-side update: the finite check, backward, optional gradient clipping, step; the loss is logged."""
    check_finite(loss, side, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, clip)
    optimizer.step()
    losses.append(float(loss.detach()))


def train_sslkit(cfg, schedules, data, loader) -> tuple[nn.Module, list[float]]:
    """The engine's training step (engine/module.py ``training_step``) without Lightning's logging."""
    seed_all(cfg.trainer.seed)
    method = build_method(cfg, data.channels).train()
    groups = dinov2_param_groups(method.student, cfg.optim.layer_decay, cfg.optim.patch_embed_lr_mult)
    engine = PretrainModule(method, schedules, groups, clip_grad=cfg.optim.clip_grad, betas=cfg.optim.betas)
    optimizer = engine.configure_optimizers()
    losses = []
    for step, batch in enumerate(loader):
        values = schedules.at(step)
        engine._apply_schedules(optimizer, values)
        out = method(batch, **{name: values[name] for name in method.schedule_inputs})
        loss = out["loss"]
        check_finite(loss, "sslkit", step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.clip_grad and cfg.optim.clip_grad > 0:
            for module in method.student.values():  # per sub-module, as the engine
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.clip_grad)
        optimizer.step()
        method.update_teacher(values["momentum"])
        losses.append(float(loss.detach()))
    return method.eval_backbone, losses


# ---------------------------------------------------------------------------------- lightly side


class LightlySchedules:
    """The recipe's numbers through lightly's schedule functions (``lightly.utils.scheduler``)."""

    def __init__(self, cfg, iters_per_epoch: int, total: int):
        o, d = cfg.optim, cfg.dinov2
        self.cfg, self.total = cfg, total
        self.lr_peak = lr_peak_from_batch(o.base_lr, o.batch_size)
        self.warmup = int(round(o.warmup_epochs * iters_per_epoch))
        self.temp_warmup = int(round(d.warmup_teacher_temp_epochs * iters_per_epoch))
        self.freeze_last = int(round(o.freeze_last_layer_epochs * iters_per_epoch)) if cfg.method == "dinov2" else 0

    def at(self, step: int) -> dict:
        from lightly.utils.scheduler import cosine_schedule, cosine_warmup_schedule, linear_warmup_schedule

        o, d = self.cfg.optim, self.cfg.dinov2
        return {
            "lr": cosine_warmup_schedule(step, self.total, start_value=self.lr_peak, end_value=o.min_lr,
                                         warmup_steps=self.warmup, warmup_start_value=0.0),
            "wd": cosine_schedule(step, self.total, o.weight_decay, o.weight_decay_end),
            "momentum": cosine_schedule(step, self.total, o.momentum_teacher, o.momentum_teacher_end),
            "teacher_temp": linear_warmup_schedule(step, self.temp_warmup, d.warmup_teacher_temp, d.teacher_temp),
            "last_layer_lr_multiplier": 0.0 if step < self.freeze_last else 1.0,
        }


def peer_param_groups(modules: list[nn.Module], backbone, layer_decay: float, patch_embed_lr_mult: float,
                      no_decay_ids: set[int], last_layer_ids: set[int]):
    """AdamW groups for a peer: the peer's own weight-decay split (``no_decay_ids``), the recipe's layer-wise lr
    decay / patch-embed multiplier on the backbone, and the last-layer freeze on ``last_layer_ids``."""
    depth = len(backbone.blocks)
    groups: dict[tuple, dict] = {}
    seen: set[int] = set()
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr_mult = 1.0
            if module is backbone:
                lr_mult = layer_decay ** (depth + 1 - backbone.layer_id(name))
                if name.startswith("patch_embed"):
                    lr_mult *= patch_embed_lr_mult
            key = (lr_mult, 0.0 if id(param) in no_decay_ids else 1.0, id(param) in last_layer_ids)
            group = groups.setdefault(key, {"params": [], "lr_mult": key[0], "wd_mult": key[1], "last": key[2]})
            group["params"].append(param)
    return list(groups.values())


def lightly_param_groups(modules: list[nn.Module], backbone, layer_decay: float, patch_embed_lr_mult: float):
    """lightly's weight-decay split (``get_weight_decay_parameters``); lightly's DINOv2 benchmark also applies
    layer-wise lr decay. The last layer is what lightly names ``last_layer``."""
    from lightly.models.utils import get_weight_decay_parameters

    _, no_decay = get_weight_decay_parameters(modules)
    last = {id(p) for m in modules for n, p in m.named_parameters() if "last_layer" in n}
    return peer_param_groups(modules, backbone, layer_decay, patch_embed_lr_mult, {id(p) for p in no_decay}, last)


def apply_peer_values(optimizer, values: dict) -> None:
    for group in optimizer.param_groups:
        group["lr"] = values["lr"] * group["lr_mult"] * (values["last_layer_lr_multiplier"] if group["last"] else 1.0)
        group["weight_decay"] = values["wd"] * group["wd_mult"]


apply_lightly_values = apply_peer_values


def _student_optimizer(cfg, modules, backbone):
    groups = lightly_param_groups(modules, backbone, cfg.optim.layer_decay, cfg.optim.patch_embed_lr_mult)
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(cfg.optim.betas), foreach=True)


def train_lightly(cfg, iters_per_epoch: int, steps: int, data, loader) -> tuple[nn.Module, list[float]]:
    method, s = cfg.method, LIGHTLY_SETTINGS[cfg.method]
    seed_all(cfg.trainer.seed)
    backbone = build_backbone(cfg, data.channels).train()  # the same weights as sslkit's under this seed
    if method != "dinov2":
        backbone.mask_token.requires_grad_(False)  # as sslkit: only iBOT uses the mask token
    width, patch = backbone.embed_dim, backbone.patch_size
    schedules = LightlySchedules(cfg, iters_per_epoch, steps)
    losses: list[float] = []

    if method == "dinov2":
        from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
        from lightly.models.modules import DINOv2ProjectionHead
        from lightly.models.utils import random_block_mask, update_momentum

        def make_head() -> nn.Module:
            return DINOv2ProjectionHead(width, s["head_hidden_dim"], s["head_bottleneck_dim"], s["head_out_dim"])

        head = make_head()
        # The head's weight_norm cannot be deep-copied: like lightly's DINOv2 example, build the teacher's
        # head with the constructor, then start it from the student's weights (as DINOv2 and sslkit do).
        teacher_backbone, teacher_head = copy.deepcopy(backbone), make_head()
        teacher_head.load_state_dict(head.state_dict())
        for module in (teacher_backbone, teacher_head):
            module.requires_grad_(False)
            module.eval()
        k = s["head_out_dim"]
        dino_criterion, ibot_criterion, koleo_criterion = DINOLoss(output_dim=k), IBOTPatchLoss(output_dim=k), KoLeoLoss()
        optimizer = _student_optimizer(cfg, [backbone, head], backbone)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        n_global, n_local = cfg.crops.n_global, cfg.crops.n_local
        for step, batch in enumerate(loader):
            values = schedules.at(step)
            apply_lightly_values(optimizer, values)
            g, loc = batch["global_crops"], batch["local_crops"]
            grid = g.shape[-1] // patch
            block_mask = random_block_mask(size=(g.shape[0], grid, grid))  # (n_g*B, h, w)
            mask = block_mask.flatten(1)
            with torch.no_grad():
                t = teacher_backbone.forward_features(g)
                t_cls_out = teacher_head(t["cls"])
                t_masked_out = teacher_head(t["patch"][mask])
            s_g = backbone.forward_features(g, masks=mask)
            s_g_cls_out = head(s_g["cls"])
            s_masked_out = head(s_g["patch"][mask])
            s_l_cls_out = head(backbone.forward_features(loc)["cls"])
            s_cls_out = torch.cat([s_g_cls_out, s_l_cls_out])
            tau = values["teacher_temp"]
            loss_dino = dino_criterion(teacher_out=list(t_cls_out.chunk(n_global)),
                                       student_out=list(s_cls_out.chunk(n_global + n_local)), teacher_temp=tau)
            loss_ibot = ibot_criterion(teacher_out=t_masked_out, student_out=s_masked_out, mask=block_mask,
                                       teacher_temp=tau)
            loss_koleo = sum(koleo_criterion(chunk) for chunk in s_g["cls"].chunk(n_global))
            loss = loss_dino + loss_ibot + s["koleo_weight"] * loss_koleo
            optimiser_step(optimizer, loss, "lightly", step, losses, params, cfg.optim.clip_grad)
            update_momentum(backbone, teacher_backbone, m=values["momentum"])
            update_momentum(head, teacher_head, m=values["momentum"])
        return teacher_backbone, losses

    if method in ("simclr", "vicreg"):
        if method == "simclr":
            from lightly.loss import NTXentLoss
            from lightly.models.modules import SimCLRProjectionHead

            head = SimCLRProjectionHead(width, s["head_hidden_dim"], s["head_out_dim"])
            criterion = NTXentLoss(temperature=s["temperature"])
        else:
            from lightly.loss import VICRegLoss
            from lightly.models.modules.heads import VICRegProjectionHead

            head = VICRegProjectionHead(width, s["head_hidden_dim"], s["head_out_dim"], num_layers=s["head_layers"])
            criterion = VICRegLoss()
        optimizer = _student_optimizer(cfg, [backbone, head], backbone)
        for step, batch in enumerate(loader):
            apply_lightly_values(optimizer, schedules.at(step))
            x0, x1 = batch["global_crops"].chunk(2)
            z0, z1 = head(backbone(x0)), head(backbone(x1))  # one call per view, as lightly's examples
            optimiser_step(optimizer, criterion(z0, z1), "lightly", step, losses)
        return backbone, losses

    # MAE
    from lightly.models import utils
    from lightly.models.modules import MaskedVisionTransformerDecoderTIMM
    from lightly.models.modules.masked_vision_transformer_timm import init_weights

    num_patches = (cfg.crops.global_size // patch) ** 2
    dim = s["decoder_dim"]
    decoder_embed = nn.Linear(width, dim)
    decoder = MaskedVisionTransformerDecoderTIMM(num_patches=num_patches, embed_dim=dim, depth=s["decoder_depth"],
                                                 num_heads=s["decoder_num_heads"],
                                                 num_prefix_tokens=backbone.num_prefix_tokens)
    prediction_head = nn.Linear(dim, patch**2 * data.channels)
    decoder_embed.apply(init_weights)
    prediction_head.apply(init_weights)
    criterion = nn.MSELoss()
    optimizer = _student_optimizer(cfg, [backbone, decoder_embed, decoder, prediction_head], backbone)
    seq = num_patches + backbone.num_prefix_tokens
    for step, batch in enumerate(loader):
        apply_lightly_values(optimizer, schedules.at(step))
        images = batch["global_crops"]
        b = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(size=(b, seq), mask_ratio=s["mask_ratio"])
        # sslkit's ViT returns the visible tokens in position order: keep the index in the same order.
        idx_keep = idx_keep.sort(dim=1).values
        hidden = torch.ones(b, num_patches, dtype=torch.bool)
        hidden.scatter_(1, idx_keep[:, 1:] - 1, False)  # idx 0 is the class token (never masked)
        encoded = backbone.forward_visible(images, hidden)["tokens"]  # (b, 1 + visible, D)
        x_decode = decoder_embed(encoded)
        x_masked = x_decode.new_zeros(b, seq, dim)
        x_masked = utils.set_at_index(x_masked, idx_keep, x_decode)
        x_decoded = decoder(x_masked, idx_mask=idx_mask)
        pred = prediction_head(utils.get_at_index(x_decoded, idx_mask))
        target = utils.get_at_index(utils.patchify(images, patch), idx_mask - 1)
        optimiser_step(optimizer, criterion(pred, target), "lightly", step, losses)
    return backbone, losses


# ---------------------------------------------------------------------------- stable-pretraining side


class _ProbeShim:
    """During a stable-pretraining method's constructor only: its embedding-size probe feeds a 3-channel zero
    image (224 px, or ``image_size``) through ``backbone(x)`` / ``backbone.forward_features(x)`` and expects a
    tensor; the ViT here has 1 input channel and returns a dict from ``forward_features``. The shim slices the
    probe to the ViT's channels and returns timm's token tensor; it is removed before training."""

    def __init__(self, backbone):
        self.backbone = backbone

    def __enter__(self):
        from timm.models.vision_transformer import VisionTransformer

        b = self.backbone
        c = b.patch_embed.proj.in_channels
        b.forward = lambda x, *a, **k: type(b).forward(b, x[:, :c])
        b.forward_features = lambda x, *a, **k: VisionTransformer.forward_features(b, x[:, :c])
        return b

    def __exit__(self, *exc):
        del self.backbone.forward, self.backbone.forward_features
        return False

    @staticmethod
    def remove_copies(model: nn.Module) -> None:
        """A teacher deep-copied inside the constructor carries the shim too: drop it there as well."""
        for module in model.modules():
            for attr in ("forward", "forward_features"):
                if attr in module.__dict__:
                    del module.__dict__[attr]


def train_sp(cfg, schedules, data, loader, settings: dict | None = None) -> tuple[nn.Module, list[float]]:
    """stable-pretraining's shipped method classes on sslkit's ViT (see ``SP_SETTINGS`` / ``SP_NOTES``);
    ``settings`` replaces the method's ``SP_SETTINGS`` entry (for an ablation)."""
    import stable_pretraining as spt

    method = cfg.method
    s = SP_SETTINGS[method] if settings is None else settings
    seed_all(cfg.trainer.seed)
    backbone = build_backbone(cfg, data.channels).train()  # the same weights as sslkit's under this seed
    backbone.mask_token.requires_grad_(False)  # sp's DINOv2 has its own mask token; the others use none
    losses: list[float] = []
    o = cfg.optim

    def optimizer_for(modules, last_layer_ids=frozenset()):
        # stable-pretraining's default (create_optimizer without exclude_bias_norm): every parameter is decayed.
        groups = peer_param_groups(modules, backbone, o.layer_decay, o.patch_embed_lr_mult, set(),
                                   set(last_layer_ids))
        return torch.optim.AdamW(groups, lr=0.0, betas=tuple(o.betas), foreach=True)

    def step_update(optimizer, loss, step, clip_params=None):
        optimiser_step(optimizer, loss, "sp", step, losses, clip_params, o.clip_grad)

    if method in ("simclr", "vicreg"):
        with _ProbeShim(backbone):
            if method == "simclr":
                model = spt.methods.SimCLR(encoder_name=backbone, projector_dims=tuple(s["projector_dims"]),
                                           temperature=s["temperature"])
            else:
                model = spt.methods.VICReg(encoder_name=backbone, projector_dims=tuple(s["projector_dims"]),
                                           sim_coeff=s["sim_coeff"], std_coeff=s["std_coeff"],
                                           cov_coeff=s["cov_coeff"])
        _ProbeShim.remove_copies(model)
        model.train()
        optimizer = optimizer_for([backbone, model.projector])
        for step, batch in enumerate(loader):
            apply_peer_values(optimizer, schedules.at(step))
            x0, x1 = batch["global_crops"].chunk(2)
            step_update(optimizer, model(x0, x1).loss, step)
        return backbone, losses

    if method == "mae":
        model = spt.methods.MAE(backbone, decoder_embed_dim=s["decoder_embed_dim"], decoder_depth=s["decoder_depth"],
                                decoder_num_heads=s["decoder_num_heads"], mask_ratio=s["mask_ratio"],
                                block_size=s["block_size"], norm_pix_loss=s["norm_pix_loss"], loss_type=s["loss_type"])
        if model.encoder.vit is not backbone:
            raise RuntimeError("stable-pretraining's MAE did not keep the given backbone")
        model.train()
        optimizer = optimizer_for([backbone, model.decoder])
        for step, batch in enumerate(loader):
            apply_peer_values(optimizer, schedules.at(step))
            step_update(optimizer, model(batch["global_crops"]).loss, step)
        return backbone, losses

    # DINOv2
    v0 = schedules.at(0)
    with _ProbeShim(backbone):
        model = spt.methods.DINOv2(encoder_name=backbone, projector_hidden_dim=s["projector_hidden_dim"],
                                   projector_bottleneck_dim=s["projector_bottleneck_dim"],
                                   n_cls_prototypes=s["n_cls_prototypes"], n_patch_prototypes=s["n_patch_prototypes"],
                                   mask_ratio=s["mask_ratio"], patch_loss_weight=s["patch_loss_weight"],
                                   temperature_student=s["temperature_student"],
                                   temperature_teacher=v0["teacher_temp"], ema_decay_start=v0["momentum"],
                                   ema_decay_end=1.0, image_size=cfg.crops.global_size)
    _ProbeShim.remove_copies(model)
    if model.backbone.student is not backbone:
        raise RuntimeError("stable-pretraining's DINOv2 did not keep the given backbone")
    model.train()
    wrappers = (model.backbone, model.cls_head, model.patch_head)
    holder = nn.Module()
    holder.mask_token = model.mask_token
    heads = [model.cls_head.student, model.patch_head.student]
    last = {id(h[-1].weight) for h in heads}  # the prototype Linears (_ibot_head's last layer)
    optimizer = optimizer_for([backbone, *heads, holder], last)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    n_global, n_local = cfg.crops.n_global, cfg.crops.n_local
    for step, batch in enumerate(loader):
        values = schedules.at(step)
        apply_peer_values(optimizer, values)
        model.temperature_teacher = values["teacher_temp"]
        out = model(global_views=list(batch["global_crops"].chunk(n_global)),
                    local_views=list(batch["local_crops"].chunk(n_local)))
        step_update(optimizer, out.loss, step, clip_params=params)
        for wrapper in wrappers:
            wrapper.ema_coefficient.fill_(values["momentum"])
            wrapper.update_teacher()
    return model.backbone.teacher, losses


# ------------------------------------------------------------------------------------ evaluation


def evaluate(model, data, image_size: int, pooling: str = "cls") -> dict:
    """kNN (k=20, T=0.07) and linear-probe top-1 on CLS features (``pooling="mean"``: the mean of the patch
    tokens, as sslkit's kNN monitor with ``monitor.knn_pooling=mean``); train split = bank, test = queries."""
    from sslkit.engine.callbacks import knn_pooled

    t0 = time.perf_counter()
    model = knn_pooled(model, pooling)
    tf = EvalTransform(image_size, data.mean, data.std)
    train_x, train_y = extract_features(model, TransformedDataset(data.bank, tf))
    test_x, test_y = extract_features(model, TransformedDataset(data.queries, tf))
    knn = knn_protocol(train_x, train_y, test_x, test_y, KNN, num_classes=data.num_classes).accuracy[20]
    probe = linear_probe(train_x, train_y, test_x, test_y, PROBE, num_classes=data.num_classes)
    return {"knn": knn, "linear": probe.test_accuracy, "linear_best": probe.best, "eval_s": time.perf_counter() - t0}


def baselines(data, cfg, seeds: list[int]) -> dict:
    """Raw pixels and a random-init backbone under the same evaluator (context for the table)."""
    tf = EvalTransform(cfg.crops.global_size, data.mean, data.std)
    out = {"raw_pixels": {}, "random_init": {}}
    train_x, train_y = extract_features(raw_pixels, TransformedDataset(data.bank, tf))
    test_x, test_y = extract_features(raw_pixels, TransformedDataset(data.queries, tf))
    out["raw_pixels"]["knn"] = knn_protocol(train_x, train_y, test_x, test_y, KNN).accuracy[20]
    knns = []
    for seed in seeds:
        seed_all(seed)
        knns.append(evaluate(build_backbone(cfg, data.channels).eval(), data, cfg.crops.global_size)["knn"])
    out["random_init"] = {"knn_per_seed": knns, "knn_mean": statistics.mean(knns)}
    return out


# ---------------------------------------------------------------------------------------- report


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def summarise(res: dict) -> dict:
    """Per method: per-seed values of every side, means, paired differences to each peer and to the best peer
    (the peer with the highest kNN mean over all of sslkit's seeds), verdict."""
    out = {}
    peers = res.get("peers", list(PEERS))
    for method in res["methods"]:
        runs = {side: {r["seed"]: r for r in res["runs"] if r["method"] == method and r["side"] == side}
                for side in SIDES}
        seeds = sorted(s for s, r in runs["sslkit"].items() if not r.get("failed"))
        if not seeds:
            continue
        entry = {"seeds": seeds, "sides": {}}
        for side in SIDES:
            if side != "sslkit" and side not in peers:
                continue
            if side != "sslkit" and method not in PEER_SETTINGS[side]:
                entry["sides"][side] = {"shipped": False}
                continue
            ok = [s for s in seeds if s in runs[side] and not runs[side][s].get("failed")]
            e = {"shipped": True, "seeds": ok,
                 "failed": {s: runs[side][s]["failed"] for s in seeds if s in runs[side] and runs[side][s].get("failed")},
                 "complete": ok == seeds}
            for key in ("knn", "linear", "train_s"):
                e[key] = [runs[side][s][key] for s in ok]
                e[f"{key}_mean"] = _mean(e[key])
            if side != "sslkit":
                e["knn_diff"] = [runs["sslkit"][s]["knn"] - runs[side][s]["knn"] for s in ok]
                e["knn_diff_mean"] = _mean(e["knn_diff"])
            entry["sides"][side] = e
        complete = [p for p in peers if entry["sides"].get(p, {}).get("complete")]
        entry["best_peer"] = max(complete, key=lambda p: entry["sides"][p]["knn_mean"]) if complete else None
        entry["sslkit_knn_mean"] = entry["sides"]["sslkit"]["knn_mean"]
        if entry["best_peer"]:
            best = entry["sides"][entry["best_peer"]]
            entry["best_peer_knn_mean"] = best["knn_mean"]
            entry["knn_diff"] = best["knn_diff"]
            entry["knn_diff_mean"] = best["knn_diff_mean"]
            entry["knn_diff_sd"] = statistics.stdev(best["knn_diff"]) if len(best["knn_diff"]) > 1 else None
            entry["target_met"] = entry["sslkit_knn_mean"] >= best["knn_mean"] - TARGET_POINTS / 100
        out[method] = entry
    return out


def _per_seed(values: list[float], fmt) -> str:
    return " / ".join(fmt(v) for v in values)


def report(res: dict) -> str:
    summary = summarise(res)
    c, v = res["settings"], res["versions"]
    peers = res.get("peers", list(PEERS))
    libs = ", ".join(f"{PEER_NAMES[p]} {v.get('lightly' if p == 'lightly' else 'stable_pretraining', '?')}"
                     for p in peers)
    earlier = "".join(f"; runs kept from `{h['command']}` ({h['date']}, load average {h['load_before']:.2f} before / "
                      f"{h['load_after']:.2f} after)" for h in res.get("earlier_invocations", []))
    lines = [f"`{c['command']}` ({c['date']}; torch {v['torch']}, {libs}, sslkit {v['sslkit']}; {c['threads']} "
             f"thread; load average {res['load_before']:.2f} before / {res['load_after']:.2f} after{earlier}). "
             f"Data `{c['data']}` ({c['n_train']} train / {c['n_test']} test, {c['image_size']} px); {c['steps']} "
             f"steps of batch {c['batch_size']} per run; seeds {', '.join(map(str, c['seeds']))}. kNN: k = 20, "
             f"T = 0.07 on the CLS features (DINOv2: EMA teacher); linear: sslkit's probe, 5 lr × 2 wd, selected on "
             f"a 10 % validation split. Wall time: pretraining only, one process, one thread, sides interleaved.", ""]
    rows = []
    for method, e in summary.items():
        for side in SIDES:
            if side not in e["sides"]:
                continue
            s = e["sides"][side]
            name = "sslkit" if side == "sslkit" else PEER_NAMES[side]
            if not s["shipped"]:
                rows.append(f"| {method} | {name} | — (not shipped) | — | — | — | — |")
                continue
            if not s["seeds"]:
                failed = "; ".join(f"seed {k}: {m}" for k, m in s["failed"].items()) or "not run"
                rows.append(f"| {method} | {name} | {failed} | — | — | — | — |")
                continue
            knn = _per_seed(s["knn"], pct) + ("" if s["complete"] else f" (seeds {', '.join(map(str, s['seeds']))})")
            if s["failed"]:
                knn += "; failed: " + "; ".join(f"seed {k}: {m}" for k, m in s["failed"].items())
            diff = "—" if side == "sslkit" else (f"{100 * s['knn_diff_mean']:+.1f} ("
                                                 f"{_per_seed(s['knn_diff'], lambda d: f'{100 * d:+.1f}')})")
            rows.append(f"| {method} | {name} | {knn} | **{pct(s['knn_mean'])}** | {pct(s['linear_mean'])} "
                        f"({_per_seed(s['linear'], pct)}) | {s['train_s_mean']:.0f} "
                        f"({_per_seed(s['train_s'], lambda t: f'{t:.0f}')}) | {diff} |")
    lines += ["| method | library | kNN % per seed | kNN mean | linear % mean (per seed) | train s mean (per seed) | "
              "sslkit − library, kNN paired mean (per seed) |",
              "|---|---|---|---:|---|---|---|"] + rows
    lines += ["", "| method | best peer (kNN mean) | sslkit kNN mean | sslkit − best peer, paired (per seed) | "
                  "target: sslkit ≥ best peer − 1 point |", "|---|---|---:|---|---|"]
    for method, e in summary.items():
        if not e["best_peer"]:
            lines.append(f"| {method} | — (no peer has every seed) | {pct(e['sslkit_knn_mean'])} | — | — |")
            continue
        lines.append(f"| {method} | {PEER_NAMES[e['best_peer']]} ({pct(e['best_peer_knn_mean'])}) | "
                     f"{pct(e['sslkit_knn_mean'])} | {100 * e['knn_diff_mean']:+.1f} "
                     f"({_per_seed(e['knn_diff'], lambda d: f'{100 * d:+.1f}')}) | "
                     f"{'met' if e['target_met'] else '**not met**'} |")
    b = res.get("baselines")
    if b:
        lines += ["", f"Same evaluator, no pretraining: raw pixels kNN {pct(b['raw_pixels']['knn'])} %, random-init "
                      f"ViT kNN {pct(b['random_init']['knn_mean'])} % (per seed "
                      f"{' / '.join(pct(v) for v in b['random_init']['knn_per_seed'])})."]
    lines += ["", "What differs between sslkit and each peer (everything else is shared, see the script's docstring):",
              ""]
    for m in summary:
        for peer in peers:
            if m in NOTES[peer]:
                lines.append(f"- **{m}, {PEER_NAMES[peer]}**: {NOTES[peer][m]}")
            else:
                lines.append(f"- **{m}, {PEER_NAMES[peer]}**: not shipped by {PEER_NAMES[peer]}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


def _shown_args(args: list[str]) -> list[str]:
    """The command-line arguments without ``--append-md FILE`` (where the text goes is not a setting)."""
    shown, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--append-md":
            skip = True
        elif not a.startswith("--append-md="):
            shown.append(a)
    return shown


def write_json(path: Path, res: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, path)


COMMON_SETTINGS = ("steps", "data", "batch_size", "image_size", "n_train", "n_test", "knn", "probe")
RECOMPUTED_KEYS = ("settings", "versions", "load_before", "load_after", "methods", "peers", "runs", "baselines",
                   "summary", "markdown", "earlier_invocations")


def _old_peer_settings(old_settings: dict) -> dict:
    """Per-peer settings of an earlier JSON (before stable-pretraining was added it had ``lightly_settings`` only)."""
    if "peer_settings" in old_settings:
        return old_settings["peer_settings"]
    return {"lightly": old_settings.get("lightly_settings", {})}


def _jsonable(settings: dict) -> dict:
    return json.loads(json.dumps(settings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="comma-separated peers to train: lightly, sp (stable-pretraining); default both")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--steps", type=int, default=66,
                        help="training steps per run (default 66: the tiny recipes' 3 epochs of digits at batch 64)")
    parser.add_argument("--data", default="digits", help="a labelled built-in dataset (default digits)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, help="write every per-seed value here (rewritten after each run)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in --json with the same settings (sslkit's runs when the shared "
                             "settings match, a peer's when its settings for that method match too)")
    parser.add_argument("--append-md", type=Path, help="append the result section to this Markdown file")
    args = parser.parse_args(argv)

    peers_to_run = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers_to_run) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    libs = {peer: import_peer(peer) for peer in peers_to_run}
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    import sslkit
    import timm

    data = open_data(args.data, image_size=32)
    if data.queries is None or not data.num_classes:
        parser.error(f"--data {args.data}: a labelled dataset with a test split is needed for the evaluator")
    peer_settings = _jsonable({peer: {m: PEER_SETTINGS[peer][m] for m in methods if m in PEER_SETTINGS[peer]}
                               for peer in PEERS})
    settings = {"methods": methods, "peers": peers_to_run, "seeds": seeds, "steps": args.steps, "data": args.data,
                "batch_size": args.batch_size, "threads": torch.get_num_threads(), "image_size": 32,
                "n_train": len(data.train), "n_test": len(data.queries), "knn": {"k": 20, "temperature": 0.07},
                "probe": {"lrs": list(PROBE.lrs), "weight_decays": list(PROBE.weight_decays), "epochs": PROBE.epochs,
                          "min_steps": PROBE.min_steps},
                "peer_settings": peer_settings,
                "command": "OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/peer_parity.py "
                           + " ".join(_shown_args(argv if argv is not None else sys.argv[1:])),
                "date": time.strftime("%Y-%m-%d")}
    versions = {"torch": torch.__version__, "timm": timm.__version__, "sslkit": getattr(sslkit, "__version__", "?"),
                "python": platform.python_version()}
    for peer, lib in libs.items():
        versions["lightly" if peer == "lightly" else "stable_pretraining"] = str(lib.__version__)
    runs: list[dict] = []
    extra: dict = {}
    earlier: list[dict] = []
    baselines_kept = None
    if args.resume and args.json and args.json.is_file():
        old = json.loads(args.json.read_text())
        os_ = old["settings"]
        if all(os_.get(k) == settings[k] for k in COMMON_SETTINGS):
            old_peer = _old_peer_settings(os_)

            def keep(r: dict) -> bool:
                if r["method"] not in methods or r["seed"] not in seeds:
                    return False
                if r["side"] == "sslkit":
                    return True
                return (r["side"] in PEERS and r["method"] in peer_settings[r["side"]]
                        and old_peer.get(r["side"], {}).get(r["method"]) == peer_settings[r["side"]][r["method"]])

            runs = [r for r in old["runs"] if keep(r)]
            for key in ("lightly", "stable_pretraining"):  # versions of the kept peer runs
                if key in old.get("versions", {}) and key not in versions:
                    versions[key] = old["versions"][key]
            earlier = old.get("earlier_invocations", []) + [
                {"command": os_["command"], "date": os_["date"], "load_before": old["load_before"],
                 "load_after": old.get("load_after", old["load_before"])}]
            if old.get("baselines") and os_.get("seeds") == seeds:
                baselines_kept = old["baselines"]
            print(f"resuming: {len(runs)} run(s) kept from {args.json}", flush=True)
        else:
            print(f"--resume: {args.json} has other shared settings; starting afresh", flush=True)
        extra = {k: v for k, v in old.items() if k not in RECOMPUTED_KEYS}  # e.g. the VICReg projector ablation
    peers_in_table = [p for p in PEERS if p in peers_to_run or any(r["side"] == p for r in runs)]
    res = {"settings": settings, "versions": versions, "load_before": os.getloadavg()[0], "methods": methods,
           "peers": peers_in_table, "earlier_invocations": earlier, "runs": runs, **extra}
    print(f"torch {torch.__version__}, " + ", ".join(f"{PEER_NAMES[p]} {libs[p].__version__}" for p in libs)
          + f", {torch.get_num_threads()} thread(s), load average {res['load_before']:.2f}; {data.description}",
          flush=True)

    done = {(r["method"], r["side"], r["seed"]) for r in runs}
    for method in methods:
        sides = ["sslkit"] + [p for p in peers_to_run if method in PEER_SETTINGS[p]]
        for i, seed in enumerate(seeds):
            cfg, schedules, ipe = load_method_config(method, args.data, seed, args.steps, args.batch_size,
                                                     len(data.train))
            # Rotate which side goes first, so a drift in the machine's load does not favour one side.
            k = i % len(sides)
            for side in sides[k:] + sides[:k]:
                if (method, side, seed) in done:
                    continue
                loader = make_loader(cfg, data, args.steps)
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                run = {"method": method, "side": side, "seed": seed, "load_at_start": load,
                       "date": time.strftime("%Y-%m-%d %H:%M"),
                       "version": versions["sslkit"] if side == "sslkit" else str(libs[side].__version__)}
                try:
                    if side == "sslkit":
                        model, losses = train_sslkit(cfg, schedules, data, loader)
                    elif side == "lightly":
                        model, losses = train_lightly(cfg, ipe, args.steps, data, loader)
                    else:
                        model, losses = train_sp(cfg, schedules, data, loader)
                except (FloatingPointError, AssertionError) as err:  # a diverged run is a result, not a crash
                    run.update({"failed": f"{type(err).__name__}: {err}"[:200], "train_s": time.perf_counter() - t0})
                    print(f"{method:7s} {side:8s} seed {seed}: FAILED {run['failed']}", flush=True)
                else:
                    train_s = time.perf_counter() - t0
                    scores = evaluate(model, data, cfg.crops.global_size)
                    run.update({"steps": len(losses), "train_s": train_s, "first_loss": losses[0],
                                "final_loss": losses[-1], "loss_every_11": losses[::11], **scores})
                    print(f"{method:7s} {side:8s} seed {seed}: kNN {pct(scores['knn'])} %, linear "
                          f"{pct(scores['linear'])} %, train {train_s:.0f} s, eval {scores['eval_s']:.0f} s, loss "
                          f"{losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)
                    del model
                runs.append(run)
                if args.json:
                    res["load_after"] = os.getloadavg()[0]
                    write_json(args.json, res)

    if baselines_kept is not None:
        res["baselines"] = baselines_kept
    else:
        cfg0, _, _ = load_method_config(methods[0], args.data, seeds[0], args.steps, args.batch_size, len(data.train))
        res["baselines"] = baselines(data, cfg0, seeds)
    res["load_after"] = os.getloadavg()[0]
    res["summary"] = summarise(res)
    text = report(res)
    res["markdown"] = text
    print("\n" + text)
    if args.json:
        write_json(args.json, res)
    if args.append_md:
        with open(args.append_md, "a") as f:
            f.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
