import math

import pytest
import torch

from sslkit.data.collate import MultiCropCollate
from sslkit.methods.dinov2 import DINOv2, DINOv2LossConfig
from sslkit.nn.heads import DINOHead
from sslkit.nn.vit import build_vit

K = 1024


def make_method(separate=False, n_local=2):
    torch.manual_seed(0)
    backbone = build_vit("vit_tiny", depth=2, embed_dim=64, num_heads=2, img_size=16, patch_size=4)
    head = lambda: DINOHead(64, K, hidden_dim=128, bottleneck_dim=32)  # noqa: E731
    return DINOv2(backbone, head(), DINOv2LossConfig(n_global=2, n_local=n_local), ibot_head=head() if separate else None)


def make_batch(B=8, n_local=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = [{"image": {"global": [torch.randn(3, 16, 16, generator=g) for _ in range(2)],
                        "local": [torch.randn(3, 8, 8, generator=g) for _ in range(n_local)]},
              "label": i % 3, "position": i} for i in range(B)]
    return MultiCropCollate(patch_size=4, seed=seed)(items)


def test_loss_terms_at_init_and_outputs():
    method = make_method()
    out = method(make_batch(), teacher_temp=0.04)
    assert set(out) >= {"loss", "dino_loss", "ibot_loss", "koleo_loss", "embedding", "teacher_entropy"}
    assert out["embedding"].shape == (16, 64) and not out["embedding"].requires_grad
    total = out["dino_loss"] + out["ibot_loss"] + 0.1 * out["koleo_loss"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    assert 1.0 < out["teacher_entropy"].item() <= math.log(K) + 1e-4
    # Per-image entropy is at most the entropy of the mean (concavity), and positive.
    assert 0.0 < out["teacher_sample_entropy"].item() <= out["teacher_entropy"].item() + 1e-5


def test_dino_loss_at_init_is_close_to_ln_k():
    """Spec check 1 with K = 4096 and the reference bottleneck 256.

    At init every crop has nearly the same bottleneck vector u, so the logits z_k = cos(u, w_k) are
    ~N(0, 1/d) over prototypes and the cross-entropy has the closed form
    ln K + σ²/(2τ_s²) − σ²/(τ_s τ_t) with σ² = 1/d (Gaussian tilt): ln K − 0.78 for d = 256.
    """
    torch.manual_seed(0)
    k, d = 4096, 256
    backbone = build_vit("vit_tiny", depth=2, embed_dim=64, num_heads=2, img_size=16, patch_size=4)
    method = DINOv2(backbone, DINOHead(64, k, hidden_dim=512, bottleneck_dim=d), DINOv2LossConfig(n_global=2, n_local=2))
    loss = method(make_batch(), teacher_temp=0.04)["dino_loss"].item()
    assert abs(loss - math.log(k)) < 0.1 * math.log(k)
    expected = math.log(k) + (1 / d) / (2 * 0.1 ** 2) - (1 / d) / (0.1 * 0.04)
    assert loss == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("separate", [False, True])
def test_gradients_reach_every_student_parameter_and_never_the_teacher(separate):
    method = make_method(separate=separate)
    batch = make_batch()
    assert batch["masks"].any()
    method(batch, teacher_temp=0.04)["loss"].backward()
    for name, p in method.student.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())


def test_patch_head_runs_on_masked_tokens_only():
    method = make_method()
    batch = make_batch(B=8, n_local=2)
    rows = []
    method.student["dino_head"].register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    method.teacher["dino_head"].register_forward_hook(lambda m, i, o: rows.append(-i[0].shape[0]))
    method(batch, teacher_temp=0.04)
    n_masked = int(batch["masks"].sum())
    assert 0 < n_masked < batch["masks"].numel()
    # One head pass per network: student = 2B global CLS + 2B local CLS + masked tokens; teacher = 2B CLS + masked.
    assert sorted(rows) == sorted([-(16 + n_masked), 16 + 16 + n_masked])


def test_centres_move_in_softmax_mode_and_stay_in_sinkhorn_mode():
    method = make_method()
    method(make_batch(), teacher_temp=0.04)
    assert method.dino_center.abs().sum() > 0 and method.ibot_center.abs().sum() > 0
    sk = make_method()
    sk.cfg = DINOv2LossConfig(n_global=2, n_local=2, centering="sinkhorn")
    out = sk(make_batch(), teacher_temp=0.04)
    assert torch.isfinite(out["loss"]) and sk.dino_center.abs().sum() == 0


def test_teacher_follows_the_student_only_through_the_ema():
    method = make_method()
    opt = torch.optim.SGD(method.student.parameters(), lr=1.0)
    method(make_batch(), teacher_temp=0.04)["loss"].backward()
    opt.step()
    before = [p.clone() for p in method.teacher.parameters()]
    method.update_teacher(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, method.teacher.parameters()))
    method.update_teacher(0.0)
    assert all(torch.equal(s, t) for s, t in zip(method.student.parameters(), method.teacher.parameters()))


def test_no_local_crops():
    method = make_method(n_local=0)
    out = method(make_batch(n_local=0), teacher_temp=0.04)
    assert torch.isfinite(out["loss"])


def test_batchnorm_head_option_keeps_teacher_bn_on_batch_statistics():
    torch.manual_seed(0)
    backbone = build_vit("vit_tiny", depth=2, embed_dim=64, num_heads=2, img_size=16, patch_size=4)
    head = DINOHead(64, K, hidden_dim=128, bottleneck_dim=32, use_bn=True)
    method = DINOv2(backbone, head, DINOv2LossConfig(n_global=2, n_local=2)).train()
    bns = [m for m in method.teacher.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 2 and all(m.training for m in bns)
    assert not method.teacher["backbone"].training
    out = method(make_batch(), teacher_temp=0.04)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    # Batch statistics remove what every image shares: the normalised bottleneck directions differ.
    with torch.no_grad():
        u = torch.nn.functional.normalize(head.mlp(torch.randn(32, 64) + 5.0), dim=-1)
    assert torch.nn.functional.cosine_similarity(u, u.mean(0, keepdim=True)).mean() < 0.9


def test_shared_head_equals_a_separate_ibot_head_holding_the_same_weights():
    """One head run on [global CLS; local CLS; masked patches] then split, or two heads with equal
    weights run on CLS and patches apart: the same losses and backbone gradients."""
    shared, separate = make_method(), make_method(separate=True)
    separate.student["ibot_head"].load_state_dict(separate.student["dino_head"].state_dict())
    separate.teacher["ibot_head"].load_state_dict(separate.teacher["dino_head"].state_dict())
    batch = make_batch()
    outs = [m(batch, teacher_temp=0.04) for m in (shared, separate)]
    for key in ("dino_loss", "ibot_loss", "koleo_loss", "loss"):
        assert outs[0][key].item() == pytest.approx(outs[1][key].item(), rel=1e-5), key
    for out in outs:
        out["loss"].backward()
    for (name, a), (_, b) in zip(shared.student["backbone"].named_parameters(),
                                 separate.student["backbone"].named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("separate", [False, True])
def test_the_fused_prototype_loss_equals_the_plain_head_output(separate):
    """dinov2.fused_prototype_loss (the default) changes memory, not the loss or any gradient."""
    import dataclasses

    grads, losses = [], []
    for fused in (True, False):
        method = make_method(separate=separate)
        method.cfg = dataclasses.replace(method.cfg, fused_prototype_loss=fused)
        out = method(make_batch(), teacher_temp=0.04)
        out["loss"].backward()
        losses.append((out["dino_loss"].item(), out["ibot_loss"].item(), out["loss"].item()))
        grads.append([p.grad.clone() for p in method.student.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert losses[0][1] > 0  # iBOT ran
    for a, b in zip(*grads):  # fp32: equal up to rounding, relative to each gradient's own scale
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()) + 1e-12)
