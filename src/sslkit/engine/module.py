"""The Lightning module that drives any pretraining method: schedules, optimiser step, EMA.

No math of its own: the method's ``forward`` returns a dict of named tensors (``loss`` first), the
schedules are pure functions of the iteration, and this module only applies them in the right
order: set lr/wd for step ``i`` → forward → backward → clip per sub-module → step → EMA teacher.
Manual optimisation is used because DINOv2 clips each student sub-module separately and updates
the teacher after every step (facebookresearch/dinov2 ``dinov2/train/train.py``).
"""

from __future__ import annotations

import time

import lightning as L
import torch

from sslkit.engine.schedules import CurriculumSchedules, DINOv2Schedules
from sslkit.engine.strategy import clip_grad_norm_, sharding_group
from sslkit.methods.base import SSLMethod


class PretrainModule(L.LightningModule):
    """Wraps an :class:`~sslkit.methods.base.SSLMethod`; logs every scalar of its output dict."""

    def __init__(self, method: SSLMethod, schedules: CurriculumSchedules | DINOv2Schedules, param_groups: list[dict],
                 clip_grad: float = 3.0, betas: tuple[float, float] = (0.9, 0.999), run_config: dict | None = None,
                 stage_guidance: list[float] | None = None, flops_plan: dict | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.method = method
        self.schedules = schedules
        self._param_groups = param_groups
        self.clip_grad = clip_grad
        self.betas = tuple(betas)
        self.run_config = run_config or {}
        self._last_time: float | None = None
        self.stage_guidance = list(stage_guidance or [])
        self.flops_plan = flops_plan

    def configure_optimizers(self):
        groups = [{k: v for k, v in g.items() if k != "names"} for g in self._param_groups]
        # foreach: one multi-tensor kernel per group instead of a loop over tensors (CPU default is the loop).
        return torch.optim.AdamW(groups, lr=0.0, betas=self.betas, foreach=True)

    def _apply_guidance(self, step: int, values: dict) -> None:
        """Teacher guidance of the current stage; T* is frozen at the first step of a guided stage (a
        resume from a checkpoint of that step freezes it again from the same teacher)."""
        if not self.stage_guidance or "stage" not in values:
            return
        stage = int(values["stage"])
        weight = self.stage_guidance[stage]
        if weight > 0 and step == self.schedules.stages[stage][0]:
            self.method.freeze_guide()
        self.method.guidance_weight = weight

    def _apply_schedules(self, optimizer, values: dict) -> None:
        for group in optimizer.param_groups:
            lr = values["lr"] * group["lr_multiplier"]
            if group["is_last_layer"]:
                lr *= values["last_layer_lr_multiplier"]
            if group.get("is_backbone"):
                lr *= values.get("backbone_lr_multiplier", 1.0)
            group["lr"] = lr
            group["weight_decay"] = values["wd"] * group["wd_multiplier"]

    def training_step(self, batch: dict, batch_idx: int):
        step = self.global_step
        values = self.schedules.at(step)
        optimizer = self.optimizers()
        if isinstance(self.schedules, CurriculumSchedules) and self.schedules.starts_fresh(step):
            # A stage that restarts its schedules starts from a fresh optimiser, as a new run would
            # (fast-dinov2.md stage 2). At a resume past this step the saved state is already the new one.
            optimizer.optimizer.state.clear()
        self._apply_schedules(optimizer.optimizer, values)
        self._apply_guidance(step, values)

        out = self.method(batch, **{name: values[name] for name in self.method.schedule_inputs})
        loss = out["loss"]
        if not torch.isfinite(loss):
            terms = ", ".join(f"{key}={value.item():.4g}" for key, value in out.items()
                              if key != "loss" and isinstance(value, torch.Tensor) and value.ndim == 0)
            raise FloatingPointError(
                f"The training loss became {loss.item()} at step {step} ({terms}); the last good checkpoint "
                f"is kept. Lower optim.base_lr, raise optim.warmup_epochs or use precision=32-true, then "
                f"resume from the last checkpoint.")

        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.clip_grad and self.clip_grad > 0:
            for module in self.method.student.values():  # per sub-module, as the reference
                # Under FSDP each rank holds a shard of the gradient: the norm is summed over the
                # sharding group so every rank scales by the same factor (None under DDP: whole grads).
                clip_grad_norm_(module.parameters(), self.clip_grad, group=sharding_group(module))
        optimizer.step()
        self.method.update_teacher(values["momentum"])

        now = time.perf_counter()
        batch_size = batch["labels"].shape[0]  # images per device (the collate keeps one label per image)
        logs = {f"train/{key}": value.detach() for key, value in out.items()
                 if isinstance(value, torch.Tensor) and value.ndim == 0}
        logs.update({"schedule/lr": values["lr"], "schedule/wd": values["wd"]})
        if "stage" in values:
            logs["schedule/stage"] = float(values["stage"])
        if self.flops_plan is not None:  # a function of the step: a resumed run logs the same total
            from sslkit.engine.flops import cumulative_flops

            logs["train/flops"] = cumulative_flops(self.flops_plan, step + 1)
        # Every schedule value the method reads, plus the EMA momentum when it has a teacher.
        scheduled = (("momentum",) if self.method.has_teacher else ()) + tuple(self.method.schedule_inputs)
        logs.update({f"schedule/{name}": values[name] for name in scheduled})
        if self._last_time is not None:
            logs["train/images_per_s"] = batch_size * self.trainer.world_size / max(now - self._last_time, 1e-9)
        self._last_time = now
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, logger=False, batch_size=batch_size)
        return loss.detach()

    # Exact resume: the only RNG the training step consumes is torch's CPU generator (drop-path);
    # data and masks are seeded by stream position (sslkit.data.stream). Save and restore it.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["sslkit_rng"] = {"torch_cpu": torch.get_rng_state()}
        checkpoint["sslkit_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("sslkit_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch_cpu"])
