"""DINOv2 training-step throughput of sslkit against stable-pretraining 0.1.8, and loss agreement.

Needs the benchmark venv (``make bench-vs-sp`` builds ``.venv-bench`` with
``stable-pretraining==0.1.8`` next to sslkit); the test environment does not have it.

Configuration (both libraries, from ``recipes/dinov2-tiny.yaml`` with ``model.depth=12`` and
``dinov2.head_out_dim=4096``): ViT-tiny (width 192, 12 blocks, 3 heads) at 32 px, patch 4;
2 global crops of 32 px + 6 local crops of 16 px; DINO head 192 → 512 → 512 → 256 → K = 4096;
iBOT on the global crops' masked patches; KoLeo on; EMA teacher; AdamW; B = 64 images; fp32 CPU.
Every step type sees the same pre-built synthetic batches (``MultiCropCollate`` crops and iBOT
block masks, built once; data loading is not timed).

Step types, interleaved round-robin after warm-up (``pretrain_throughput.time_steps``):

sslkit
    Exactly the engine's step: ``pretrain_throughput.FullStep`` (``DINOv2.forward`` with the
    ``--centering`` teacher normalisation, DINO + iBOT + KoLeo, per-sub-module clipping at 3.0, AdamW over the engine's
    layer-decay groups, ``ema_update_``).
sp-blocks
    The fastest faithful DINOv2 step we could build from stable-pretraining's own pieces: its
    ``methods.DINOv2`` module (timm ViT + mask token, ``_encode``), its ``TeacherStudentWrapper``
    teacher and EMA (``update_teacher``), its head (MLP → ``L2Norm`` → prototypes), its losses
    (``DINOv1Loss`` with its teacher centering, ``iBOTPatchLoss``), its KoLeo (the one it ships,
    in ``methods/dinov3.py``), AdamW through its ``create_optimizer`` (with ``foreach=True``, the
    same multi-tensor kernel sslkit uses). Like the DINOv2 reference and sslkit, the CLS and
    masked-patch tokens share one head, which runs once per network on the concatenation of the
    CLS tokens and only the masked patch tokens; the masks are the batch's block masks.
    stable-pretraining's ``iBOTPatchLoss`` 0.1.8 has no centering (Sinkhorn only), so with
    softmax centering the patch targets are centred by a second ``DINOv1Loss`` used only for
    its ``softmax_center_teacher``/``update_center``; with ``--centering sinkhorn`` both terms use
    its ``sinkhorn_knopp_teacher``.
sp-method
    stable-pretraining's ``methods.DINOv2`` as shipped: its own ``forward`` (Sinkhorn-Knopp on
    CLS and patches, a separate patch head run on *every* patch token, its own uniform random
    masks at ratio 0.3, no KoLeo) + its EMA + the same AdamW. Shown for reference; the ratio the
    issue asks for is against ``sp-blocks``.
sp-forward
    The documented Lightning path: ``spt.Module(forward=spt.forward.dinov2, ...)`` with the
    HuggingFace ViT its docstring prescribes (``spt.backbone.vit_hf("tiny", patch_size=4,
    image_size=32, use_mask_token=True)``), ``TeacherStudentWrapper`` backbone/projector/patch
    projector (the same head shape) and ``DINOv2Loss``; called outside a Trainer, with the same
    AdamW and EMA. Its forward runs the student on the unmasked global crops and then a second
    time on the masked first global crop (iBOT on the first global crop only, uniform random masks
    at 0.3), Sinkhorn on both terms, no KoLeo. Different backbone code (HF instead of timm).
bare
    ``pretrain_throughput.BackboneStep(with_teacher=True)``: teacher backbone forward + student
    backbone forward/backward on the same crops + AdamW; the upper bound of any DINOv2 step.
bare-sp
    The same bare work on stable-pretraining's backbone path (plain timm ``VisionTransformer``
    through ``methods.DINOv2._encode``, its teacher copy, one AdamW group): separates a difference
    between the two ViT implementations from a difference in the SSL machinery around them.

Loss agreement: the same logits / probabilities / embeddings go through sslkit's functions,
stable-pretraining's functions and a direct transcription of the facebookresearch/dinov2
formulas (spec ``shared/specs/dinov2.md``); absolute differences are printed.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/vs_stable_pretraining.py [--quick]
        [--steps N] [--centering softmax|sinkhorn] [--markdown FILE]

``--quick``: B = 16, 1 warm-up + 2 timed steps per type (< 2 min on one thread).
Exit code 2 if stable_pretraining is not importable.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_throughput as pt  # noqa: E402  (the sslkit side is that benchmark's step, reused as is)

from sslkit.config import load_config  # noqa: E402
from sslkit.functional.dino import dino_loss, softmax_center_teacher, update_center  # noqa: E402
from sslkit.functional.ibot import ibot_patch_loss, mask_token_weights  # noqa: E402
from sslkit.functional.koleo import koleo_loss  # noqa: E402
from sslkit.functional.sinkhorn import sinkhorn_knopp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/dinov2-tiny.yaml"
STEP_KINDS = ("sslkit", "sp-blocks", "sp-method", "sp-forward", "bare", "bare-sp")
SP_VERSION = "0.1.8"
CLIP_GRAD = 3.0  # the engine's optim.clip_grad; stable-pretraining takes it from Lightning's gradient_clip_val


def import_stable_pretraining():
    """Import stable_pretraining or exit 2 with one sentence (it lives in the benchmark venv only)."""
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # its INFO banner is noise here
    if importlib.util.find_spec("stable_pretraining") is None:
        print(f"stable_pretraining is not importable in {sys.executable}; run `make bench-vs-sp`, which builds "
              f".venv-bench with stable-pretraining=={SP_VERSION} and runs this benchmark there.")
        sys.exit(2)
    import stable_pretraining as spt
    from stable_pretraining.methods import dinov3 as sp_dinov3

    if getattr(spt, "__version__", "?") != SP_VERSION:
        print(f"warning: stable_pretraining {spt.__version__} is installed; this benchmark was written for "
              f"{SP_VERSION}.", flush=True)
    return spt, sp_dinov3


def load_bench_config(batch_size: int, centering: str):
    overrides = [f"optim.batch_size={batch_size}", "trainer.precision=32-true", "model.depth=12",
                 "dinov2.head_out_dim=4096", f"dinov2.centering={centering}"]
    return load_config(ROOT / RECIPE, overrides)


# --------------------------------------------------------------------- stable-pretraining side


def build_sp_method(spt, cfg, momentum: float, teacher_temp: float, mask_ratio: float = 0.3):
    """stable-pretraining's ``methods.DINOv2`` on a timm ViT shaped like sslkit's backbone."""
    from timm.models.vision_transformer import VisionTransformer

    m, d, c = cfg.model, cfg.dinov2, cfg.crops
    vit = VisionTransformer(img_size=c.global_size, patch_size=m.patch_size, in_chans=pt.IN_CHANS, num_classes=0,
                            embed_dim=192, depth=m.depth, num_heads=3, mlp_ratio=4.0, qkv_bias=True,
                            init_values=m.layerscale_init or None, drop_path_rate=m.drop_path_rate,
                            dynamic_img_size=True)
    method = spt.methods.DINOv2(encoder_name=vit, projector_hidden_dim=d.head_hidden_dim,
                                projector_bottleneck_dim=d.head_bottleneck_dim, n_cls_prototypes=d.head_out_dim,
                                n_patch_prototypes=d.head_out_dim, mask_ratio=mask_ratio,
                                temperature_student=d.student_temp, temperature_teacher=teacher_temp,
                                ema_decay_start=momentum, ema_decay_end=1.0, image_size=c.global_size)
    method.train()
    for wrapper in (method.backbone, method.cls_head, method.patch_head):
        wrapper.ema_coefficient.fill_(momentum)  # a mid-run step, like FullStep (momentum < 1: the EMA runs)
    return method


def sp_optimizer(spt, modules: list[torch.nn.Module], extra: list[torch.nn.Parameter], lr: float, wd: float):
    from stable_pretraining.optim.utils import create_optimizer

    params = [p for mod in modules for p in mod.parameters() if p.requires_grad] + list(extra)
    # foreach=True: the multi-tensor kernel sslkit's engine also asks for (CPU defaults to a loop).
    return create_optimizer(params, {"type": "AdamW", "lr": lr, "weight_decay": wd, "foreach": True}), params


def sp_update(loss: torch.Tensor, optimizer, params, wrappers) -> torch.Tensor:
    """The end of every stable-pretraining step: finite check, backward, one clip over all, AdamW, EMA."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, CLIP_GRAD)
    optimizer.step()
    for wrapper in wrappers:
        wrapper.update_teacher()
    return loss.detach()


class SPBlocksStep:
    """A faithful DINOv2 step assembled from stable-pretraining's building blocks (see module doc)."""

    def __init__(self, spt, sp_dinov3, cfg, momentum: float, teacher_temp: float, lr: float, wd: float):
        torch.manual_seed(0)
        self.spt, self.koleo = spt, sp_dinov3._koleo_loss
        self.method = build_sp_method(spt, cfg, momentum, teacher_temp)
        self.n_global, self.n_local = cfg.crops.n_global, cfg.crops.n_local
        self.centering, self.teacher_temp = cfg.dinov2.centering, teacher_temp
        self.koleo_weight = cfg.dinov2.koleo_weight
        self.dino_loss = spt.losses.DINOv1Loss(temperature_student=cfg.dinov2.student_temp,
                                               center_momentum=cfg.dinov2.center_momentum)
        self.ibot_loss = spt.losses.iBOTPatchLoss(student_temp=cfg.dinov2.student_temp)
        # iBOTPatchLoss 0.1.8 only offers Sinkhorn; its centering building block is DINOv1Loss's.
        self.patch_centering = spt.losses.DINOv1Loss(center_momentum=cfg.dinov2.center_momentum)
        m = self.method
        self.wrappers = (m.backbone, m.cls_head)  # the shared head: m.patch_head is not used here
        self.optimizer, self.params = sp_optimizer(spt, [w.student for w in self.wrappers], [m.mask_token], lr, wd)

    def __call__(self, batch: dict) -> torch.Tensor:
        m, n_g, n_l = self.method, self.n_global, self.n_local
        g, loc, masks = batch["global_crops"], batch["local_crops"], batch["masks"]
        b = g.shape[0] // n_g
        mask_flat = masks.flatten()
        with torch.no_grad():
            t = m._encode(m.backbone.teacher, g)
            t_cls = t[:, 0]
            t_logits = m.cls_head.forward_teacher(torch.cat([t_cls, t[:, 1:].flatten(0, 1)[mask_flat]]))
            t_cls_logits, t_patch_logits = t_logits[: n_g * b].view(n_g, b, -1), t_logits[n_g * b:]
            if self.centering == "sinkhorn":
                t_cls_probs = self.dino_loss.sinkhorn_knopp_teacher(t_cls_logits, self.teacher_temp,
                                                                    num_samples=n_g * b)
                t_patch_probs = self.ibot_loss.sinkhorn_knopp_teacher(t_patch_logits, self.teacher_temp,
                                                                      num_samples=t_patch_logits.shape[0])
            else:
                t_cls_probs = self.dino_loss.softmax_center_teacher(t_cls_logits, self.teacher_temp)
                self.dino_loss.update_center(t_cls_logits)
                t_patch_probs = self.patch_centering.softmax_center_teacher(t_patch_logits[None], self.teacher_temp)[0]
                self.patch_centering.update_center(t_patch_logits[None])
        s_g = m._encode(m.backbone.student, g, mask=masks.to(g.dtype))
        s_l = m._encode(m.backbone.student, loc)
        s_g_cls = s_g[:, 0]
        s_logits = m.cls_head.forward_student(torch.cat([s_g_cls, s_l[:, 0], s_g[:, 1:].flatten(0, 1)[mask_flat]]))
        n_cls = (n_g + n_l) * b
        loss_dino = self.dino_loss(s_logits[:n_cls].view(n_g + n_l, b, -1), t_cls_probs)
        loss_ibot = self.ibot_loss(s_logits[n_cls:], t_patch_probs)
        loss_koleo = sum(self.koleo(chunk) for chunk in s_g_cls.chunk(n_g))
        loss = loss_dino + loss_ibot + self.koleo_weight * loss_koleo
        return sp_update(loss, self.optimizer, self.params, self.wrappers)


class SPMethodStep:
    """stable-pretraining's ``methods.DINOv2.forward`` as shipped + its EMA + AdamW."""

    def __init__(self, spt, cfg, momentum: float, teacher_temp: float, lr: float, wd: float):
        torch.manual_seed(0)
        self.method = build_sp_method(spt, cfg, momentum, teacher_temp)
        self.n_global, self.n_local = cfg.crops.n_global, cfg.crops.n_local
        m = self.method
        self.wrappers = (m.backbone, m.cls_head, m.patch_head)
        self.optimizer, self.params = sp_optimizer(spt, [w.student for w in self.wrappers], [m.mask_token], lr, wd)

    def __call__(self, batch: dict) -> torch.Tensor:
        out = self.method(global_views=list(batch["global_crops"].chunk(self.n_global)),
                          local_views=list(batch["local_crops"].chunk(self.n_local)))
        loss = out.loss
        return sp_update(loss, self.optimizer, self.params, self.wrappers)


class SPForwardStep:
    """``spt.Module(forward=spt.forward.dinov2)`` with an HF ViT, as its docstring shows."""

    def __init__(self, spt, cfg, momentum: float, teacher_temp: float, lr: float, wd: float, mask_ratio: float = 0.3):
        from stable_pretraining.forward import dinov2 as dinov2_forward
        from stable_pretraining.methods.dinov2 import _ibot_head

        torch.manual_seed(0)
        m, d, c = cfg.model, cfg.dinov2, cfg.crops
        vit = spt.backbone.vit_hf("tiny", patch_size=m.patch_size, image_size=c.global_size, use_mask_token=True,
                                  num_hidden_layers=m.depth)

        def wrap(module):
            return spt.backbone.TeacherStudentWrapper(module, base_ema_coefficient=momentum)

        def head():
            return _ibot_head(192, d.head_hidden_dim, d.head_bottleneck_dim, d.head_out_dim)

        self.module = spt.Module(forward=dinov2_forward, backbone=wrap(vit), projector=wrap(head()),
                                 patch_projector=wrap(head()),
                                 dinov2_loss=spt.losses.DINOv2Loss(temperature_student=d.student_temp,
                                                                   student_temp=d.student_temp),
                                 temperature_teacher=teacher_temp, mask_ratio=mask_ratio)
        self.module.train()
        self.n_global, self.n_local = c.n_global, c.n_local
        self.wrappers = (self.module.backbone, self.module.projector, self.module.patch_projector)
        self.optimizer, self.params = sp_optimizer(spt, [w.student for w in self.wrappers], [], lr, wd)

    def __call__(self, batch: dict) -> torch.Tensor:
        views = {f"global_{i}": {"image": x} for i, x in enumerate(batch["global_crops"].chunk(self.n_global))}
        views.update({f"local_{i}": {"image": x} for i, x in enumerate(batch["local_crops"].chunk(self.n_local))})
        loss = self.module({"views": views}, "train")["loss"]
        return sp_update(loss, self.optimizer, self.params, self.wrappers)


class SPBareStep:
    """``bare`` on stable-pretraining's backbone path: teacher fwd, student fwd/bwd, AdamW."""

    def __init__(self, spt, cfg, momentum: float, teacher_temp: float, lr: float, wd: float):
        torch.manual_seed(0)
        self.method = build_sp_method(spt, cfg, momentum, teacher_temp)
        m = self.method
        self.optimizer, _ = sp_optimizer(spt, [m.backbone.student], [m.mask_token], lr, wd)

    def __call__(self, batch: dict) -> None:
        m, masks = self.method, batch["masks"]
        g = batch["global_crops"]
        with torch.no_grad():
            m._encode(m.backbone.teacher, g)
        s_g = m._encode(m.backbone.student, g, mask=masks.to(g.dtype))
        s_l = m._encode(m.backbone.student, batch["local_crops"])
        loss = s_g[:, 0].sum() + s_g[:, 1:].flatten(0, 1)[masks.flatten()].sum() + s_l[:, 0].sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def build_steps(spt, sp_dinov3, cfg) -> dict:
    full = pt.FullStep(cfg)
    values = full.schedules.at(full.it)
    lr, wd, momentum, temp = values["lr"], values["wd"], values["momentum"], values["teacher_temp"]
    return {
        "sslkit": full,
        "sp-blocks": SPBlocksStep(spt, sp_dinov3, cfg, momentum, temp, lr, wd),
        "sp-method": SPMethodStep(spt, cfg, momentum, temp, lr, wd),
        "sp-forward": SPForwardStep(spt, cfg, momentum, temp, lr, wd),
        "bare": pt.BackboneStep(cfg, with_teacher=True),
        "bare-sp": SPBareStep(spt, cfg, momentum, temp, lr, wd),
    }, {"lr": lr, "wd": wd, "momentum": momentum, "teacher_temp": temp}


# -------------------------------------------------------------- official-formula references
# Direct transcriptions of the facebookresearch/dinov2 definitions as the spec states them
# (shared/specs/dinov2.md step 5), written loop-by-loop for clarity, not speed.


def official_dino(s_global: torch.Tensor, s_local: torch.Tensor, t_probs: torch.Tensor, n_g: int, tau_s: float):
    def ce(p, s):  # batch-mean cross-entropy H(p, s)
        return -(p * F.log_softmax(s / tau_s, dim=-1)).sum(-1).mean()

    tg, sg = t_probs.chunk(n_g), s_global.chunk(n_g)
    sl = s_local.chunk(s_local.shape[0] // sg[0].shape[0])
    total = sum(ce(tg[j], sg[i]) for i in range(n_g) for j in range(n_g) if i != j)
    total = total + sum(ce(tg[j], s) for s in sl for j in range(n_g))
    return total / (n_g * (n_g - 1) + n_g * len(sl))


def official_ibot(s_patch: torch.Tensor, t_probs: torch.Tensor, masks: torch.Tensor, tau_s: float):
    per_token = -(t_probs * F.log_softmax(s_patch / tau_s, dim=-1)).sum(-1)
    counts = masks.sum(1).clamp(min=1).float()
    weights = (1.0 / counts)[:, None].expand_as(masks)[masks]
    return (per_token * weights).sum() / masks.shape[0]


def official_koleo(x: torch.Tensor, eps: float = 1e-8):
    x = F.normalize(x, p=2, dim=-1, eps=eps)
    dots = x @ x.t()
    dots.view(-1)[:: x.shape[0] + 1].fill_(-1)  # the reference's self-exclusion
    nearest = dots.argmax(dim=1)
    return -torch.log(F.pairwise_distance(x, x[nearest], p=2, eps=eps) + eps).mean()


def official_centered(logit_seq: list[torch.Tensor], tau_t: float, momentum: float) -> list[torch.Tensor]:
    """Targets of consecutive steps: the centre starts at 0, is used, then updated (EMA of row means)."""
    center, out = torch.zeros(1, logit_seq[0].shape[1]), []
    for z in logit_seq:
        out.append(F.softmax((z - center) / tau_t, dim=-1))
        center = center * momentum + z.mean(0, keepdim=True) * (1 - momentum)
    return out


def official_sinkhorn(z: torch.Tensor, tau_t: float, iters: int = 3) -> torch.Tensor:
    q = torch.exp(z.double() / tau_t).t()
    k, n = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= k * q.sum(1, keepdim=True)
        q /= n * q.sum(0, keepdim=True)
    return (n * q).t().float()


def loss_agreement(spt, sp_dinov3, batch: dict, cfg, tau_t: float, seed: int = 0) -> list[dict]:
    """The same inputs through sslkit, stable-pretraining and the official formulas."""
    gen = torch.Generator().manual_seed(seed)
    n_g, n_l = cfg.crops.n_global, cfg.crops.n_local
    k, tau_s = cfg.dinov2.head_out_dim, cfg.dinov2.student_temp
    masks = batch["masks"]
    b = masks.shape[0] // n_g
    rows = []

    def row(term, ours, theirs, ref, note):
        ours, theirs, ref = float(ours), float(theirs), float(ref)
        rows.append({"term": term, "sslkit": ours, "sp": theirs, "official": ref, "d_sp": abs(ours - theirs),
                     "d_ref": abs(ours - ref), "d_sp_ref": abs(theirs - ref), "note": note})

    # DINO CLS loss: identical student logits and teacher probabilities.
    s_g = torch.randn(n_g * b, k, generator=gen)
    s_l = torch.randn(n_l * b, k, generator=gen)
    t_p = F.softmax(torch.randn(n_g * b, k, generator=gen) / tau_t, dim=-1)
    sp_dino = spt.losses.DINOv1Loss(temperature_student=tau_s)
    row("DINO CLS loss", dino_loss(s_g, s_l, t_p, n_global=n_g, student_temp=tau_s),
        sp_dino(torch.cat([s_g, s_l]).view(n_g + n_l, b, k), t_p.view(n_g, b, k)),
        official_dino(s_g, s_l, t_p, n_g, tau_s), "same definition (14 = n_g(n_g-1) + n_g n_l terms)")

    # iBOT masked-patch loss on the batch's block masks (crops hide different numbers of patches).
    m = int(masks.sum())
    s_p = torch.randn(m, k, generator=gen)
    t_pp = F.softmax(torch.randn(m, k, generator=gen) / tau_t, dim=-1)
    sp_ibot = spt.losses.iBOTPatchLoss(student_temp=tau_s)
    row("iBOT loss, block masks", ibot_patch_loss(s_p, t_pp, mask_token_weights(masks), masks.shape[0], tau_s),
        sp_ibot(s_p, t_pp), official_ibot(s_p, t_pp, masks, tau_s),
        "sp = plain mean over masked tokens; sslkit/official = per-crop mean, / all 2B crops")
    # The same with every crop hiding the same number of patches: the definitions meet.
    n_patches = masks.shape[1]
    uniform = torch.zeros_like(masks)
    order = torch.rand(masks.shape, generator=gen).argsort(dim=1)
    uniform.scatter_(1, order[:, : n_patches // 4], True)
    mu = int(uniform.sum())
    s_u, t_u = torch.randn(mu, k, generator=gen), F.softmax(torch.randn(mu, k, generator=gen) / tau_t, dim=-1)
    ours = ibot_patch_loss(s_u, t_u, mask_token_weights(uniform), uniform.shape[0], tau_s)
    row("iBOT loss, every crop masks N/4", ours, sp_ibot(s_u, t_u), official_ibot(s_u, t_u, uniform, tau_s),
        "equal when all crops hide equally many")

    # KoLeo on the same embeddings (one global chunk of B final-norm CLS tokens).
    x = torch.randn(b, 192, generator=gen)
    row("KoLeo (one chunk of B)", koleo_loss(x), sp_dinov3._koleo_loss(x), official_koleo(x),
        "sp: sqrt(2-2cos) clamped; official: ||x_i-x_j+eps||; sp DINOv2 has no KoLeo")

    # Teacher centering over 3 consecutive steps, on head-like logits: cosines between L2-normalised
    # bottleneck features and unit prototypes, the features sharing a common direction (as at
    # initialisation) so the centre matters.
    prototypes = F.normalize(torch.randn(k, 256, generator=gen), dim=-1)
    shared = torch.randn(1, 256, generator=gen)

    def head_logits(n: int) -> torch.Tensor:
        return F.normalize(torch.randn(n, 256, generator=gen) + 2 * shared, dim=-1) @ prototypes.t()

    seq = [head_logits(n_g * b) for _ in range(3)]
    ref = official_centered(seq, tau_t, cfg.dinov2.center_momentum)
    center = torch.zeros(1, k)
    sp_center = spt.losses.DINOv1Loss(center_momentum=cfg.dinov2.center_momentum)
    for i, z in enumerate(seq):
        new_center = update_center(center, z, cfg.dinov2.center_momentum)
        ours = softmax_center_teacher(z, center, tau_t)
        center = new_center
        theirs = sp_center.softmax_center_teacher(z.view(n_g, b, k), tau_t).reshape(n_g * b, k)
        sp_center.update_center(z.view(n_g, b, k))
        rows.append({"term": f"centred teacher probs, step {i + 1} (max |diff|)", "sslkit": None, "sp": None,
                     "official": None,
                     "d_sp": float((ours - theirs).abs().max()), "d_ref": float((ours - ref[i]).abs().max()),
                     "d_sp_ref": float((theirs - ref[i]).abs().max()),
                     "note": "sp's first centre = first batch mean (no EMA from 0)" if i else "no centre yet"})

    # Sinkhorn-Knopp targets on the same logits: head-like, then large (max z / tau_t > 88).
    large_note = ("sp NaN: exp(z/tau) overflows (so does the float32 reference code); sslkit shifts by max z: "
                  "finite, but float32 underflow vs this float64 check")
    for name, z, note in (("Sinkhorn-Knopp targets (max |diff|)", head_logits(n_g * b), "same algorithm, 3 iterations"),
                          ("Sinkhorn-Knopp, logits of std 2 (max |diff|)", 2 * torch.randn(n_g * b, k, generator=gen),
                           large_note)):
        ours = sinkhorn_knopp(z, tau_t)
        theirs = spt.losses.sinkhorn_knopp(z, tau_t, num_samples=z.shape[0])
        ref_sk = official_sinkhorn(z, tau_t)
        rows.append({"term": name, "sslkit": None, "sp": None, "official": None,
                     "d_sp": float((ours - theirs).abs().max()), "d_ref": float((ours - ref_sk).abs().max()),
                     "d_sp_ref": float((theirs - ref_sk).abs().max()), "note": note})
    return rows


# --------------------------------------------------------------------------------- report


def fmt(x: float | None) -> str:
    if x is None:  # not applicable
        return "—"
    if x != x:
        return "NaN"
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.6f}"


def report(res: dict) -> str:
    k = res["kinds"]
    ips = {kind: k[kind]["images_per_s"] for kind in STEP_KINDS}
    lines = [f"### {res['threads']} thread(s), load average {res['load_before']:.2f} before / "
             f"{res['load_after']:.2f} after",
             "",
             f"{res['description']}; centering {res['centering']}; {res['warmup']} warm-up + {res['timed']} timed "
             f"steps per type, round-robin; torch {torch.__version__}, stable-pretraining {res['sp_version']}.",
             ""]
    rows = [[kind, f"{k[kind]['step_s'] * 1e3:.0f}", f"{ips[kind]:.1f}", f"{ips[kind] / ips['bare']:.2f}",
             f"{ips[kind] / ips['bare-sp']:.2f}", f"{min(k[kind]['step_s_all']) * 1e3:.0f}",
             f"{max(k[kind]['step_s_all']) * 1e3:.0f}"] for kind in STEP_KINDS]
    lines.append(pt.fmt_table(["step", "median ms", "images/s", "vs bare", "vs bare-sp", "min ms", "max ms"], rows))
    def paired(other: str) -> str:
        # Per round, the two steps ran back to back: their time ratio cancels slow drifts in load.
        ratios = [o / s for o, s in zip(k[other]["step_s_all"], k["sslkit"]["step_s_all"])]
        return f"median of per-round ratios {statistics.median(ratios):.2f}×, range {min(ratios):.2f}–{max(ratios):.2f}"

    lines += ["",
              f"- sslkit / sp-blocks = **{ips['sslkit'] / ips['sp-blocks']:.2f}×** (issue target ≥ 1.5×); "
              + paired("sp-blocks"),
              f"- sslkit / sp-method = {ips['sslkit'] / ips['sp-method']:.2f}×; " + paired("sp-method"),
              f"- sslkit / sp-forward = {ips['sslkit'] / ips['sp-forward']:.2f}×; " + paired("sp-forward"),
              f"- sslkit / bare = {ips['sslkit'] / ips['bare']:.2f}; " + paired("bare").replace("×", "", 1)
              + " (bare time / sslkit time)",
              f"- bare-sp / bare = {ips['bare-sp'] / ips['bare']:.2f} (the two ViT code paths, same work)",
              ""]
    rows = [[r["term"], fmt(r["sslkit"]), fmt(r["sp"]), fmt(r["official"]), fmt(r["d_sp"]), fmt(r["d_ref"]),
             fmt(r["d_sp_ref"]), r["note"]] for r in res["losses"]]
    lines.append(pt.fmt_table(["loss term (same inputs)", "sslkit", "stable-pt", "official", "|sslkit-sp|",
                               "|sslkit-off|", "|sp-off|", "note"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=16, 1 warm-up + 2 timed steps per type (< 2 min)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per step type (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up steps per step type (default 2)")
    parser.add_argument("--batch-size", type=int, help="images per step (default 64; 16 with --quick)")
    parser.add_argument("--centering", choices=("softmax", "sinkhorn"), default="softmax",
                        help="teacher normalisation on both sides (default softmax, the DINOv2 reference default)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)

    spt, sp_dinov3 = import_stable_pretraining()
    torch.manual_seed(0)
    batch_size = args.batch_size or (16 if args.quick else 64)
    warmup, timed = (1, 2) if args.quick else (args.warmup, args.steps)
    cfg = load_bench_config(batch_size, args.centering)
    load_before = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), stable-pretraining "
          f"{spt.__version__}, load average {load_before:.2f}", flush=True)
    print(f"{pt.describe(cfg)}, centering {args.centering}; {warmup} warm-up + {timed} timed steps per type",
          flush=True)

    batches = pt.make_batches(cfg, n_batches=max(2, min(timed, 4)))
    steps, values = build_steps(spt, sp_dinov3, cfg)
    t0 = time.perf_counter()
    times = pt.time_steps(steps, batches, warmup, timed)
    print(f"timed in {time.perf_counter() - t0:.0f} s", flush=True)
    del steps
    res = {"threads": torch.get_num_threads(), "load_before": load_before, "load_after": os.getloadavg()[0],
           "description": pt.describe(cfg), "centering": args.centering, "warmup": warmup, "timed": timed,
           "sp_version": spt.__version__, "schedule_values": values, "kinds": {}}
    for kind in STEP_KINDS:
        t = statistics.median(times[kind])
        res["kinds"][kind] = {"step_s": t, "step_s_all": times[kind], "images_per_s": batch_size / t}
    res["losses"] = loss_agreement(spt, sp_dinov3, batches[0], cfg, tau_t=values["teacher_temp"])
    text = report(res)
    print("\n" + text)
    if args.markdown:
        tmp = args.markdown.with_suffix(args.markdown.suffix + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text + "\n")
        os.replace(tmp, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
