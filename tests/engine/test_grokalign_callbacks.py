"""GrokAlign Lightning callbacks: centroid-alignment monitor and Jacobian-penalty training."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sslkit.engine.grokalign_callbacks import (CentroidAlignmentMonitor, JacobianPenaltyCallback, StudentScores,
                                              default_image_model)
from sslkit.engine.module import PretrainModule
from sslkit.engine.param_groups import dinov2_param_groups
from sslkit.engine.schedules import DINOv2Schedules
from sslkit.data.collate import MultiCropCollate
from sslkit.functional.jacobian import centroid_stats, jacobian_penalty
from sslkit.methods.dinov2 import DINOv2, DINOv2LossConfig
from sslkit.nn.heads import DINOHead
from sslkit.nn.vit import build_vit


def tiny_vit(layerscale_init=1e-5):
    return build_vit("vit_tiny", depth=1, embed_dim=32, num_heads=2, img_size=16, patch_size=8, drop_path_rate=0.1,
                     layerscale_init=layerscale_init)


def quiet_trainer(max_steps, callbacks):
    return L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)


def dinov2_module(steps, layerscale_init=1e-5):
    torch.manual_seed(0)
    method = DINOv2(tiny_vit(layerscale_init), DINOHead(32, 64, hidden_dim=32, bottleneck_dim=16), DINOv2LossConfig(n_global=2, n_local=0))
    schedules = DINOv2Schedules(total_iters=steps, iters_per_epoch=steps, lr_peak=1e-3, lr_warmup_epochs=0,
                                teacher_temp_warmup_epochs=0, freeze_last_layer_epochs=0)
    return PretrainModule(method, schedules, dinov2_param_groups(method.student))


def dinov2_batches(n, B=4):
    g = torch.Generator().manual_seed(0)
    collate = MultiCropCollate(patch_size=8, seed=0)
    return [collate([{"image": {"global": [torch.randn(3, 16, 16, generator=g) for _ in range(2)], "local": []},
                      "label": 0, "position": i + B * k} for i in range(B)]) for k in range(n)]


def test_monitor_follows_the_student_backbone_of_dinov2_pretraining():
    module = dinov2_module(steps=4, layerscale_init=None)  # with LayerScale 1e-5 the CLS barely sees x
    student = module.method.student
    scores = default_image_model(module)
    assert isinstance(scores, StudentScores) and scores.backbone is student["backbone"]
    assert scores.head is student["dino_head"]
    probe = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(scores.eval()(probe), student["dino_head"](student["backbone"](probe)))
    # Why not the bare backbone: its final LayerNorm has uniform gain at init, and the outputs of
    # a LayerNorm sum to sum(beta) whatever the input, so its centroid is exactly zero.
    bare, full = centroid_stats(student["backbone"], probe), centroid_stats(scores, probe)
    assert bare.norm.max() < 1e-5 * full.norm.min()
    student.train()

    monitor = CentroidAlignmentMonitor(probe, every_n_steps=2)
    quiet_trainer(4, [monitor]).fit(module, DataLoader(dinov2_batches(4), batch_size=None))
    assert [step for step, _ in monitor.history] == [0, 2, 4]
    assert student["backbone"].training  # put back in train mode after each measurement
    # The last record is the trained student's statistics in eval mode (no drop-path).
    scores.eval()
    expected = centroid_stats(scores, probe)
    last = monitor.history[-1][1]
    assert last["centroid/alignment"] == pytest.approx(float(expected.alignment.mean()), rel=1e-5, abs=1e-7)
    assert last["centroid/norm"] == pytest.approx(float(expected.norm.mean()), rel=1e-5)
    assert last["centroid/inner_product"] == pytest.approx(float(expected.inner_product.mean()), rel=1e-5, abs=1e-7)
    # and the student changed between the first and last record, so the curve is not flat
    assert monitor.history[0][1]["centroid/norm"] != last["centroid/norm"]


class Supervised(L.LightningModule):
    def __init__(self, model, lr=0.1):
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def test_penalty_callback_equals_training_on_loss_plus_penalty():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    lam = 0.5
    callback = JacobianPenaltyCallback(lam, n_projections=2, seed=7)
    quiet_trainer(1, [callback]).fit(Supervised(net), DataLoader(TensorDataset(x, y), batch_size=16))

    # The same step by hand: SGD on mse + lam * P with the callback's projections (same seed).
    ref = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    ref.load_state_dict(start)
    gen = torch.Generator().manual_seed(7)
    loss = nn.functional.mse_loss(ref(x), y) + lam * jacobian_penalty(ref, x, 2, generator=gen)
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for (name, mine), theirs in zip(net.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=name)
    # and the penalty really moved the weights: without it the step is different
    plain = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    plain.load_state_dict(start)
    nn.functional.mse_loss(plain(x), y).backward()
    assert not torch.allclose(start["0.weight"] - 0.1 * plain[0].weight.grad, net.state_dict()["0.weight"], atol=1e-5)


def test_penalty_callback_runs_under_dinov2_manual_optimisation():
    # No LayerScale, so the penalty is far above its floor and its gradient is not zero.
    module = dinov2_module(steps=1, layerscale_init=None)
    callback = JacobianPenaltyCallback(10.0, max_samples=4)
    quiet_trainer(1, [callback]).fit(module, DataLoader(dinov2_batches(1), batch_size=None))
    assert callback.last_penalty is not None and callback.last_penalty > 1e-2
    # Same step without the callback: the student ends somewhere else.
    plain = dinov2_module(steps=1, layerscale_init=None)
    quiet_trainer(1, []).fit(plain, DataLoader(dinov2_batches(1), batch_size=None))
    w = lambda m: m.method.student["backbone"].blocks[0].mlp.fc1.weight  # noqa: E731
    assert not torch.allclose(w(module), w(plain), atol=1e-7)


def test_monitor_rejects_a_bad_interval():
    with pytest.raises(ValueError, match="every_n_steps"):
        CentroidAlignmentMonitor(torch.zeros(1, 2), every_n_steps=0)
    with pytest.raises(ValueError, match="lam"):
        JacobianPenaltyCallback(0.0)
