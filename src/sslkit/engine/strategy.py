"""From ``cfg.trainer`` to a Lightning strategy, and what sharded training changes in the engine.

``trainer.strategy`` passes through to Lightning unchanged (``auto``, ``ddp``, ...), except
``fsdp``, which becomes an :class:`SSLFSDPStrategy`: FSDP (PyTorch ``FullyShardedDataParallel``)
with one unit per transformer block, per backbone and per head, original parameters kept
(``use_orig_params``) and full (single-file) state dicts in checkpoints.

Under FSDP every rank holds only a shard of each unit's flat parameter between forward passes. Three
things in the engine read parameters outside a forward and must be told:

* gradient clipping: the norm of a sub-module's gradient is a sum over all shards
  (:func:`clip_grad_norm_`);
* the EMA teacher: it pairs teacher and student shards tensor by tensor, which is right only when
  both networks are cut into identical units (see ``_wrap_policy``);
* reading a whole network (kNN monitor, backbone export): every rank gathers, one rank uses it
  (:func:`full_backbone`, :class:`GatheredKNNMonitor`).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Optional

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from sslkit.config import ConfigError, TrainerConfig
from sslkit.engine.callbacks import KNNMonitor, knn_pooled, knn_top1
from sslkit.nn.vit import ViT

__all__ = ["FSDP_SHARDING", "GatheredKNNMonitor", "SSLFSDPStrategy", "build_strategy", "check_accelerator", "clip_grad_norm_",
           "full_backbone", "sharding_group"]

# Recipe value -> torch ShardingStrategy name. NO_SHARD is left out: it is DDP, use trainer.strategy=ddp.
FSDP_SHARDING = {"full_shard": "FULL_SHARD", "shard_grad_op": "SHARD_GRAD_OP", "hybrid_shard": "HYBRID_SHARD"}

# The methods of a backbone that the SSL methods call instead of ``forward`` (DINOv2 reads the
# token dict, MAE encodes the visible patches only); FSDP must gather the unit's parameters around them.
_BACKBONE_ENTRY_POINTS = ("forward_features", "forward_visible")


def _wrap_policy() -> set[type[nn.Module]]:
    """Module classes that become their own FSDP unit.

    Each transformer ``Block`` is a unit (the memory saving: one block's full parameters at a time).
    Each backbone and each head is a unit too, and that is about correctness, not memory: the EMA
    update θ_t ← m θ_t + (1 − m) θ_s runs on each rank's local shards, pairing teacher and student
    tensors by name. It is right only if a teacher tensor's local shard covers the same elements as
    the student tensor's. With one root unit holding the non-block parameters of both networks
    (patch embedding, tokens, final norm, head MLPs), the flat parameter would be
    [student pieces ..., teacher pieces ...] cut at the middle of the whole, so the student's
    cls_token might sit wholly on rank 0 while the teacher's is split between ranks: the EMA would
    average unrelated pieces (or fail on shapes). With one unit per backbone and per head the
    student's unit and its deep-copied teacher twin have identical flat layouts and identical cut
    points, so every rank's shards line up element for element.
    """
    from timm.models.vision_transformer import Block

    from sslkit.nn.timm_backbone import TimmBackbone

    from sslkit.methods.registry import registered_methods

    # Every method declares its heads (MethodSpec.wrap_units), so a new head cannot be forgotten here.
    heads = {unit for spec in registered_methods().values() for unit in spec.wrap_units}
    return {Block, ViT, TimmBackbone, *heads}


def _route_through_fsdp(wrapper: nn.Module, name: str) -> None:
    """Make ``wrapper.<name>(...)`` run ``inner.<name>(...)`` inside the FSDP unit's forward.

    FSDP gathers a unit's parameters in its ``forward``; a backbone's other entry points
    (``forward_features``) would otherwise see only the local shard. The unit's ``forward`` is
    called with the inner module's ``forward`` temporarily pointing at the wanted method.
    """
    inner = wrapper.module
    method = getattr(inner, name)

    def routed(*args: Any, **kwargs: Any) -> Any:
        had_own_forward = "forward" in inner.__dict__
        own_forward = inner.__dict__.get("forward")

        def restore() -> None:
            if had_own_forward:
                inner.forward = own_forward
            else:
                inner.__dict__.pop("forward", None)

        def call_once(*a: Any, **k: Any) -> Any:
            restore()  # before running, so nested calls inside see the real forward
            return method(*a, **k)

        inner.forward = call_once
        try:
            return wrapper(*args, **kwargs)
        finally:
            restore()

    object.__setattr__(wrapper, name, routed)


class SSLFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP strategy for sslkit models, on CPUs (gloo) and GPUs (nccl) alike.

    Why a subclass: Lightning 2.6 refuses ``strategy="fsdp"`` unless the accelerator is CUDA, by an
    exact-type check (``type(strategy) is FSDPStrategy`` in its accelerator connector). That is a
    policy, not a limitation: PyTorch's FSDP shards, gathers and reduce-scatters through any process
    group, and on the CPU the gloo backend provides them. The subclass passes that check, so the same
    class runs a 2-process CPU test and a GPU cluster (the CPU path is the tested one). It also:

    * wraps each backbone and head as its own FSDP root, blocks nested (``_setup_model``);
    * sends the backbones' ``forward_features`` / ``forward_visible`` through their FSDP unit
      (:func:`_route_through_fsdp`);
    * frees the frozen teacher's gathered parameters after each forward (:func:`_free_after_forward`);
    * writes full checkpoints whose optimiser state is keyed like DDP's, and reads them with
      ``torch.load(weights_only=True)`` (``optimizer_state``, ``load_checkpoint``).
    """

    # ------------------------------------------------------------------ checkpoints
    def _full_state_dict_type(self, rank0_only: bool):
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        # No CPU offload when the model already lives on the CPU: FSDP's full optimiser-state gather
        # reuses one all-gather buffer for every state tensor and relies on ``.cpu()`` to copy each
        # result out of it; on the CPU ``.cpu()`` copies nothing, and every ``exp_avg`` came out equal
        # to ``exp_avg_sq`` (found by tests/cli/test_cli_fsdp.py's resume, torch 2.14). Without offload FSDP clones.
        offload = self.root_device.type != "cpu"
        return FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT,
                                    FullStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
                                    FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only))

    def optimizer_state(self, optimizer) -> dict:
        """The full optimiser state on rank 0, keyed like a DDP checkpoint (parameter positions in the
        optimiser's groups), so a checkpoint resumes under either strategy; empty on other ranks."""
        from lightning.pytorch.core.optimizer import LightningOptimizer
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        if self._state_dict_type != "full":
            return super().optimizer_state(optimizer)
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        with self._full_state_dict_type(rank0_only=True):
            state = FSDP.optim_state_dict(self.model, optimizer)
        if self.global_rank != 0:
            return state
        return FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model, optim=optimizer)

    def lightning_module_state_dict(self) -> dict:
        if self._state_dict_type != "full":
            return super().lightning_module_state_dict()
        with self._full_state_dict_type(rank0_only=True):
            return self.model.state_dict()

    def load_checkpoint(self, checkpoint_path, weights_only: Optional[bool] = None) -> dict:
        """Load a full (single-file) checkpoint with ``torch.load(weights_only=True)``.

        Lightning's own FSDP loader reads the file with a pickle-based lazy loader, which would run
        code hidden in a crafted checkpoint; sslkit reads weights only (DESIGN.md). Every rank reads
        the file, FSDP scatters each full tensor into the local shards. A sharded checkpoint directory is
        refused: torch.distributed.checkpoint unpickles its ``.metadata``, and sslkit never writes one.
        """
        from pathlib import Path

        from lightning.pytorch.trainer.states import TrainerFn
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        from sslkit.engine.checkpoints import why_unreadable

        path = Path(self.broadcast(checkpoint_path))
        if path.is_dir():
            # A sharded (torch.distributed.checkpoint) directory: its .metadata is read with pickle.load, so
            # Lightning's loader would run code hidden in it. sslkit writes full single-file checkpoints only.
            raise ValueError(f"Checkpoint '{path}' is a directory (a sharded checkpoint, whose metadata is a "
                             f"pickle); sslkit resumes only from the single-file checkpoints it writes.")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure to read is "not a checkpoint sslkit can use"
            raise ValueError(f"Checkpoint '{path}' cannot be read ({why_unreadable(path, err)}); resume from a "
                             f"checkpoint sslkit wrote.") from None
        module = self.lightning_module
        with self._full_state_dict_type(rank0_only=False):
            module.load_state_dict(checkpoint.pop("state_dict"), strict=module.strict_loading)
        optimizer_states = checkpoint.get("optimizer_states")
        if optimizer_states is None or module.trainer.state.fn != TrainerFn.FITTING:
            return checkpoint
        if len(optimizer_states) != len(self.optimizers):
            raise RuntimeError(f"The checkpoint '{path}' holds {len(optimizer_states)} optimiser state(s) but the "
                               f"run has {len(self.optimizers)}; resume with the recipe that wrote it.")
        for optimizer, state in zip(self.optimizers, optimizer_states):
            with self._full_state_dict_type(rank0_only=False):
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_NAME, self.model, optim=optimizer)
                state = FSDP.optim_state_dict_to_load(self.model, optimizer, state)
            optimizer.load_state_dict(state)
        return checkpoint

    # ------------------------------------------------------------------ wrapping
    def _setup_model(self, model: nn.Module) -> nn.Module:
        """Wrap every outermost backbone/head of ``model`` as its own FSDP root (blocks nested inside).

        Lightning would wrap the whole LightningModule as one root. That breaks manual optimisation:
        the backward runs inside ``training_step``, i.e. inside the root's forward, so the root never
        sees its outputs' backward and never queues FSDP's end-of-backward callback (the units are
        left mid-backward and the next state dict fails). One root per backbone/head is what
        facebookresearch/dinov2 does (``ssl_meta_arch.py``, ``prepare_for_distributed_training``):
        each root's own output carries the loss gradient, so each root finishes its backward.
        The LightningModule itself stays unwrapped and holds no parameters of its own.
        """
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        if any(isinstance(m, FSDP) for m in model.modules()):
            return model  # already wrapped (e.g. a second fit on the same module)
        roots = _outermost(model, tuple(_wrap_policy()))
        for name in roots:
            parent_name, _, leaf = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            # device_id names the device even on the CPU: Lightning passes ``root_device.index``
            # (None for the CPU), and FSDP then looks for an accelerator and refuses.
            wrapped = FSDP(getattr(parent, leaf), cpu_offload=self.cpu_offload,
                           mixed_precision=self.mixed_precision_config, sharding_strategy=self.sharding_strategy,
                           device_id=self.root_device, **self.kwargs)
            setattr(parent, leaf, wrapped)
        # A trainable parameter outside every unit would be neither sharded nor averaged across
        # ranks: each rank would silently train its own copy.
        loose = [name for name, p in model.named_parameters() if p.requires_grad and "_fsdp_wrapped_module." not in name]
        if loose:
            raise RuntimeError(f"FSDP: trainable parameters outside every backbone/head unit ({loose[:5]}); "
                               f"add their module class to sslkit.engine.strategy._wrap_policy.")
        for name in roots:
            root = model.get_submodule(name)
            if not any(p.requires_grad for p in root.parameters()):
                for unit in FSDP.fsdp_modules(root):  # the root and its blocks
                    unit.register_forward_hook(_free_after_forward)
        for module in model.modules():
            if isinstance(module, FSDP) and isinstance(module.module, ViT):
                for entry in _BACKBONE_ENTRY_POINTS:
                    _route_through_fsdp(module, entry)
        return model


def _free_after_forward(unit: nn.Module, args: Any, output: Any) -> None:
    """Forward hook of a frozen FSDP unit (the EMA teacher's backbones, blocks, heads): drop its gathered copy.

    FSDP keeps some units' gathered parameters after their forward, expecting the backward to use
    and free them: a root unit always, every unit with ``shard_grad_op``. A teacher unit has no
    backward, so the copy would stay — and be reused, without a new all-gather, by the next forward,
    after the EMA has changed the shards: the teacher would run on stale weights (the sharded-step
    test catches exactly that). Freeing it here, as facebookresearch/dinov2 does after the teacher's
    forward (``reshard_fsdp_model``), makes every forward gather the current shards, and saves
    memory during the student's pass. ``_reshard`` is FSDP's own private routine (FSDP1 is frozen
    upstream; the tests pin the behaviour).
    """
    from torch.distributed.fsdp._runtime_utils import _reshard

    handle = unit._handle
    # needs_unshard() is False exactly when the gathered copy is still allocated.
    if handle is not None and handle.uses_sharded_strategy and not handle.needs_unshard():
        _reshard(unit, handle, True)


def _outermost(model: nn.Module, classes: tuple[type[nn.Module], ...]) -> list[str]:
    """Qualified names of the sub-modules of ``classes`` that have no ancestor of ``classes``."""
    names: list[str] = []
    for name, module in model.named_modules():
        if name and isinstance(module, classes) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return names


def wants_sync_batchnorm(trainer_cfg: TrainerConfig) -> bool:
    """Whether Lightning should turn every BatchNorm into ``nn.SyncBatchNorm`` (``Trainer(sync_batchnorm=)``).

    SimCLR's and VICReg's projector BatchNorms normalise with the *global* batch in their references
    (google-research/simclr ``--global_bn``, facebookresearch/vicreg ``convert_sync_batchnorm``); with
    per-device statistics each rank would normalise its own slice (docs/method-audit.md, F4). So: on
    whenever more than one process trains on accelerators. torch's SyncBatchNorm refuses CPU tensors,
    so CPU processes keep per-process statistics (identical on one device; the gap is documented).
    """
    t = trainer_cfg
    accelerator = str(t.accelerator).lower()
    on_accelerator = accelerator in ("gpu", "cuda", "xpu", "hpu", "mps") or (
        accelerator == "auto" and torch.cuda.is_available())
    single = t.num_nodes == 1 and str(t.devices).strip() in ("1", "[0]")
    return on_accelerator and not single


def check_accelerator(trainer_cfg: TrainerConfig) -> None:
    """Refuse an accelerator this machine does not have, or more GPUs than it has, in one sentence.

    Lightning would raise a traceback deep inside ``Trainer``; this runs before anything is written.
    """
    accelerator = str(trainer_cfg.accelerator).lower()
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"Config key 'trainer.accelerator' = {trainer_cfg.accelerator!r}, but torch sees no "
                              "CUDA GPU here (torch.cuda.is_available() is False); use trainer.accelerator=cpu, "
                              "or run on a machine with a GPU and a CUDA build of torch.")
        devices = trainer_cfg.devices
        if isinstance(devices, int) or str(devices).strip().isdigit():
            if int(devices) > torch.cuda.device_count():
                raise ConfigError(f"Config key 'trainer.devices' = {devices} asks for more GPUs than this machine "
                                  f"has ({torch.cuda.device_count()}); use trainer.devices=-1 for all of them.")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("Config key 'trainer.accelerator' = 'mps', but this machine has no Apple GPU; use "
                          "trainer.accelerator=cpu.")


def build_strategy(trainer_cfg: TrainerConfig):
    """The ``strategy=`` argument of ``lightning.Trainer`` for ``trainer_cfg``.

    Strings other than ``fsdp`` are returned unchanged (Lightning resolves them). ``fsdp`` becomes
    an :class:`SSLFSDPStrategy` with the sharding of ``trainer.fsdp_sharding``; an unknown sharding
    raises :class:`~sslkit.config.ConfigError` (call this before anything is written).
    """
    check_accelerator(trainer_cfg)
    sharding = str(trainer_cfg.fsdp_sharding).lower()
    if sharding not in FSDP_SHARDING:
        raise ConfigError(f"Config key 'trainer.fsdp_sharding' got {trainer_cfg.fsdp_sharding!r}; "
                          f"expected one of {', '.join(FSDP_SHARDING)}.")
    if trainer_cfg.strategy != "fsdp":
        return trainer_cfg.strategy
    on_cpu = trainer_cfg.accelerator == "cpu" or (trainer_cfg.accelerator == "auto" and not torch.cuda.is_available())
    if sharding == "hybrid_shard" and on_cpu:
        # FSDP forms its intra-node groups from the accelerator count, which is 1 for the CPU: every
        # rank became its own group and, measured here, the ranks silently stopped averaging gradients.
        raise ConfigError("Config key 'trainer.fsdp_sharding' = 'hybrid_shard' needs GPUs (on the CPU each "
                          "process would train alone); use full_shard or shard_grad_op.")
    return SSLFSDPStrategy(
        auto_wrap_policy=_wrap_policy(),
        sharding_strategy=FSDP_SHARDING[sharding],
        # Checkpoints hold the full (unsharded) tensors in one file: they resume under any world size
        # or strategy and read like a DDP checkpoint.
        state_dict_type="full",
        # The optimiser is built from the original parameters with their per-name lr/wd groups.
        use_orig_params=True,
    )


# ----------------------------------------------------------------------------- sharded reads


def _fsdp_units(module: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return [m for m in module.modules() if isinstance(m, FSDP)]


def sharding_group(module: nn.Module) -> Optional[dist.ProcessGroup]:
    """The process group across which ``module``'s parameters are sharded, or None if they are not.

    None under DDP or on one device: there every rank holds the full, already averaged gradient.
    With hybrid sharding it is the group of one replica (the ranks that split one copy).
    """
    units = _fsdp_units(module)
    return units[0].process_group if units else None


def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float,
                    group: Optional[dist.ProcessGroup] = None) -> torch.Tensor:
    """Scale gradients in place so their joint L2 norm is at most ``max_norm``; returns the norm.

    ``group=None``: ``torch.nn.utils.clip_grad_norm_`` (the gradients are whole on this rank).
    With a sharding group each rank holds a disjoint piece of every gradient, so the squared norms
    of the pieces are summed across the group first; every rank then applies the same factor, which
    is what one device holding the whole gradient would do.
    """
    params = [p for p in parameters if p.grad is not None]
    if group is None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params]
    if grads:
        local_sq = torch.nn.utils.get_total_norm(grads, 2.0).float() ** 2
    else:  # this rank's shard holds none of these tensors; it still joins the sum
        local_sq = torch.zeros((), dtype=torch.float32)
    dist.all_reduce(local_sq, op=dist.ReduceOp.SUM, group=group)
    total = local_sq.sqrt()
    if grads:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def full_backbone(backbone: nn.Module) -> ViT:
    """A plain :class:`ViT` with the full weights of ``backbone``.

    Unsharded (DDP, one device): ``backbone`` itself, no copy. FSDP-wrapped: the parameters are
    gathered into a new, unwrapped ViT on every rank — a collective, so every rank must call it at
    the same point — and then it serves the kNN monitor or the export on rank 0 alone.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    if not isinstance(backbone, FSDP):
        return backbone
    inner = backbone.module
    if not isinstance(inner, ViT):
        raise TypeError(f"full_backbone expects an FSDP-wrapped sslkit ViT, got {type(inner).__name__}.")
    prefix = "_fsdp_wrapped_module."
    with FSDP.summon_full_params(backbone, writeback=False, recurse=True):
        state = {name.replace(prefix, ""): tensor.detach().clone()
                 for name, tensor in [*inner.named_parameters(), *inner.named_buffers()]}
    with torch.device("meta"):
        plain = ViT(copy.deepcopy(inner.config))
    wanted = plain.state_dict().keys()
    plain.load_state_dict({k: state[k] for k in wanted if k in state}, strict=True, assign=True)
    # Buffers that are not in the state dict (non-persistent) are rebuilt by the constructor on meta.
    for name, buf in plain.named_buffers():
        if buf.is_meta:
            owner, _, leaf = name.rpartition(".")
            plain.get_submodule(owner).register_buffer(leaf, state[name], persistent=False)
    plain.train(inner.training)
    return plain


class GatheredKNNMonitor(KNNMonitor):
    """:class:`~sslkit.engine.callbacks.KNNMonitor` for sharded runs.

    The parent measures on rank 0 only; with FSDP the backbone's forward is a collective, so rank 0
    alone would wait forever for the others. Here every rank gathers the evaluated backbone into a
    plain ViT (:func:`full_backbone`) at the same steps; rank 0 then measures on that copy. The
    decision to measure depends on the step only, never on rank 0's history, so all ranks agree.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._last_measured_step: Optional[int] = None

    def _measure(self, trainer, pl_module) -> Optional[float]:
        step = trainer.global_step
        self._last_measured_step = step
        backbone = full_backbone(pl_module.method.eval_backbone)  # every rank
        if trainer.global_rank != 0:
            return None
        acc = knn_top1(knn_pooled(backbone, self.pooling), self.bank, self.queries, self.num_classes, self.k,
                       self.temperature)
        self.history.append((step, acc))
        for logger in trainer.loggers:
            logger.log_metrics({f"knn/top1_k{self.k}": acc}, step=step)
        return acc

    def finish(self, trainer, pl_module) -> None:
        if self._last_measured_step != trainer.global_step:
            self._measure(trainer, pl_module)
