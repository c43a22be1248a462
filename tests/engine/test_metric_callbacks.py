"""RepresentationMonitor inside a real Lightning fit of the DINOv2 PretrainModule: it reads the method's
``embedding`` output, splits it crop-major, and logs RankMe / α-ReQ / LiDAR of exactly the collected rows."""

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers.logger import Logger

from sslkit.data.collate import MultiCropCollate
from sslkit.engine.metric_callbacks import RepresentationMonitor
from sslkit.engine.module import PretrainModule
from sslkit.engine.param_groups import dinov2_param_groups
from sslkit.engine.schedules import DINOv2Schedules
from sslkit.functional.metrics import alpha_req, lidar, rankme
from sslkit.methods.dinov2 import DINOv2, DINOv2LossConfig
from sslkit.nn.heads import DINOHead
from sslkit.nn.vit import build_vit

B, STEPS = 8, 7


class MemoryLogger(Logger):
    def __init__(self):
        super().__init__()
        self.records = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.records.append((step, dict(metrics)))


def batches():
    g = torch.Generator().manual_seed(0)
    collate = MultiCropCollate(patch_size=4, seed=0)
    out = []
    for step in range(STEPS):
        items = [{"image": {"global": [torch.randn(3, 16, 16, generator=g) for _ in range(2)],
                            "local": [torch.randn(3, 8, 8, generator=g) for _ in range(2)]},
                  "label": 0, "position": step * B + i} for i in range(B)]
        out.append(collate(items))
    return out


def pretrain_module():
    torch.manual_seed(0)
    backbone = build_vit("vit_tiny", depth=2, embed_dim=32, num_heads=2, img_size=16, patch_size=4,
                         layerscale_init=None)
    method = DINOv2(backbone, DINOHead(32, 256, hidden_dim=64, bottleneck_dim=16), DINOv2LossConfig(n_global=2, n_local=2))
    schedules = DINOv2Schedules(total_iters=STEPS, iters_per_epoch=STEPS, lr_peak=1e-3, lr_warmup_epochs=0.2,
                                teacher_temp_warmup_epochs=0.5, freeze_last_layer_epochs=0)
    return PretrainModule(method, schedules, dinov2_param_groups(method.student))


def test_monitor_logs_metrics_of_the_collected_global_crop_embeddings():
    module = pretrain_module()
    seen = []
    module.method.register_forward_hook(lambda m, args, out: seen.append(out["embedding"].clone()))
    monitor = RepresentationMonitor(every_n_steps=4, num_samples=2 * B, patch_mean=True)
    logger = MemoryLogger()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(accelerator="cpu", max_steps=STEPS, logger=logger, callbacks=[monitor],
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches(), batch_size=None))
    assert len(seen) == STEPS and seen[0].shape == (2 * B, 32)
    # Windows open at steps 0 and 4 and close after 2 steps (16 images each): logged at steps 2 and 6.
    assert [step for step, _ in monitor.history] == [2, 6]
    for (step, values), first in zip(monitor.history, (0, 4)):
        window = torch.stack([seen[first], seen[first + 1]])  # (2 steps, 2B, D), crop-major inside a step
        views = window.reshape(2, 2, B, 32).permute(0, 2, 1, 3).reshape(2 * B, 2, 32)  # (images, crops, D)
        crop1 = torch.cat([seen[first][:B], seen[first + 1][:B]])
        assert torch.equal(views[:, 0], crop1)
        assert values["repr/rankme"] == pytest.approx(rankme(crop1), rel=1e-6)
        assert values["repr/alpha_req"] == pytest.approx(alpha_req(crop1), rel=1e-6)
        assert values["repr/lidar"] == pytest.approx(lidar(views), rel=1e-6)
        assert 1.0 <= values["repr/rankme_patch_mean"] <= 2 * B
        assert values["repr/samples"] == 2 * B
        assert (step, values) in logger.records
    assert monitor._handle is None  # the hook is removed when fitting ends


def test_monitor_reports_a_partial_window_when_the_run_ends_and_rejects_bad_settings():
    module = pretrain_module()
    monitor = RepresentationMonitor(every_n_steps=0, num_samples=10_000, metrics=("rankme",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, callbacks=[monitor],
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches()[:3], batch_size=None))
    assert len(monitor.history) == 1
    step, values = monitor.history[0]
    assert step == 3 and values["repr/samples"] == 3 * B and set(values) == {"repr/rankme", "repr/samples"}
    with pytest.raises(ValueError, match="Unknown representation metric"):
        RepresentationMonitor(metrics=("rankme", "ncut"))
