"""DINOv2: self-distillation with an EMA teacher, DINO (CLS) + iBOT (masked patches) + KoLeo.

Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", arXiv 2304.07193.
Reference semantics: facebookresearch/dinov2 ``dinov2/train/ssl_meta_arch.py``; the method spec is
``shared/specs/dinov2.md``.

Cost discipline (the reference does the same): heads run once per network on the concatenation of
every token that needs them, and the patch head sees only the masked tokens, never the full grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sslkit.functional.dino import dino_loss, softmax_center_teacher, update_center
from sslkit.functional.ibot import ibot_patch_loss, mask_token_weights
from sslkit.functional.prototype_logits import PrototypeLogits
from sslkit.functional.koleo import koleo_loss
from sslkit.functional.sinkhorn import sinkhorn_knopp
from sslkit.data.collate import MultiCropCollate
from sslkit.methods.base import SSLMethod, batchnorm_train, patch_unit
from sslkit.methods.registry import MethodSpec, register
from sslkit.nn.bounds import MAX_HEAD_WIDTH
from sslkit.nn.ema import ema_update_, make_teacher
from sslkit.nn.heads import DINOHead
from sslkit.nn.timm_backbone import is_pooled_arch
from sslkit.nn.vit import ViT


@dataclass
class DINOv2Config:
    """Recipe section ``dinov2:``: heads and losses (spec dinov2.md steps 2-5). A loss weight of 0 switches
    its term off without computing it: ``ibot_weight: 0`` is DINO (+ KoLeo), ``dino_weight: 0`` iBOT."""

    head_out_dim: int = 65536
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_layers: int = 3
    head_use_bn: bool = False  # BatchNorm in the head MLP (the reference head's `use_bn` option)
    separate_ibot_head: bool = False
    centering: Literal["softmax", "sinkhorn"] = "softmax"
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: float = 30
    center_momentum: float = 0.9
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    mask_probability: float = 0.5
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    # Teacher guidance: T*'s crops go through the current EMA teacher's heads (the reference's
    # behaviour, default) or, with true, through T*'s own frozen heads.
    guide_frozen_head: bool = False
    # The student's DINO/iBOT losses take its logits factored, (bottleneck features, prototypes), and never form
    # the (rows, K) logits (functional/prototype_logits.py): the same loss and gradients, ~136 MiB less at the
    # peak of a ViT-S/16 step at K = 65 536, one more head matmul in backward. false: the plain head output.
    fused_prototype_loss: bool = True


@dataclass(frozen=True)
class DINOv2LossConfig:
    """The loss-side settings of the method (a subset of ``config.DINOv2Config``)."""

    n_global: int = 2
    n_local: int = 8
    centering: str = "softmax"
    student_temp: float = 0.1
    center_momentum: float = 0.9
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    fused_prototype_loss: bool = True


class DINOv2(SSLMethod):
    """Student (backbone + heads) and its EMA teacher.

    ``forward(batch, teacher_temp)`` takes the crop-major batch of ``sslkit.data.collate``:
    ``global_crops`` (n_g*B, C, G, G), ``local_crops`` (n_l*B, C, L, L) or absent,
    ``masks`` (n_g*B, N) bool over the global crops' patch grid; returns a dict with ``loss``,
    each loss term, ``embedding`` (student CLS of the global crops, detached) and
    ``teacher_entropy`` (entropy of the teacher's mean CLS prediction; near 0 means collapse to one
    prototype) and ``teacher_sample_entropy`` (mean entropy per image; near ln K means uniform targets).
    """

    def __init__(self, backbone: ViT, dino_head: DINOHead, cfg: DINOv2LossConfig,
                 ibot_head: DINOHead | None = None, teacher_guidance: bool = False, frozen_head: bool = False):
        super().__init__()
        self.cfg = cfg
        self.student = nn.ModuleDict({"backbone": backbone, "dino_head": dino_head})
        if ibot_head is not None:
            self.student["ibot_head"] = ibot_head
        self.teacher = make_teacher(self.student)
        out_dim = dino_head.last_layer.out_features
        # Centres live here (not in the teacher) so the EMA never touches them.
        self.register_buffer("dino_center", torch.zeros(1, out_dim))
        self.register_buffer("ibot_center", torch.zeros(1, out_dim))
        # Teacher guidance (noisy-dinov2.md step 5, "NCT"): a frozen copy T* of the EMA teacher, taken
        # by `freeze_guide()` at the end of the denoised stage, sees the denoised twins of the student's
        # noisy global crops. It exists from the start so checkpoints always hold the same tensors.
        self.guidance_weight = 0.0
        self.frozen_head = frozen_head
        if teacher_guidance:
            self.guide = make_teacher(self.student)
            self.register_buffer("guide_dino_center", torch.zeros(1, out_dim))
            self.register_buffer("guide_ibot_center", torch.zeros(1, out_dim))

    schedule_inputs = ("teacher_temp",)

    @property
    def eval_backbone(self) -> ViT:
        return self.teacher["backbone"]  # the EMA teacher is the model DINOv2 evaluates and ships

    @property
    def has_teacher(self) -> bool:
        return True

    @property
    def separate_ibot_head(self) -> bool:
        return "ibot_head" in self.student

    def train(self, mode: bool = True) -> "DINOv2":
        super().train(mode)
        self.teacher.eval()  # the teacher always runs in eval mode (no drop-path) ...
        if hasattr(self, "guide"):
            self.guide.eval()
        for module in self.teacher.modules():
            # ... except BatchNorm in a `use_bn` head: its running statistics are buffers the EMA
            # never averages, so the teacher normalises with batch statistics, like the student.
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(mode)
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        ema_update_(self.teacher, self.student, momentum)

    @torch.no_grad()
    def freeze_guide(self) -> None:
        """T* := the current EMA teacher, with its centres (which keep their own EMA from T*'s outputs)."""
        if not hasattr(self, "guide"):
            raise RuntimeError("This DINOv2 was built without teacher_guidance=True; there is no guide to freeze.")
        self.guide.load_state_dict(self.teacher.state_dict())
        self.guide_dino_center.copy_(self.dino_center)
        self.guide_ibot_center.copy_(self.ibot_center)

    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _teacher_targets(self, global_crops: torch.Tensor, mask_flat: torch.Tensor, teacher_temp: float,
                         guide: bool = False):
        """Teacher CLS probabilities (n_g*B, K) and masked-patch probabilities (M, K).

        ``guide=True``: the frozen T* backbone on the denoised crops, through the *current EMA
        teacher's* heads (the reference quirk, the spec default) or T*'s own heads with
        ``frozen_head``, centred with T*'s centres.
        """
        backbone = self.guide["backbone"] if guide else self.teacher["backbone"]
        heads = self.guide if (guide and self.frozen_head) else self.teacher
        centers = ("guide_dino_center", "guide_ibot_center") if guide else ("dino_center", "ibot_center")
        feats = backbone.forward_features(global_crops)
        cls = feats["cls"]
        # (M, D), same order as the student's; a CNN has no patch tokens and no masks (DINO without iBOT).
        masked_patch = feats["patch"].flatten(0, 1)[mask_flat] if "patch" in feats else cls[:0]
        n_cls = cls.shape[0]
        if self.separate_ibot_head:
            cls_logits = heads["dino_head"](cls)
            patch_logits = heads["ibot_head"](masked_patch)
        else:
            logits = heads["dino_head"](torch.cat([cls, masked_patch]))
            cls_logits, patch_logits = logits[:n_cls], logits[n_cls:]
        dino_center, ibot_center = getattr(self, centers[0]), getattr(self, centers[1])

        # Both calls run on every worker at every step, even with zero masked tokens here: they
        # all-reduce under DDP, and a worker that skipped them would hang the others.
        if self.cfg.centering == "sinkhorn":
            cls_probs = sinkhorn_knopp(cls_logits, teacher_temp)
            patch_probs = sinkhorn_knopp(patch_logits, teacher_temp)
        else:
            # The new centres are computed first so the softmax may reuse the logits' memory; the
            # targets still use the old centres, as the reference.
            new_dino_center = update_center(dino_center, cls_logits, self.cfg.center_momentum)
            new_ibot_center = update_center(ibot_center, patch_logits, self.cfg.center_momentum)
            cls_probs = softmax_center_teacher(cls_logits, dino_center, teacher_temp, inplace=True)
            patch_probs = softmax_center_teacher(patch_logits, ibot_center, teacher_temp, inplace=True)
            dino_center.copy_(new_dino_center)
            ibot_center.copy_(new_ibot_center)
        return cls_probs, patch_probs

    def forward(self, batch: dict, teacher_temp: float) -> dict:
        cfg = self.cfg
        # A `use_bn` head's teacher normalises with batch statistics while training (see `train`); set here too,
        # because Lightning restores each submodule's training flag as captured before fitting.
        batchnorm_train(self.teacher, self.training)
        global_crops = batch["global_crops"]
        local_crops = batch.get("local_crops")
        masks = batch["masks"]
        n_global_total = global_crops.shape[0]  # n_g * B
        mask_flat = masks.flatten()

        cls_probs, patch_probs = self._teacher_targets(global_crops, mask_flat, teacher_temp)

        backbone = self.student["backbone"]
        g = backbone.forward_features(global_crops, masks=masks)
        g_cls = g["cls"]
        s_masked_patch = g["patch"].flatten(0, 1)[mask_flat] if "patch" in g else g_cls[:0]
        # A zero weight switches a term off without computing it: no local crop goes through the backbone
        # for DINO-only's counterpart iBOT-only, and no KoLeo distance matrix is built at koleo_weight 0.
        use_dino = cfg.dino_weight > 0
        has_local = use_dino and local_crops is not None and local_crops.shape[0] > 0
        l_cls = backbone.forward_features(local_crops)["cls"] if has_local else g_cls[:0]

        n_g_cls, n_l_cls = g_cls.shape[0], l_cls.shape[0]
        # torch.split, not slicing: its backward writes the pieces' gradients into one (rows, K) buffer,
        # where each slice's backward would allocate a zero-filled full-size one (K = 65 536 here).
        def student_head(name: str, x: torch.Tensor):
            return self.student[name](x, factored=cfg.fused_prototype_loss)

        if self.separate_ibot_head:
            cls_logits = student_head("dino_head", torch.cat([g_cls, l_cls]))
            s_patch_logits = student_head("ibot_head", s_masked_patch)
            s_global_logits, s_local_logits = cls_logits.split([n_g_cls, n_l_cls])
        else:
            logits = student_head("dino_head", torch.cat([g_cls, l_cls, s_masked_patch]))
            s_global_logits, s_local_logits, s_patch_logits = logits.split(
                [n_g_cls, n_l_cls, s_masked_patch.shape[0]])

        zero = g_cls.sum() * 0.0
        # No masked crop in this batch: a zero that still reaches the patch head's parameters (DDP needs every
        # parameter in the graph).
        patch_zero = _zero_through(s_patch_logits)
        loss_dino = (dino_loss(s_global_logits, s_local_logits if has_local else None, cls_probs,
                               n_global=cfg.n_global, student_temp=cfg.student_temp) if use_dino else zero)
        if s_patch_logits.shape[0] > 0 and cfg.ibot_weight > 0:
            weights = mask_token_weights(masks)
            loss_ibot = ibot_patch_loss(s_patch_logits, patch_probs, weights, n_global_total,
                                        student_temp=cfg.student_temp)
        else:
            loss_ibot = patch_zero
        # KoLeo per global chunk of B rows, on the final-norm CLS before the head (spec step 5).
        loss_koleo = sum(koleo_loss(chunk) for chunk in g_cls.chunk(cfg.n_global)) if cfg.koleo_weight > 0 else zero

        loss = cfg.dino_weight * loss_dino + cfg.ibot_weight * loss_ibot + cfg.koleo_weight * loss_koleo
        guided = {}
        if self.guidance_weight > 0:
            if "clean_global_crops" not in batch:
                raise ValueError("Teacher guidance needs the denoised twins of the global crops "
                                 "(batch['clean_global_crops']); give the stage a paired_data source.")
            g_cls, g_patch = self._teacher_targets(batch["clean_global_crops"], mask_flat, teacher_temp, guide=True)
            guide_dino = (dino_loss(s_global_logits, s_local_logits if has_local else None, g_cls,
                                    n_global=cfg.n_global, student_temp=cfg.student_temp) if use_dino else zero)
            guide_ibot = (ibot_patch_loss(s_patch_logits, g_patch, weights, n_global_total, student_temp=cfg.student_temp)
                          if s_patch_logits.shape[0] > 0 and cfg.ibot_weight > 0 else patch_zero)
            # KoLeo appears only in the first part (spec step 5).
            loss = loss + self.guidance_weight * (guide_dino + guide_ibot)
            guided = {"guide_dino_loss": guide_dino.detach(), "guide_ibot_loss": guide_ibot.detach()}
        with torch.no_grad():
            probs = cls_probs.float()
            mean_p = probs.mean(0)
            teacher_entropy = -(mean_p * mean_p.clamp_min(1e-12).log()).sum()
            # Mean per-image entropy: near ln K means every target is uniform (the plateau DINO
            # must leave); near 0 with a high marginal entropy is the healthy state.
            teacher_sample_entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1).mean()
        return {
            "loss": loss,
            "dino_loss": loss_dino.detach(),
            "ibot_loss": loss_ibot.detach(),
            "koleo_loss": loss_koleo.detach(),
            "teacher_entropy": teacher_entropy,
            "teacher_sample_entropy": teacher_sample_entropy,
            **guided,
            "embedding": g_cls.detach(),
        }


# ------------------------------------------------------------------------------------------------
# Setup: how the engine builds, feeds and checks DINOv2 (sslkit.methods.registry).


def _zero_through(logits) -> torch.Tensor:
    """0, computed from ``logits`` (a tensor or PrototypeLogits) so that the head's parameters stay in the graph."""
    if isinstance(logits, PrototypeLogits):
        return logits.features.sum() * 0.0 + logits.prototypes.sum() * 0.0
    return logits.sum() * 0.0


def _uses_ibot(d: DINOv2Config) -> bool:
    return d.ibot_weight > 0 and d.mask_probability > 0


def build(cfg, backbone: ViT, in_chans: int) -> DINOv2:
    d, width = cfg.dinov2, backbone.embed_dim

    def head() -> DINOHead:
        return DINOHead(width, d.head_out_dim, hidden_dim=d.head_hidden_dim, bottleneck_dim=d.head_bottleneck_dim,
                        nlayers=d.head_layers, use_bn=d.head_use_bn)

    loss_cfg = DINOv2LossConfig(n_global=cfg.crops.n_global, n_local=cfg.crops.n_local, centering=d.centering,
                                student_temp=d.student_temp, center_momentum=d.center_momentum,
                                dino_weight=d.dino_weight, ibot_weight=d.ibot_weight, koleo_weight=d.koleo_weight,
                                fused_prototype_loss=d.fused_prototype_loss)
    guided = any(stage.teacher_guidance > 0 for stage in cfg.curriculum)
    method = DINOv2(backbone, head(), loss_cfg, ibot_head=head() if d.separate_ibot_head else None,
                    teacher_guidance=guided, frozen_head=d.guide_frozen_head)
    method.feeds_masked_crops = _uses_ibot(d)
    return method


def collate(cfg) -> MultiCropCollate:
    """iBOT's block masks on the global crops (none when iBOT is off, or on a CNN's 1-pixel grid)."""
    d = cfg.dinov2
    return MultiCropCollate(patch_unit(cfg), mask_probability=d.mask_probability if d.ibot_weight > 0 else 0.0,
                            mask_ratio=d.mask_ratio, seed=cfg.trainer.seed)


def check(cfg, need) -> None:
    c, d = cfg.crops, cfg.dinov2
    need(d.dino_weight > 0 or d.ibot_weight > 0 or d.koleo_weight > 0,
         "Config keys 'dinov2.dino_weight', 'dinov2.ibot_weight' and 'dinov2.koleo_weight' are all 0: nothing "
         "would be trained; set at least one above 0.")
    if d.dino_weight > 0:
        need(c.n_global * (c.n_global - 1) + c.n_global * c.n_local > 0,
             "Config keys 'crops.n_global'/'crops.n_local' leave no DINO pair; use n_global >= 2 or n_local >= 1.")
    if d.ibot_weight > 0 and d.dino_weight == 0:
        need(d.mask_probability > 0, f"iBOT-only (dinov2.dino_weight=0) needs masked crops: set "
                                     f"dinov2.mask_probability above 0, got {d.mask_probability}.")
    lo, hi = d.mask_ratio
    need(0 < lo <= hi <= 1, f"Config key 'dinov2.mask_ratio' = [{lo}, {hi}] must satisfy 0 < low <= high <= 1.")


def patch_token_problem(cfg) -> str | None:
    d, arch = cfg.dinov2, cfg.model.arch
    if not is_pooled_arch(arch) or not _uses_ibot(d):
        return None
    return (f"model.arch={arch} has no patch tokens for iBOT to mask: set dinov2.mask_probability=0 "
            f"(DINO + KoLeo without iBOT, as DINO on a ResNet), got {d.mask_probability}.")


def teacher_schedules(cfg) -> dict:
    d = cfg.dinov2
    return {"teacher_temp_start": d.warmup_teacher_temp, "teacher_temp_end": d.teacher_temp,
            "teacher_temp_warmup_epochs": d.warmup_teacher_temp_epochs,
            "freeze_last_layer_epochs": cfg.optim.freeze_last_layer_epochs}


SPEC = register(MethodSpec(
    name="dinov2", config=DINOv2Config, build=build, collate=collate, check=check,
    ranges={"head_out_dim": f"[2, {MAX_HEAD_WIDTH}]", "head_hidden_dim": f"[1, {MAX_HEAD_WIDTH}]",
            "head_bottleneck_dim": f"[1, {MAX_HEAD_WIDTH}]", "head_layers": "[1, 16]",
            "student_temp": "(0, 10]", "teacher_temp": "(0, 10]", "warmup_teacher_temp": "(0, 10]",
            "warmup_teacher_temp_epochs": "[0, 1000000]", "center_momentum": "[0, 1]",
            "dino_weight": "[0, 1000]", "ibot_weight": "[0, 1000]", "koleo_weight": "[0, 1000]",
            "mask_probability": "[0, 1]", "mask_ratio": "(0, 1]"},
    patch_token_problem=patch_token_problem,
    embedding_views=lambda cfg: cfg.crops.n_global,  # the student CLS of every global crop (LiDAR's views)
    teacher_schedules=teacher_schedules, teacher_guidance=True, counts_flops=True,
    wrap_units=(DINOHead,), evaluated="EMA teacher",
))
