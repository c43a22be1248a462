"""One pretraining run, from a validated config to a run directory.

The run directory holds: ``config.yaml`` (resolved), ``metrics.jsonl`` (+ ``metrics.csv``), ``tensorboard/``,
``checkpoints/`` (``last.ckpt`` plus periodic ones), ``backbone.safetensors`` + ``backbone.json``
(the evaluated backbone — the EMA teacher for DINOv2 — loadable with ``sslkit.load_backbone``) and ``report.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import lightning as L
import torch
import yaml
from torch.utils.data import Subset
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from sslkit.config import ConfigError, RunConfig, to_dict
from sslkit.data.augment import EvalTransform
from sslkit.data.sources import DataSplits, TransformedDataset, open_configured
from sslkit.data.paired import PairedDataset
from sslkit.data.stream import AugmentedStream, CurriculumStream
from sslkit.engine.builders import build_augmentation, build_backbone, build_method, build_schedules, build_views
from sslkit.engine.curriculum import final_global_size, resolve_stages
from sslkit.engine.callbacks import KNNMonitor, knn_pooled, knn_top1
from sslkit.engine.checkpoints import (LAST_CHECKPOINT, AtomicCheckpointIO, StepCheckpoint, candidate_checkpoints,
                                      readable_checkpoint)
from sslkit.engine.data_module import StreamDataModule
from sslkit.engine.jsonl_logger import JSONLLogger, truncate_after, write_csv
from sslkit.engine.metric_callbacks import RepresentationMonitor
from sslkit.engine.module import PretrainModule
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sslkit.engine.interrupt import GracefulStop
from sslkit.engine.plain_progress import PlainProgress
from sslkit.engine.run_interrupted import RunInterrupted
from sslkit.engine.resume import check_resume
from sslkit.engine.run_lock import RunLock
from sslkit.engine.slurm import cluster_plugins, slurm_job_id
from sslkit.engine.param_groups import dinov2_param_groups
from sslkit.methods.registry import method_spec
from sslkit.engine.strategy import (GatheredKNNMonitor, SSLFSDPStrategy, build_strategy, full_backbone,
                                    wants_sync_batchnorm)
from sslkit.data.features import raw_pixels
from sslkit.engine.learning_curve import plot_learning_curve
from sslkit.nn.export import save_backbone
from sslkit.atomic_files import write_text_atomic



@dataclass
class PretrainResult:
    run_dir: Path
    steps: int
    final_loss: Optional[float]
    knn: dict = field(default_factory=dict)  # name -> top-1 accuracy in [0, 1]
    knn_history: list = field(default_factory=list)
    # The method's held-out objectives: name -> {"pretrained": v, "random_init": v} (MAE:
    # heldout_reconstruction_loss, its masked-patch loss on the held-out images).
    heldout: dict = field(default_factory=dict)


def build_stream(cfg: RunConfig, data: DataSplits, stage_starts: list[int], global_batch: int, log=print,
                 bad_files_log: Optional[Path] = None):
    """The training stream: one augmented stream, or one per curriculum stage switched by position.

    Every stage's data opens through ``open_configured`` with the run's ``data`` section, so skipped files of
    any stage, and of a paired copy, land in the one ``bad_files_log``."""
    streams = []
    for k, resolved in enumerate(resolve_stages(cfg)):
        stage = resolved.settings
        train = data.train
        if stage.data is not None:
            other = open_configured(cfg.data, source=stage.data, holdout_fraction=0.0, bad_files_log=bad_files_log,
                                    seed=cfg.trainer.seed)
            if other.channels != data.channels:
                raise ConfigError(f"Config key 'curriculum[{k}].data' = '{stage.data}' has {other.channels} channel(s), "
                                  f"the run's data has {data.channels}; use the same kind of images in every stage.")
            train = other.train
            log(f"stage {k}: data {other.description}")
        if stage.paired_data is not None:
            skip = cfg.data.skip_bad_files
            if skip:
                # Both sides are read strictly and skip together (PairedDataset), so they stay aligned: a side
                # that skipped on its own would pair image i with image i + 1.
                train = open_configured(cfg.data, source=stage.data, skip_bad_files=False,
                                        holdout_fraction=0.0 if stage.data is not None else None,
                                        seed=cfg.trainer.seed).train
            twin = open_configured(cfg.data, source=stage.paired_data, holdout_fraction=0.0, skip_bad_files=False,
                                   seed=cfg.trainer.seed)
            clean = twin.train
            if isinstance(train, Subset) and len(clean) == len(train.dataset):
                # The run's data lost its kNN hold-out; the twin (opened whole) loses the same images, so
                # item i of both is still the same picture.
                clean = Subset(clean, train.indices)
            train = PairedDataset(train, clean, skip_bad_files=skip, bad_files_log=bad_files_log)
            log(f"stage {k}: paired with {twin.description}")
        augmentation = build_augmentation(cfg, data.channels, data.mean, data.std, resolved)
        streams.append(AugmentedStream(train, augmentation, seed=cfg.trainer.seed))
    if len(streams) == 1:
        return streams[0]
    return CurriculumStream(streams, [start * global_batch for start in stage_starts])


def prepare_run_dir(out: Path, resume: bool, log=print) -> Optional[Path]:
    """Check the run directory; return the checkpoint to resume from (or None).

    On resume, metrics logged after that checkpoint (by a run that crashed later) are dropped, so
    the resumed steps are not logged twice.
    """
    remove_stale_temporaries(out)
    if resume:
        ckpt, step = readable_checkpoint(out / "checkpoints", log=log)
        # Training rows at the checkpoint's step are logged again by the resumed run; the kNN row
        # measured at that step is not, so it stays.
        truncate_after(out / "metrics.jsonl", step,
                       keep_at_step=lambda record: not any(key.startswith("train/") for key in record))
        return ckpt
    if _has_checkpoint(out):
        raise FileExistsError(f"Run directory '{out}' already holds a run; pass --resume to continue it "
                              f"or choose another --out.")
    return None


class StepProgressBar(RichProgressBar):
    """Rich bar labelled by steps: the run is one endless stream, Lightning's 'Epoch 0/-2' means nothing."""

    def _get_train_description(self, current_epoch: int) -> str:
        return "pretraining"

    # Lightning's bar counts the batches of this process against the steps *left*, so a resumed run
    # showed "12/5"; count the run's steps against the run's total instead.
    @property
    def total_train_batches(self):
        return self.trainer.max_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, trainer.global_step - 1)


def _progress_bar(enabled: bool):
    # A bar on a terminal; elsewhere (a log file, a cluster job) PlainProgress prints lines instead.
    return [StepProgressBar(leave=True)] if enabled and sys.stdout.isatty() else []


def pretrain(cfg: RunConfig, out: str | Path, resume: bool = False, log=print) -> PretrainResult:
    """Pretrain ``cfg.method`` on ``cfg.data.source``; write everything to ``out``."""
    out = Path(out)
    t = cfg.trainer
    strategy = build_strategy(t)  # a bad trainer.fsdp_sharding is refused before anything is written
    if resume:
        check_resume(out, to_dict(cfg), t.max_steps)  # a resume that would change the run is refused first
    elif _has_checkpoint(out):
        raise FileExistsError(f"Run directory '{out}' already holds a run; pass --resume to continue it "
                              f"or choose another --out.")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(out):  # one process per run directory; taken before anything in it is changed
            ckpt = prepare_run_dir(out, resume, log=log)
            return _pretrain_in(cfg, out, strategy, ckpt, log)
    except BaseException:
        # A run that failed before its first checkpoint leaves nothing worth keeping: remove the
        # directory it created, so a retry with the same --out starts cleanly.
        if created and not _has_checkpoint(out):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _has_checkpoint(out: Path) -> bool:
    # Only real checkpoints count: a process killed mid-write leaves a temporary file, not a run.
    ckpt_dir = out / "checkpoints"
    return ckpt_dir.is_dir() and bool(candidate_checkpoints(ckpt_dir))


def remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files of writes that a killed process never finished (``*.tmp``, see
    ``sslkit.atomic_files`` and ``engine/checkpoints.py``). Called only while holding the run lock."""
    for directory in (out, out / "checkpoints"):
        if directory.is_dir():
            for path in directory.glob("*.tmp"):
                if path.is_file():
                    path.unlink(missing_ok=True)


def _pretrain_in(cfg: RunConfig, out: Path, strategy, ckpt: Optional[Path], log) -> PretrainResult:
    t = cfg.trainer
    L.seed_everything(t.seed, workers=True, verbose=False)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    data: DataSplits = open_configured(cfg.data, bad_files_log=out / "bad_files.txt", seed=t.seed)
    log(f"data: {data.description}; {data.channels} channel(s)"
        + (f", {data.num_classes} classes" if data.num_classes else ""))

    c = cfg.crops
    _, collate = build_views(cfg, data.channels, data.mean, data.std)

    ckpt_dir = out / "checkpoints"
    callbacks: list = _progress_bar(t.progress_bar)
    if t.checkpoint_every_n_steps > 0:
        callbacks.append(StepCheckpoint(ckpt_dir, t.checkpoint_every_n_steps))
    callbacks.append(GracefulStop(out))  # SIGTERM / Ctrl-C: checkpoint at the next step, then RunInterrupted
    monitor = None
    # The kNN monitor sees the images at the size the run ends at, as the export records and evaluation uses.
    eval_tf = EvalTransform(final_global_size(cfg), data.mean, data.std)
    if data.queries is not None and data.num_classes:
        bank = data.bank
        if len(bank) > cfg.monitor.max_bank_size:
            idx = torch.randperm(len(bank), generator=torch.Generator().manual_seed(t.seed))[: cfg.monitor.max_bank_size]
            bank = torch.utils.data.Subset(bank, sorted(idx.tolist()))
        # Under FSDP every rank must join the gathering of the teacher's shards (engine/strategy.py).
        monitor_cls = GatheredKNNMonitor if isinstance(strategy, SSLFSDPStrategy) else KNNMonitor
        monitor = monitor_cls(TransformedDataset(bank, eval_tf), TransformedDataset(data.queries, eval_tf),
                             data.num_classes, every_n_steps=cfg.monitor.knn_every_n_steps,
                             k=cfg.monitor.knn_k, temperature=cfg.monitor.knn_temperature,
                             pooling=cfg.monitor.knn_pooling)
        callbacks.append(monitor)

    if cfg.monitor.repr_every_n_steps is not None:
        # DINOv2's embedding holds every global crop (the LiDAR views); the others return one view.
        views = method_spec(cfg.method).embedding_views(cfg)
        callbacks.append(RepresentationMonitor(cfg.monitor.repr_every_n_steps, cfg.monitor.repr_samples,
                                               n_views=views))

    jsonl = JSONLLogger(out / "metrics.jsonl")
    loggers = [jsonl, TensorBoardLogger(save_dir=str(out), name="tensorboard", version="")]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer = L.Trainer(
            accelerator=t.accelerator, devices=t.devices, strategy=strategy, precision=t.precision,
            num_nodes=t.num_nodes, sync_batchnorm=wants_sync_batchnorm(t), max_steps=1, logger=loggers, callbacks=callbacks, plugins=[AtomicCheckpointIO(), *cluster_plugins()],
            log_every_n_steps=t.log_every_n_steps, use_distributed_sampler=False, enable_model_summary=False,
            enable_checkpointing=False,  # StepCheckpoint does it (see engine/checkpoints.py)
            enable_progress_bar=t.progress_bar and sys.stdout.isatty(),
            deterministic=t.deterministic or None,
        )
    world = trainer.world_size
    global_batch = cfg.optim.batch_size * world
    iters_per_epoch = cfg.optim.iters_per_epoch or max(1, len(data.train) // global_batch)
    schedules = build_schedules(cfg, iters_per_epoch, global_batch)
    stream = build_stream(cfg, data, [start for start, _, _ in schedules.stages], global_batch, log,
                          bad_files_log=out / "bad_files.txt")
    flops_plan = None
    if cfg.monitor.count_flops and method_spec(cfg.method).counts_flops:
        from sslkit.engine.flops import recipe_flops

        flops_plan = recipe_flops(cfg, in_chans=data.channels, total_steps=schedules.total_iters)
        log(f"FLOPs: {flops_plan['total']:.3e} for the whole run "
            f"({flops_plan['ratio_to_full_resolution']:.2f}x fewer than at full resolution)")
    max_steps = min(schedules.total_iters, t.max_steps) if t.max_steps else schedules.total_iters
    trainer.fit_loop.epoch_loop.max_steps = max_steps  # known only once the world size is
    if t.progress_bar and not sys.stdout.isatty():
        trainer.callbacks.append(PlainProgress(max_steps, global_batch, log=log))

    method = build_method(cfg, data.channels)
    if t.compile:
        from sslkit.engine.compile import compile_step_modules

        log(f"torch.compile: {compile_step_modules(method)} modules (blocks and head MLPs); the first steps compile")
    module = PretrainModule(method, schedules, dinov2_param_groups(method.student, cfg.optim.layer_decay,
                                                                   cfg.optim.patch_embed_lr_mult),
                            clip_grad=cfg.optim.clip_grad, betas=cfg.optim.betas, run_config=to_dict(cfg),
                            stage_guidance=[stage.settings.teacher_guidance for stage in resolve_stages(cfg)], flops_plan=flops_plan)
    datamodule = StreamDataModule(stream, collate, cfg.optim.batch_size, max_steps,
                                  num_workers=cfg.data.num_workers, seed=t.seed)

    resolved = to_dict(cfg)
    resolved["resolved"] = {"iters_per_epoch": iters_per_epoch, "total_steps": schedules.total_iters,
                            "max_steps": max_steps, "global_batch": global_batch, "lr_peak": schedules.lr_peak,
                            "channels": data.channels, "mean": list(data.mean), "std": list(data.std),
                            "slurm_job_id": slurm_job_id()}  # a requeued restart of this job resumes
    if trainer.global_rank == 0:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    log(f"method: {cfg.method}; model: {cfg.model.arch} ({sum(p.numel() for p in method.student['backbone'].parameters()) / 1e6:.2f} M "
        f"backbone parameters), {max_steps} steps of global batch {global_batch} "
        f"({c.n_global}×{c.global_size}px + {c.n_local}×{c.local_size}px crops)")

    if ckpt is not None:
        log(f"resuming from {ckpt}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the EMA teacher, on purpose
        # "...your dataloader is not resumable": sslkit's stream resumes exactly from its own state in the
        # checkpoint (data/stream.py; bit-identical resume is tested), which Lightning cannot see.
        warnings.filterwarnings("ignore", message=".*dataloader is\\s+not resumable.*")
        # weights_only: a resumed checkpoint is loaded without unpickling arbitrary objects.
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
        except SIGTERMException:
            # SIGTERM in the instant between GracefulStop's last look and Lightning's own: no new checkpoint.
            raise RunInterrupted(signal.SIGTERM, trainer.global_step, out, None) from None
    if ckpt is not None:
        truncate_after(out / "metrics.jsonl", trainer.global_step)
    if monitor is not None:
        monitor.finish(trainer, module)  # a resume with no step left skips on_train_end

    if t.checkpoint_every_n_steps > 0:
        trainer.save_checkpoint(ckpt_dir / LAST_CHECKPOINT, weights_only=False)  # full state, to resume

    result = PretrainResult(run_dir=out, steps=trainer.global_step,
                            final_loss=float(trainer.callback_metrics["train/loss"])
                            if "train/loss" in trainer.callback_metrics else None)
    # Under FSDP the teacher is sharded: every rank joins the gathering, rank 0 writes it.
    eval_backbone = full_backbone(module.method.eval_backbone)
    if trainer.global_rank != 0:
        return result

    write_csv(out / "metrics.jsonl", out / "metrics.csv")
    save_backbone(eval_backbone, out, mean=data.mean, std=data.std,
                  extra={"method": cfg.method, "steps": trainer.global_step, "data": cfg.data.source,
                         # The resolution the run ended at, which evaluation uses by default; the ViT's
                         # own img_size is the first stage's grid (a low-resolution curriculum starts small).
                         "image_size": final_global_size(cfg)})

    if monitor is not None:
        result.knn_history = list(monitor.history)
        result.knn["pretrained"] = monitor.history[-1][1]
        if cfg.monitor.baselines:
            torch.manual_seed(t.seed)
            baselines = {"random_init": build_backbone(cfg, data.channels, load_init=False)}
            if cfg.model.init:  # where a continued run started: does it beat its own starting weights?
                baselines["initial"] = build_backbone(cfg, data.channels)
            for name, backbone in baselines.items():
                result.knn[name] = knn_top1(knn_pooled(backbone, cfg.monitor.knn_pooling), monitor.bank,
                                            monitor.queries, data.num_classes, cfg.monitor.knn_k,
                                            cfg.monitor.knn_temperature)
            result.knn["raw_pixels"] = knn_top1(raw_pixels, monitor.bank, monitor.queries, data.num_classes,
                                                cfg.monitor.knn_k, cfg.monitor.knn_temperature)
    if monitor is not None:
        # The method's own objective on the held-out images (MAE: its masked-patch loss), for the trained
        # method and, with the baselines, for the same method at random init.
        for name, value in module.method.heldout_metrics(monitor.queries, seed=t.seed).items():
            result.heldout[name] = {"pretrained": value}
        if result.heldout and cfg.monitor.baselines:
            torch.manual_seed(t.seed)
            for name, value in build_method(cfg, data.channels).heldout_metrics(monitor.queries, seed=t.seed).items():
                result.heldout[name]["random_init"] = value
    report = {"run_dir": str(out), "steps": result.steps, "final_loss": result.final_loss,
              "knn_top1": result.knn, "knn_k": cfg.monitor.knn_k,
              # The method's own held-out objective, if it has one (MAE: heldout_reconstruction_loss).
              **result.heldout, "knn_pooling": cfg.monitor.knn_pooling,
              "flops": None if flops_plan is None else {"total_planned": flops_plan["total"],
                                                        "ratio_to_full_resolution": flops_plan["ratio_to_full_resolution"]}, "knn_history": result.knn_history,
              "data": data.description}
    if result.knn_history:
        plot_learning_curve(result.knn_history, result.knn, out / "learning_curve.png", k=cfg.monitor.knn_k,
                            title=f"{cfg.method} · {cfg.model.arch} · {cfg.data.source}")
    # Last: report.json marks the run finished (engine/resume.py), so it is written once all else is.
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    return result
