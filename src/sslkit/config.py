"""Run configuration: typed dataclasses, loadable from YAML, overridable with ``key.sub=value``.

Every value is checked before training starts. A bad key or value raises :class:`ConfigError`
with one sentence naming the key and the allowed keys or values, so a typo never costs a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from sslkit.data.data_config import DataConfig  # noqa: F401  (the recipe's `data` section)


class ConfigError(ValueError):
    """A recipe or a command-line override names an unknown key or holds a bad value."""


# ---------------------------------------------------------------------------------------------
# The schema. Defaults are the DINOv2 reference values (facebookresearch/dinov2
# dinov2/configs/ssl_default_config.yaml) except where a comment says otherwise.
# ---------------------------------------------------------------------------------------------


@dataclass
class CropsConfig:
    """Multi-crop views (spec dinov2.md step 1)."""

    global_size: int = 224
    local_size: int = 96
    n_global: int = 2
    n_local: int = 8
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    # Gaussian blur sigma in pixels of the crop: the reference's (0.1, 2) is meant for 224 px crops;
    # scale it with the crop size for small images (2 px of blur erases a shape at 32 px).
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    # ColorJitter strengths (brightness, contrast, saturation, hue), applied with p 0.8.
    jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    # Blur probability on global crops 1 and 2 (the DINO/BYOL asymmetry; SimCLR blurs both with p 0.5)
    # and solarize probability on global crop 2 (SimCLR: 0).
    global_blur_p: tuple[float, float] = (1.0, 0.1)
    solarize_p: float = 0.2
    # false: crop and flip only (jitter, grayscale, blur and solarize off), MAE's augmentation.
    photometric: bool = True


@dataclass
class ModelConfig:
    """Backbone: an sslkit ViT preset (the other keys override it), or any timm model as ``timm:NAME``."""

    # vit_tiny | vit_small | vit_base | vit_large; or, for methods that compare pooled embeddings (SimCLR,
    # VICReg), cnn_small (sslkit's small CNN, sslkit.nn.convnet) or timm:NAME (e.g. timm:resnet18).
    # DINOv2's iBOT and MAE need the sslkit ViT's patch tokens.
    arch: str = "vit_small"
    timm_kwargs: dict = field(default_factory=dict)  # timm.create_model keyword arguments (timm:NAME only)
    patch_size: int = 16
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    num_registers: int = 0
    drop_path_rate: float = 0.1
    layerscale_init: Optional[float] = 1e-5
    # Start from public weights (a ViT preset only): a timm checkpoint (.safetensors/.pth), a transformers
    # Dinov2Model folder, or a facebookresearch/dinov2 hub .pth; positions, patch size and channels are fitted
    # to this recipe (sslkit.nn.pretrained_weights). The teacher starts as a copy; heads start fresh.
    init: Optional[str] = None
    # Recompute each block's activations in backward instead of keeping them (torch.utils.checkpoint through
    # timm's checkpoint_seq): less memory for large backbones, one more backbone forward per step (a ViT preset
    # or a timm model that supports it). benchmarks/RESULTS.md measures the trade.
    grad_checkpointing: bool = False


@dataclass
class OptimConfig:
    """Optimiser and schedules (spec dinov2.md step 6). An epoch is ``iters_per_epoch`` steps."""

    epochs: float = 100
    iters_per_epoch: Optional[int] = 1250  # None: one pass over the training set
    batch_size: int = 64  # per device
    base_lr: float = 0.004  # scaled by sqrt(global_batch / 1024)
    min_lr: float = 1e-6
    warmup_epochs: float = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.992
    momentum_teacher_end: float = 1.0
    freeze_last_layer_epochs: float = 1
    # Continued pretraining (model.init): the student backbone's lr is 0 for this many epochs while the fresh
    # heads settle (LightlyTrain's student_freeze_backbone_epochs); 0: off.
    freeze_backbone_epochs: float = 0.0
    layer_decay: float = 0.9
    patch_embed_lr_mult: float = 0.2
    clip_grad: float = 3.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TrainerConfig:
    """Passed through to Lightning, so the same recipe runs on a laptop or a cluster."""

    accelerator: str = "cpu"
    devices: Union[int, str] = 1
    strategy: str = "auto"  # 'ddp', 'fsdp', ...
    # With strategy=fsdp: full_shard (parameters, gradients and optimiser state sharded), shard_grad_op
    # (parameters kept whole between forward and backward) or hybrid_shard (sharded within a node,
    # replicated across nodes). See sslkit.engine.strategy.
    fsdp_sharding: str = "full_shard"
    precision: str = "32-true"  # e.g. 'bf16-mixed'
    num_nodes: int = 1
    seed: int = 0
    deterministic: bool = False
    checkpoint_every_n_steps: int = 500
    log_every_n_steps: int = 10
    max_steps: Optional[int] = None  # stop early (schedules still span the whole recipe)
    progress_bar: bool = True
    # torch.compile the transformer blocks and head MLPs of the student and teacher, in place (sslkit.engine.compile);
    # the first steps pay the compilation. Not with strategy=fsdp.
    compile: bool = False


@dataclass
class MonitorConfig:
    """kNN accuracy of the teacher on a held-out split while training (spec dinov2.md step 7)."""

    knn_every_n_steps: int = 0  # 0: only at the end
    knn_k: int = 20
    knn_temperature: float = 0.07
    max_bank_size: int = 20000  # training images used as the kNN memory bank
    baselines: bool = True  # also report raw pixels and a random-init backbone at the end
    # What the kNN scores: "cls" (the backbone's output: a ViT's class token, a CNN's pooled features)
    # or "mean" (a ViT's patch tokens averaged: what MAE's loss trains). The random-init baseline uses
    # the same pooling; `sslkit evaluate --pooling` offers the same choice for the exported backbone.
    knn_pooling: str = "cls"
    # Label-free RankMe / alpha-ReQ / LiDAR of the training embeddings (no extra forward pass):
    # a window of repr_samples images opens every repr_every_n_steps steps; null turns it off.
    repr_every_n_steps: Optional[int] = None
    repr_samples: int = 2048
    # Count the FLOPs of a training step once (meta device, a few seconds) and log the running total
    # as train/flops (DINOv2); the total goes into report.json. `sslkit flops RECIPE` prints it upfront.
    count_flops: bool = False


@dataclass
class StageConfig:
    """One stage of a curriculum: a share of the run with its own crops, augmentations and data.

    Fast DINOv2 (fast-dinov2.md): ``[{fraction: 0.75, global_size: 112, local_size: 48},
    {fraction: 0.25, noise_patch: 0.5, restart_schedules: true}]``. Noise-robust DINOv2
    (noisy-dinov2.md): a first stage on ``data: DENOISED_COPY``, a second on the noisy data.
    Unset keys fall back to the run's ``crops`` / ``data.source``.
    """

    fraction: float = 1.0  # share of the run's steps; the fractions of a curriculum sum to 1
    global_size: Optional[int] = None
    local_size: Optional[int] = None
    noise_patch: float = 0.0  # Gaussian noise patching: max noise std s_max (0: off)
    noise_patch_blur: bool = False  # the patch-wise Gaussian blur variant instead of noise
    lowpass_cutoff: Optional[float] = None  # Fourier low-pass radius, fraction of the corner frequency (1 or null: off)
    restart_schedules: bool = False  # lr/wd/EMA/teacher-temp restart as a fresh run of this length
    data: Optional[str] = None  # another source for this stage (e.g. a denoised copy)
    # Teacher guidance (noisy-dinov2.md step 5): weight λ of the extra DINO + iBOT terms against a
    # frozen copy of the teacher taken when this stage starts, fed the denoised twins of the crops
    # from `paired_data` (a copy aligned image by image with this stage's data). 0: off.
    teacher_guidance: float = 0.0
    paired_data: Optional[str] = None


def _run_config_class() -> type:
    """``RunConfig``: the generic sections plus one section per registered method (``sslkit.methods``),
    named after it and typed by the method's own dataclass, in the order of the YAML files so far
    (method, data, crops, model, the method sections by name, optim, trainer, monitor, curriculum)."""
    from sslkit.methods.registry import registered_methods

    methods = registered_methods()
    generic_head = [("method", Literal[tuple(methods)], field(default="dinov2")),
                    ("data", DataConfig, field(default_factory=DataConfig)),
                    ("crops", CropsConfig, field(default_factory=CropsConfig)),
                    ("model", ModelConfig, field(default_factory=ModelConfig))]
    sections = [(name, spec.config, field(default_factory=spec.config)) for name, spec in methods.items()]
    generic_tail = [("optim", OptimConfig, field(default_factory=OptimConfig)),
                    ("trainer", TrainerConfig, field(default_factory=TrainerConfig)),
                    ("monitor", MonitorConfig, field(default_factory=MonitorConfig)),
                    # empty: one stage, the crops above
                    ("curriculum", list[StageConfig], field(default_factory=list))]
    cls = dataclasses.make_dataclass("RunConfig", generic_head + sections + generic_tail,
                                     namespace={"__doc__": "One pretraining run.", "__module__": __name__})
    return cls


RunConfig = _run_config_class()


def __getattr__(name: str) -> Any:
    """The method sections' dataclasses by their old names here (``sslkit.config.DINOv2Config``); they live
    in their method's file now."""
    from sslkit.methods.registry import registered_methods

    for spec in registered_methods().values():
        if spec.config.__name__ == name:
            return spec.config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Generic, schema-driven conversion and validation.
# ---------------------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(tp)]
        return " or ".join(parts)
    if origin is tuple:
        return "a list [" + ", ".join(_describe(a) for a in typing.get_args(tp)) + "]"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"Config key '{key}' got {value!r}; expected {_describe(tp)}.")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise bad
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, str):  # PyYAML reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if tp is dict or origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise bad
    raise bad


def _unknown_key(key: str, allowed: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"Unknown config key '{key}'.{hint} Allowed keys here: {', '.join(allowed)}.")


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, validating every key and value."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config section '{prefix or '<root>'}' must be a mapping, got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            raise _unknown_key(full, list(fields))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, prefix=full + ".")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            if value is None:
                value = []
            if not isinstance(value, list):
                raise ConfigError(f"Config key '{full}' must be a list of mappings, got {value!r}.")
            kwargs[key] = [from_dict(typing.get_args(tp)[0], item, prefix=f"{full}[{i}].")
                           for i, item in enumerate(value)]
        else:
            kwargs[key] = _coerce(value, tp, full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples as lists) for YAML and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'optim.base_lr=1e-3'`` -> (['optim', 'base_lr'], 0.001). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"Override '{text}' is not of the form key.sub=value.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"Override '{text}' has an empty key.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def merge_override(tree: dict, path: list[str], value: Any) -> None:
    """Set ``tree[path[0]][path[1]]... = value`` in a nested dict, creating sections."""
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def read_recipe(recipe: str | Path) -> dict:
    """The nested dict of a YAML recipe file; a missing or malformed file is a ConfigError."""
    path = Path(recipe)
    if not path.is_file():
        raise ConfigError(f"Recipe file '{path}' does not exist; pass a path such as recipes/dinov2-tiny.yaml.")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"Recipe file '{path}' is not a text file (not UTF-8); pass a YAML recipe such as "
                          "recipes/dinov2-tiny.yaml.") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"Recipe file '{path}' is not valid YAML: {err}") from err
    if not isinstance(tree, dict):
        raise ConfigError(f"Recipe file '{path}' must hold a mapping of sections (data:, model:, ...).")
    return tree


def load_config(recipe: str | Path | dict | None = None, overrides: list[str] = (), cls: type = RunConfig) -> Any:
    """Read a recipe (YAML path or nested dict), apply ``key.sub=value`` overrides, validate."""
    if recipe is None:
        tree: dict = {}
    elif isinstance(recipe, dict):
        tree = dict(recipe)
    else:
        tree = read_recipe(recipe)
    for text in overrides:
        keys, value = parse_override(text)
        merge_override(tree, keys, value)
    cfg = from_dict(cls, tree)
    validate(cfg)
    return cfg


VIT_PRESETS = ("vit_tiny", "vit_small", "vit_base", "vit_large")


def _validate_arch(cfg: "RunConfig", need) -> None:
    """``model.arch``: a ViT preset, or ``timm:NAME`` naming a timm model, for a method that can use it."""
    from sslkit.nn.convnet import SSLKIT_CNNS

    arch, m = cfg.model.arch, cfg.model
    if not arch.startswith("timm:") and arch not in SSLKIT_CNNS:
        need(arch in VIT_PRESETS, f"Config key 'model.arch' got {arch!r}; expected one of "
                                  f"{list(VIT_PRESETS) + list(SSLKIT_CNNS)} or timm:NAME (e.g. timm:resnet18).")
        need(not m.timm_kwargs, "Config key 'model.timm_kwargs' applies to model.arch=timm:NAME or cnn_small only; "
                                f"drop it for {arch!r}.")
        need(m.init is None or Path(m.init).exists(),
             f"Config key 'model.init' = '{m.init}' does not exist; pass a .safetensors/.pth file or a transformers "
             f"Dinov2Model folder.")
        return
    need(m.init is None, f"Config key 'model.init' loads ViT weights into sslkit's ViT; for model.arch={arch} drop "
                         f"it (timm models load weights through timm).")
    from sslkit.nn.timm_backbone import check_timm_name

    try:
        check_timm_name(arch[len("timm:"):] if arch.startswith("timm:") else arch)
    except ValueError as err:
        raise ConfigError(f"Config key 'model.arch' = {arch!r}: {err}") from None
    from sslkit.methods.registry import method_spec

    spec = method_spec(cfg.method)
    problem = spec.patch_token_problem(cfg)
    need(problem is None, problem or "")
    if spec.counts_flops:
        need(not cfg.monitor.count_flops, f"monitor.count_flops counts a ViT's FLOPs; set it to false for "
                                          f"model.arch={arch}.")
    need(cfg.optim.layer_decay == 1.0,
         f"Config key 'optim.layer_decay' = {cfg.optim.layer_decay} needs ViT blocks; set optim.layer_decay=1.0 "
         f"for model.arch={arch}.")
    for key, value in m.timm_kwargs.items():
        need(key not in ("num_classes", "in_chans", "pretrained"),
             f"Config key 'model.timm_kwargs.{key}' is set by sslkit (classifier removed, channels from the "
             "data, never downloaded); drop it.")
    from sslkit.nn.timm_backbone import timm_kwargs_problem

    problem = timm_kwargs_problem(m.timm_kwargs)
    need(problem is None, f"Config key 'model.timm_kwargs.{problem[0]}' {problem[1]}." if problem else "")


# Lightning's precision strings (lightning.fabric _PRECISION_INPUT_STR), and the accelerators it knows.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "xpu", "hpu", "tpu", "auto")


def _validate_trainer(t: "TrainerConfig", need) -> None:
    """``trainer.*`` values that Lightning would otherwise reject with a traceback, or take silently."""
    need(t.precision in PRECISIONS, f"Config key 'trainer.precision' got {t.precision!r}; expected one of "
                                    f"{', '.join(PRECISIONS)} (bf16-mixed is the fast choice on CPUs with bf16).")
    need(str(t.accelerator).lower() in ACCELERATORS,
         f"Config key 'trainer.accelerator' got {t.accelerator!r}; expected one of {', '.join(ACCELERATORS)}.")
    need(not (t.compile and t.strategy == "fsdp"),
         "Config key 'trainer.compile' = true is not supported with trainer.strategy=fsdp (the FSDP units wrap the "
         "same blocks); use ddp, or set trainer.compile=false.")
    if t.strategy not in ("auto", "fsdp"):
        from lightning.pytorch.strategies import StrategyRegistry

        known = StrategyRegistry.available_strategies()
        need(t.strategy in known, f"Config key 'trainer.strategy' got {t.strategy!r}; expected auto, fsdp or one "
                                  f"of Lightning's {', '.join(s for s in known if '_find_unused' not in s)}.")
    devices = t.devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int):
        need(devices >= 1 or devices == -1, f"Config key 'trainer.devices' = {t.devices} must be a count >= 1, "
                                            "-1 (all), 'auto' or a list of device indices such as '0,1'.")
    else:
        need(devices == "auto" or all(part.strip().isdigit() for part in str(devices).strip("[]").split(",")),
             f"Config key 'trainer.devices' = {t.devices!r} must be a count >= 1, -1 (all), 'auto' or a list of "
             "device indices such as '0,1'.")
    need(t.num_nodes >= 1, f"Config key 'trainer.num_nodes' must be at least 1, got {t.num_nodes}.")
    need(t.log_every_n_steps >= 1, f"Config key 'trainer.log_every_n_steps' must be at least 1, got {t.log_every_n_steps}.")
    need(t.max_steps is None or t.max_steps >= 1,
         f"Config key 'trainer.max_steps' = {t.max_steps} must be at least 1; leave it unset (null) to train the "
         "whole schedule.")


def _validate_model_shape(m: "ModelConfig", need) -> None:
    """The ViT's width, depth, heads, patch and registers (preset values with the overrides applied) before
    anything is built, against the bounds a backbone.json is held to (:func:`sslkit.nn.bounds.vit_shape_problem`)."""
    from sslkit.nn.bounds import vit_shape_problem
    from sslkit.nn.vit import ARCHS

    preset = ARCHS.get(m.arch, {})
    width = m.embed_dim if m.embed_dim is not None else preset.get("embed_dim")
    depth = m.depth if m.depth is not None else preset.get("depth")
    heads = m.num_heads if m.num_heads is not None else preset.get("num_heads")
    problem = vit_shape_problem(width, depth, heads, m.patch_size, m.num_registers)
    need(problem is None, f"Config key 'model.{problem[0]}' {problem[1]}." if problem else "")
    need(0 <= m.drop_path_rate < 1, f"Config key 'model.drop_path_rate' must lie in [0, 1), got {m.drop_path_rate}.")


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that the types alone cannot express."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    from sslkit.nn.timm_backbone import is_pooled_arch

    c, m, o = cfg.crops, cfg.model, cfg.optim
    _validate_arch(cfg, need)
    _validate_trainer(cfg.trainer, need)
    if cfg.model.arch in VIT_PRESETS:
        _validate_model_shape(m, need)
    need(c.n_global >= 1, f"Config key 'crops.n_global' must be at least 1, got {c.n_global}.")
    need(c.n_local >= 0, f"Config key 'crops.n_local' must be 0 or more, got {c.n_local}.")
    from sslkit.methods.registry import method_spec

    spec = method_spec(cfg.method)
    spec.check(cfg, need)  # the method's own rules: its crops, its section's value combinations
    from sslkit.nn.bounds import MAX_IMAGE_SIZE

    for key, size in (("crops.global_size", c.global_size), ("crops.local_size", c.local_size)):
        need(size > 0 and (size % m.patch_size == 0 or is_pooled_arch(m.arch)),
             f"Config key '{key}' = {size} must be a positive multiple of model.patch_size = {m.patch_size}.")
        # The first global size is the ViT's img_size, which a backbone.json is held to as well.
        need(size <= MAX_IMAGE_SIZE, f"Config key '{key}' = {size} must be at most {MAX_IMAGE_SIZE} pixels.")
    need(all(v >= 0 for v in c.jitter_strength) and c.jitter_strength[3] <= 0.5,
         f"Config key 'crops.jitter_strength' = {list(c.jitter_strength)} needs values >= 0 and hue <= 0.5.")
    need(0 < c.blur_sigma[0] <= c.blur_sigma[1],
         f"Config key 'crops.blur_sigma' = {list(c.blur_sigma)} must satisfy 0 < low <= high.")
    need(all(0 <= p <= 1 for p in c.global_blur_p),
         f"Config key 'crops.global_blur_p' = {list(c.global_blur_p)} needs two probabilities in [0, 1].")
    need(0 <= c.solarize_p <= 1, f"Config key 'crops.solarize_p' = {c.solarize_p} must be a probability in [0, 1].")
    for key, (lo, hi) in (("crops.global_scale", c.global_scale), ("crops.local_scale", c.local_scale)):
        need(0 < lo <= hi <= 1, f"Config key '{key}' = [{lo}, {hi}] must satisfy 0 < low <= high <= 1.")
    need(o.batch_size >= 2, f"Config key 'optim.batch_size' must be at least 2 (KoLeo needs neighbours), got {o.batch_size}.")
    need(o.epochs > 0, f"Config key 'optim.epochs' must be positive, got {o.epochs}.")
    need(o.iters_per_epoch is None or o.iters_per_epoch > 0,
         f"Config key 'optim.iters_per_epoch' must be positive or null, got {o.iters_per_epoch}.")
    need(0 < o.layer_decay <= 1, f"Config key 'optim.layer_decay' must lie in (0, 1], got {o.layer_decay}.")
    need(0 <= cfg.data.holdout_fraction < 1,
         f"Config key 'data.holdout_fraction' must lie in [0, 1), got {cfg.data.holdout_fraction}.")
    need(cfg.data.channels in ("auto", 1, 3), f"Config key 'data.channels' must be 'auto', 1 or 3, got {cfg.data.channels!r}.")
    window = cfg.data.dicom_window
    need(window is None or window[0] < window[1],
         f"Config key 'data.dicom_window' = {list(window or ())} must be [low, high] with low < high (modality units, "
         "e.g. [-1000, 2000] Hounsfield), or null.")
    if cfg.curriculum:
        total = sum(stage.fraction for stage in cfg.curriculum)
        need(abs(total - 1.0) < 1e-6, f"Config key 'curriculum': the stage fractions must sum to 1, got {total:g}.")
        for i, stage in enumerate(cfg.curriculum):
            key = f"curriculum[{i}]"
            need(stage.fraction > 0, f"Config key '{key}.fraction' must be positive, got {stage.fraction}.")
            for name in ("global_size", "local_size"):
                size = getattr(stage, name)
                need(size is None or (size > 0 and size % m.patch_size == 0),
                     f"Config key '{key}.{name}' = {size} must be a positive multiple of model.patch_size = {m.patch_size}.")
                need(size is None or size <= MAX_IMAGE_SIZE,
                     f"Config key '{key}.{name}' = {size} must be at most {MAX_IMAGE_SIZE} pixels.")
            need(stage.noise_patch >= 0, f"Config key '{key}.noise_patch' must be 0 (off) or a positive std, got {stage.noise_patch}.")
            need(stage.teacher_guidance >= 0, f"Config key '{key}.teacher_guidance' must be >= 0, got {stage.teacher_guidance}.")
            need(stage.teacher_guidance == 0 or (stage.paired_data is not None and i > 0 and spec.teacher_guidance),
                 f"Config key '{key}.teacher_guidance' needs a DINOv2 stage after the first with "
                 f"'{key}.paired_data' (the denoised copy aligned with this stage's data).")
            need(stage.paired_data is None or (stage.noise_patch == 0 and stage.lowpass_cutoff is None),
                 f"Config key '{key}.paired_data' cannot be combined with noise_patch or lowpass_cutoff.")
            need(stage.lowpass_cutoff is None or 0 < stage.lowpass_cutoff <= 1,
                 f"Config key '{key}.lowpass_cutoff' must lie in (0, 1] (a fraction of the corner frequency) or be null, got {stage.lowpass_cutoff}.")
    need(cfg.monitor.knn_pooling in ("cls", "mean"),
         f"Config key 'monitor.knn_pooling' must be 'cls' or 'mean', got {cfg.monitor.knn_pooling!r}.")
    if cfg.monitor.knn_pooling == "mean":
        need(not is_pooled_arch(m.arch), f"Config key 'monitor.knn_pooling' = 'mean' needs a ViT's patch "
                                         f"tokens; model.arch={m.arch} returns pooled features: use 'cls'.")
    need(cfg.trainer.checkpoint_every_n_steps >= 0,
         f"Config key 'trainer.checkpoint_every_n_steps' must be 0 (off) or positive, got {cfg.trainer.checkpoint_every_n_steps}.")
    # Last, so that the specific messages above win: every numeric key against its range (config_ranges.py).
    from sslkit.config_ranges import check_ranges

    problem = check_ranges(cfg)
    need(problem is None, problem or "")


def recipe_keys_help(width: int = 100) -> str:
    """Every recipe key with its default, one section per paragraph (for ``sslkit pretrain --help``)."""
    import textwrap

    lines = []
    for section in dataclasses.fields(RunConfig):
        value = getattr(RunConfig(), section.name)
        if dataclasses.is_dataclass(value):
            items = " ".join(f"{f.name}={_show(getattr(value, f.name))}" for f in dataclasses.fields(value))
            lines.append(textwrap.fill(items, width, initial_indent=f"  {section.name}: ",
                                       subsequent_indent=" " * (len(section.name) + 4)))
        else:
            lines.append(f"  {section.name}: {_show(value)}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
