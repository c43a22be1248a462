"""From a validated ``RunConfig`` to the objects a run needs: backbone, method, schedules, views.

One function per object, each reading only its own config sections. Nothing here names a method:
what differs between methods (heads, collate and masks, teacher schedules) comes from the method's
``MethodSpec`` (``sslkit.methods.registry``).
"""

from __future__ import annotations

import math

from typing import Callable, Optional

from sslkit.config import ConfigError, RunConfig, StageConfig
from sslkit.data.augment import MultiCropAugmentation
from sslkit.data.collate import MultiCropCollate
from sslkit.engine.curriculum import Stage, first_global_size, resolve_stages, stage_starts
from sslkit.engine.schedules import CurriculumSchedules, DINOv2Schedules, lr_peak_from_batch
from sslkit.methods.base import SSLMethod
from sslkit.methods.registry import method_spec
from sslkit.nn.timm_backbone import TimmBackbone, is_pooled_arch, timm_name
from sslkit.nn.vit import ViT, build_vit


def build_backbone(cfg: RunConfig, in_chans: int, load_init: bool = True) -> "ViT | TimmBackbone":
    """The recipe's backbone, with ``model.init``'s weights unless ``load_init`` is False (random init)."""
    m = cfg.model
    if is_pooled_arch(m.arch):
        backbone = TimmBackbone(timm_name(m.arch), in_chans=in_chans, **m.timm_kwargs)
        if m.grad_checkpointing:
            _checkpoint_blocks(backbone.model, m.arch)
        return backbone
    # The position table is learned on the first stage's grid (fast-dinov2.md: img_size 112 for the
    # whole run) and interpolated for any other crop size.
    img_size = first_global_size(cfg)
    overrides = {"patch_size": m.patch_size, "img_size": img_size, "in_chans": in_chans,
                 "num_registers": m.num_registers, "drop_path_rate": m.drop_path_rate,
                 "layerscale_init": m.layerscale_init}
    for key in ("embed_dim", "depth", "num_heads"):
        if getattr(m, key) is not None:
            overrides[key] = getattr(m, key)
    vit = build_vit(m.arch, **overrides)
    if m.init and load_init:
        from sslkit.nn.pretrained_weights import WeightsError, load_pretrained_vit

        try:
            load_pretrained_vit(vit, m.init)
        except WeightsError as err:
            raise ConfigError(f"Config key 'model.init': {err}") from None
    if m.grad_checkpointing:
        _checkpoint_blocks(vit, m.arch)
    return vit


def _checkpoint_blocks(model, arch: str) -> None:
    """timm's ``set_grad_checkpointing``; one sentence if the model has none."""
    try:
        model.set_grad_checkpointing(True)
    except (AttributeError, NotImplementedError, AssertionError):
        raise ConfigError(f"Config key 'model.grad_checkpointing': the backbone '{arch}' does not support "
                          "activation checkpointing; set it to false.") from None


def build_method(cfg: RunConfig, in_chans: int) -> SSLMethod:
    """The recipe's method (``sslkit.methods.registry``) around a freshly built backbone."""
    backbone = build_backbone(cfg, in_chans)
    method = method_spec(cfg.method).build(cfg, backbone, in_chans)
    if not method.feeds_masked_crops and hasattr(backbone, "mask_token"):  # timm backbones have none
        # Only iBOT feeds masked crops through the backbone (MAE drops its masked patches instead): a
        # trainable mask token that never gets a gradient makes DDP stop with "parameters that were not
        # used in producing loss".
        backbone.mask_token.requires_grad_(False)
    return method


def build_augmentation(cfg: RunConfig, channels: int, mean, std, stage: Optional[Stage] = None) -> Callable:
    """The per-image view maker of one resolved curriculum stage (the first stage when ``stage`` is None)."""
    c = cfg.crops
    stage = stage or resolve_stages(cfg)[0]
    photometric = {} if c.photometric else {"color_jitter": 0.0, "grayscale": 0.0, "solarize": 0.0, "blur": False}
    augmentation = MultiCropAugmentation(stage.global_size, stage.local_size,
                                         n_global=c.n_global, n_local=c.n_local,
                                         global_scale=c.global_scale, local_scale=c.local_scale,
                                         blur_sigma=c.blur_sigma, jitter_strength=c.jitter_strength,
                                         global_blur_p=tuple(c.global_blur_p),
                                         mean=mean, std=std, channels=channels,
                                         **({"solarize": c.solarize_p} | photometric))
    before = _before_cropping(stage.settings)
    if not before:
        return augmentation
    return ImageThenViews(before, augmentation)


class ImageThenViews:
    """Apply image-level transforms (noise patching, low-pass) to the whole image, then cut the views."""

    def __init__(self, before: list[Callable], views: Callable):
        self.before, self.views = before, views

    def __call__(self, image):
        for transform in self.before:
            image = transform(image)
        return self.views(image)


def _before_cropping(stage: StageConfig) -> list[Callable]:
    """Whole-image transforms of a stage, applied before the views are cut. Their random draws come
    from torch's generator, which the stream seeds per position (resume- and worker-exact)."""
    transforms: list[Callable] = []
    if stage.lowpass_cutoff is not None and stage.lowpass_cutoff < 1:
        from sslkit.functional.lowpass import lowpass_fourier

        cutoff = stage.lowpass_cutoff
        transforms.append(lambda image: lowpass_fourier(image, cutoff).clamp(0, 1))
    if stage.noise_patch_blur:
        from sslkit.data.noise_patch import GaussianBlurPatch

        transforms.append(GaussianBlurPatch())
    elif stage.noise_patch > 0:
        from sslkit.data.noise_patch import GaussianNoisePatch

        transforms.append(GaussianNoisePatch(max_scale=stage.noise_patch))
    return transforms


def build_views(cfg: RunConfig, channels: int, mean, std) -> tuple[MultiCropAugmentation, MultiCropCollate]:
    """The per-image augmentation (of the first stage) and the batch collate (with the method's masks)."""
    augmentation = build_augmentation(cfg, channels, mean, std, resolve_stages(cfg)[0])
    collate = method_spec(cfg.method).collate(cfg)
    return augmentation, collate


def build_schedules(cfg: RunConfig, iters_per_epoch: int, global_batch: int) -> CurriculumSchedules:
    """lr warm-up + cosine, weight-decay cosine (every method); EMA momentum, teacher temperature and
    last-layer freeze (read by DINOv2 only; the others ignore them); per curriculum stage."""
    total = max(1, int(math.ceil(cfg.optim.epochs * iters_per_epoch)))
    starts = stage_starts(cfg, total)
    ends = starts[1:] + [total]
    stages = []
    for k, (stage, start, end) in enumerate(zip(resolve_stages(cfg), starts, ends)):
        if end <= start:
            raise ConfigError(f"Config key 'curriculum[{k}].fraction' leaves stage {k} with no step "
                              f"(the run has {total}); raise the fraction or train longer.")
        restart = k > 0 and stage.settings.restart_schedules
        length = end - start if restart else total
        # A restarted stage is a short run of its own: its warm-ups (recipe values in epochs of the
        # whole run) are capped at half of it, so a recipe fits any dataset size (fast-dinov2-tiny on
        # 'shapes': a 62-step warm-up in a 46-step stage).
        cap = length / 2 / iters_per_epoch if restart else None
        stages.append((start, _schedules(cfg, length, iters_per_epoch, global_batch, cap), restart))
    return CurriculumSchedules(stages=tuple(stages), total_iters=total)


def _schedules(cfg: RunConfig, total: int, iters_per_epoch: int, global_batch: int,
               warmup_cap_epochs: Optional[float] = None) -> DINOv2Schedules:
    o = cfg.optim
    teacher = method_spec(cfg.method).teacher_schedules
    # Without the method's teacher schedules: no temperature warm-up, no last-layer freeze.
    t = teacher(cfg) if teacher is not None else {"teacher_temp_warmup_epochs": 0, "freeze_last_layer_epochs": 0}

    def capped(epochs: float) -> float:
        return epochs if warmup_cap_epochs is None else min(epochs, warmup_cap_epochs)

    try:
        return DINOv2Schedules(
            total_iters=total, iters_per_epoch=iters_per_epoch,
            lr_peak=lr_peak_from_batch(o.base_lr, global_batch), lr_min=o.min_lr, lr_warmup_epochs=capped(o.warmup_epochs),
            wd_start=o.weight_decay, wd_end=o.weight_decay_end,
            momentum_start=o.momentum_teacher, momentum_end=o.momentum_teacher_end,
            **{**t, "freeze_last_layer_epochs": capped(t["freeze_last_layer_epochs"])},
            # only at the start of the run: a stage that restarts its schedules does not freeze again
            freeze_backbone_epochs=o.freeze_backbone_epochs if warmup_cap_epochs is None else 0.0,
        )
    except ValueError as err:  # e.g. a warm-up longer than the run: name the recipe keys
        raise ConfigError(f"{err} (recipe keys optim.epochs, optim.iters_per_epoch, optim.warmup_epochs, "
                          f"dinov2.warmup_teacher_temp_epochs, optim.freeze_last_layer_epochs, "
                          f"optim.freeze_backbone_epochs)") from err
