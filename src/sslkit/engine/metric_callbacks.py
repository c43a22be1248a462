"""Online representation metrics during pretraining: RankMe, α-ReQ and LiDAR of the training embeddings.

The callback reads the method's output dict by key (``embedding``: the student CLS of the global crops,
crop-major ``[g1 of all B; g2 of all B; ...]``, see ``sslkit.methods.dinov2``) through a forward hook, so it
costs no extra forward pass. Every ``every_n_steps`` steps it opens a window that collects the embeddings of
the following steps until ``num_samples`` images are seen, then logs

* ``repr/rankme``, ``repr/alpha_req`` on the rows of global crop 1 (domain-pretraining.md step 6: RankMe of the
  student CLS of global crop 1 on the first 25 600 samples);
* ``repr/lidar`` with each image as a surrogate class and its global crops as the q views (q = ``n_views``,
  2 for DINOv2 — fewer than the LiDAR paper's q, so the within-class covariance is estimated from 2 views);
* with ``patch_mean=True`` also ``repr/rankme_patch_mean``: RankMe of the mean patch token of global crop 1,
  which needs one extra no-grad forward of the student backbone per collected step (the training forward
  masks patches, so its tokens are not reused).

Only rank 0 collects and logs (its local batches), like :class:`~sslkit.engine.callbacks.KNNMonitor`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import lightning as L
import torch

from sslkit.functional.metrics import alpha_req, lidar, rankme

__all__ = ["RepresentationMonitor"]

_METRICS = ("rankme", "alpha_req", "lidar")


class RepresentationMonitor(L.Callback):
    """Log label-free representation metrics of the training embeddings.

    Args:
        every_n_steps: start a collection window at every multiple of this step (0: one window at the start).
        num_samples: images per window (the spec's 25 600; fewer if the run ends first).
        metrics: any of ``rankme``, ``alpha_req``, ``lidar``.
        n_views: crops per image in ``embedding`` (default: ``pl_module.method.cfg.n_global``, else 1).
        key: the output-dict key to read.
        patch_mean: also RankMe of the mean patch token of global crop 1 (extra forward; needs ``global_crops``).
    """

    def __init__(self, every_n_steps: int = 0, num_samples: int = 25_600, metrics: Sequence[str] = _METRICS,
                 n_views: Optional[int] = None, key: str = "embedding", patch_mean: bool = False):
        unknown = sorted(set(metrics) - set(_METRICS))
        if unknown:
            raise ValueError(f"Unknown representation metric(s) {unknown}; choose from {list(_METRICS)}.")
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2, got {num_samples}.")
        self.every_n_steps, self.num_samples = every_n_steps, num_samples
        self.metrics, self.n_views, self.key, self.patch_mean = tuple(metrics), n_views, key, patch_mean
        self.history: list[tuple[int, dict]] = []
        self._handle = None
        self._collecting = False
        self._window_start: Optional[int] = None
        self._views: list[torch.Tensor] = []  # each (B, q, D)
        self._patch: list[torch.Tensor] = []  # each (B, D)
        self._pending: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ wiring
    def _views_per_image(self, pl_module) -> int:
        if self.n_views is not None:
            return self.n_views
        cfg = getattr(getattr(pl_module, "method", None), "cfg", None)
        return int(getattr(cfg, "n_global", 1) or 1)

    def on_fit_start(self, trainer, pl_module) -> None:
        method = getattr(pl_module, "method", pl_module)

        def capture(module, args, output):
            if self._collecting and isinstance(output, dict) and self.key in output:
                self._pending = output[self.key].detach()

        self._handle = method.register_forward_hook(capture)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # ------------------------------------------------------------------ collection
    def _collected(self) -> int:
        return sum(v.shape[0] for v in self._views)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank != 0:
            return
        step = trainer.global_step
        if self._window_start is None and (
            (self.every_n_steps > 0 and step % self.every_n_steps == 0) or (self.every_n_steps <= 0 and step == 0)
        ):
            self._window_start, self._views, self._patch = step, [], []
        self._collecting = self._window_start is not None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._collecting or self._pending is None:
            self._collecting = False
            return
        emb = self._pending.float().cpu()
        self._pending, self._collecting = None, False
        q = self._views_per_image(pl_module)
        if emb.ndim != 2 or emb.shape[0] % q:
            raise ValueError(f"RepresentationMonitor: '{self.key}' has shape {tuple(emb.shape)}, not (q·B, D) "
                             f"with q = {q} crops per image; set n_views.")
        self._views.append(emb.reshape(q, -1, emb.shape[1]).transpose(0, 1))  # crop-major -> (B, q, D)
        if self.patch_mean:
            self._patch.append(self._mean_patch(pl_module, batch, q))
        if self._collected() >= self.num_samples:
            self._measure(trainer)

    @torch.no_grad()
    def _mean_patch(self, pl_module, batch, q: int) -> torch.Tensor:
        crops = batch["global_crops"]
        first = crops[: crops.shape[0] // q]
        backbone = pl_module.method.student["backbone"]
        return backbone.forward_features(first)["patch"].mean(1).float().cpu()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0 and self._window_start is not None and self._collected() >= 2:
            self._measure(trainer)  # the run ended inside a window: report what was seen

    # ------------------------------------------------------------------ metrics
    def compute(self, views: torch.Tensor, patch: Optional[torch.Tensor] = None) -> dict:
        """Metrics of collected views (n, q, D) (and mean patch tokens (n, D)); pure apart from reading settings."""
        out = {}
        first = views[:, 0]
        if "rankme" in self.metrics:
            out["repr/rankme"] = rankme(first)
        if "alpha_req" in self.metrics:
            out["repr/alpha_req"] = alpha_req(first)
        if "lidar" in self.metrics and views.shape[1] >= 2:
            out["repr/lidar"] = lidar(views)
        if patch is not None:
            out["repr/rankme_patch_mean"] = rankme(patch)
        return out

    def _measure(self, trainer) -> None:
        views = torch.cat(self._views)[: self.num_samples]
        patch = torch.cat(self._patch)[: self.num_samples] if self._patch else None
        values = self.compute(views, patch)
        values["repr/samples"] = float(views.shape[0])
        step = trainer.global_step
        self.history.append((step, values))
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
        self._window_start, self._views, self._patch = None, [], []
