"""From a validated ``RunConfig`` to the objects a run needs: backbone, method, schedules, views.

One function per object, each reading only its own config sections, so a new method adds one
branch to ``build_method`` and (if its views differ) to ``build_views``.
"""

from __future__ import annotations

import math

from sslkit.config import ConfigError, RunConfig
from sslkit.data.augment import MultiCropAugmentation
from sslkit.data.collate import MultiCropCollate
from sslkit.engine.schedules import DINOv2Schedules, lr_peak_from_batch
from sslkit.methods.base import SSLMethod
from sslkit.methods.dinov2 import DINOv2, DINOv2LossConfig
from sslkit.methods.mae import MAE
from sslkit.methods.simclr import SimCLR
from sslkit.methods.vicreg import VICReg
from sslkit.nn.heads import DINOHead, ProjectionMLP
from sslkit.nn.mae_decoder import MAEDecoder
from sslkit.nn.vit import ViT, build_vit


def build_backbone(cfg: RunConfig, in_chans: int) -> ViT:
    m = cfg.model
    overrides = {"patch_size": m.patch_size, "img_size": cfg.crops.global_size, "in_chans": in_chans,
                 "num_registers": m.num_registers, "drop_path_rate": m.drop_path_rate,
                 "layerscale_init": m.layerscale_init}
    for key in ("embed_dim", "depth", "num_heads"):
        if getattr(m, key) is not None:
            overrides[key] = getattr(m, key)
    return build_vit(m.arch, **overrides)


def build_method(cfg: RunConfig, in_chans: int) -> SSLMethod:
    backbone = build_backbone(cfg, in_chans)
    width = backbone.embed_dim
    if cfg.method == "mae":
        a = cfg.mae
        decoder = MAEDecoder(width, backbone.patch_size, in_chans, dim=a.decoder_dim, depth=a.decoder_depth,
                             num_heads=a.decoder_num_heads, num_prefix_tokens=backbone.num_prefix_tokens)
        return MAE(backbone, decoder, norm_pix_loss=a.norm_pix_loss)
    if cfg.method == "simclr":
        s = cfg.simclr
        projector = ProjectionMLP(width, s.projector_hidden_dim, s.projector_out_dim, s.projector_layers)
        return SimCLR(backbone, projector, temperature=s.temperature)
    if cfg.method == "vicreg":
        v = cfg.vicreg
        projector = ProjectionMLP(width, v.projector_hidden_dim, v.projector_out_dim, v.projector_layers)
        return VICReg(backbone, projector, v.sim_weight, v.var_weight, v.cov_weight)

    d = cfg.dinov2

    def head() -> DINOHead:
        return DINOHead(width, d.head_out_dim, hidden_dim=d.head_hidden_dim,
                        bottleneck_dim=d.head_bottleneck_dim, nlayers=d.head_layers, use_bn=d.head_use_bn)

    loss_cfg = DINOv2LossConfig(n_global=cfg.crops.n_global, n_local=cfg.crops.n_local, centering=d.centering,
                                student_temp=d.student_temp, center_momentum=d.center_momentum,
                                dino_weight=d.dino_weight, ibot_weight=d.ibot_weight, koleo_weight=d.koleo_weight)
    return DINOv2(backbone, head(), loss_cfg, ibot_head=head() if d.separate_ibot_head else None)


def build_views(cfg: RunConfig, channels: int, mean, std) -> tuple[MultiCropAugmentation, MultiCropCollate]:
    """The per-image augmentation and the batch collate (with the method's masks, if any)."""
    c = cfg.crops
    photometric = {} if c.photometric else {"color_jitter": 0.0, "grayscale": 0.0, "solarize": 0.0, "blur": False}
    augmentation = MultiCropAugmentation(c.global_size, c.local_size, n_global=c.n_global, n_local=c.n_local,
                                         global_scale=c.global_scale, local_scale=c.local_scale,
                                         blur_sigma=c.blur_sigma, jitter_strength=c.jitter_strength,
                                         mean=mean, std=std, channels=channels, **photometric)
    seed = cfg.trainer.seed
    if cfg.method == "mae":
        collate = MultiCropCollate(cfg.model.patch_size, seed=seed, random_mask_ratio=cfg.mae.mask_ratio)
    elif cfg.method == "dinov2":
        collate = MultiCropCollate(cfg.model.patch_size, mask_probability=cfg.dinov2.mask_probability,
                                   mask_ratio=cfg.dinov2.mask_ratio, seed=seed)
    else:  # two views, no masks
        collate = MultiCropCollate(cfg.model.patch_size, mask_probability=0.0, seed=seed)
    return augmentation, collate


def build_schedules(cfg: RunConfig, iters_per_epoch: int, global_batch: int) -> DINOv2Schedules:
    """lr warm-up + cosine, weight-decay cosine (every method); EMA momentum, teacher temperature and
    last-layer freeze (read by DINOv2 only; the others ignore them)."""
    o, d = cfg.optim, cfg.dinov2
    total = max(1, int(math.ceil(o.epochs * iters_per_epoch)))
    dino = cfg.method == "dinov2"
    try:
        return DINOv2Schedules(
            total_iters=total, iters_per_epoch=iters_per_epoch,
            lr_peak=lr_peak_from_batch(o.base_lr, global_batch), lr_min=o.min_lr, lr_warmup_epochs=o.warmup_epochs,
            wd_start=o.weight_decay, wd_end=o.weight_decay_end,
            momentum_start=o.momentum_teacher, momentum_end=o.momentum_teacher_end,
            teacher_temp_start=d.warmup_teacher_temp, teacher_temp_end=d.teacher_temp,
            teacher_temp_warmup_epochs=d.warmup_teacher_temp_epochs if dino else 0,
            freeze_last_layer_epochs=o.freeze_last_layer_epochs if dino else 0,
        )
    except ValueError as err:  # e.g. a warm-up longer than the run: name the recipe keys
        raise ConfigError(f"{err} (recipe keys optim.epochs, optim.iters_per_epoch, optim.warmup_epochs, "
                          f"dinov2.warmup_teacher_temp_epochs, optim.freeze_last_layer_epochs)") from err
