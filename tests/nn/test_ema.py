"""Tests for sslkit.nn.ema (spec dinov2 check 3: m = 1 bit-identical, m = 0 equals student)."""

import pytest
import torch
from torch import nn

from sslkit.nn.ema import ema_update_, make_teacher
from sslkit.nn.heads import DINOHead
from sslkit.nn.vit import ViT, ViTConfig


def pair():
    torch.manual_seed(0)
    student = nn.ModuleDict(
        {"backbone": ViT(ViTConfig(embed_dim=16, depth=2, num_heads=2, num_registers=1)),
         "head": DINOHead(16, out_dim=20, hidden_dim=24, bottleneck_dim=8)}
    )
    teacher = make_teacher(student)
    with torch.no_grad():  # make teacher and student differ everywhere
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    return teacher, student


def snapshot(m):
    return {n: p.detach().clone() for n, p in m.named_parameters()}


def test_make_teacher():
    teacher, student = pair()
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(teacher.parameters(), student.parameters()))


def test_momentum_one_is_bit_identical():
    teacher, student = pair()
    before = snapshot(teacher)
    ema_update_(teacher, student, 1.0)
    assert all(torch.equal(before[n], p) for n, p in teacher.named_parameters())


def test_momentum_zero_copies_student_exactly():
    teacher, student = pair()
    ema_update_(teacher, student, 0.0)
    s = dict(student.named_parameters())
    assert all(torch.equal(s[n], p) for n, p in teacher.named_parameters())


def test_momentum_formula():
    teacher, student = pair()
    t0, s0 = snapshot(teacher), snapshot(student)
    ema_update_(teacher, student, 0.9)
    for n, p in teacher.named_parameters():
        expected = 0.9 * t0[n].double() + 0.1 * s0[n].double()
        # 1e-7 relative to the operands' scale: float32 rounding (~1 ulp of max(|t|, |s|)) is the only error
        scale = torch.maximum(t0[n].abs(), s0[n].abs()).double().clamp_min(1.0)
        assert ((p.double() - expected).abs() <= 1e-7 * scale).all(), n
    assert all(torch.equal(s0[n], p) for n, p in student.named_parameters())  # student untouched


def test_no_autograd_history():
    teacher, student = pair()
    ema_update_(teacher, student, 0.5)
    assert all(p.grad_fn is None and not p.requires_grad for p in teacher.parameters())


def test_mismatch_errors():
    a = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    b = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match="0.weight"):
        ema_update_(a, b, 0.5)
    c = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="only in teacher"):
        ema_update_(a, c, 0.5)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(a, a, 1.5)
