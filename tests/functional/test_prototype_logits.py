"""The factored student logits z = f Wᵀ: the DINO and iBOT losses equal the plain ones (values and gradients), in
float64, under bf16 autocast and across chunk boundaries — and the (rows, K) logits are never kept for backward."""

import dataclasses

import pytest
import torch

from sslkit.functional.dino import dino_cross_entropy_matrix, dino_loss
from sslkit.functional.ibot import ibot_patch_loss, mask_token_weights
from sslkit.functional.prototype_logits import PrototypeLogits, prototype_scaled_logsumexp, teacher_dot_logits


def _factors(rows=10, k=37, d=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.nn.functional.normalize(torch.randn(rows, d, generator=g, dtype=dtype), dim=-1).requires_grad_()
    w = torch.randn(k, d, generator=g, dtype=dtype).requires_grad_()
    return f, w


def _probs(rows, k, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(rows, k, generator=g, dtype=dtype) / 0.3, dim=-1)


def _grads(value, *tensors):
    return torch.autograd.grad(value, tensors)


@pytest.mark.parametrize("chunk_rows", [1, 3, 64])
def test_logsumexp_and_its_gradients_equal_the_direct_computation(chunk_rows):
    f, w = _factors()
    weights = torch.linspace(0.5, 2.0, f.shape[0], dtype=f.dtype)  # a row gradient that is not all ones
    fused = prototype_scaled_logsumexp(PrototypeLogits(f, w), 0.1, chunk_rows=chunk_rows)
    direct = torch.logsumexp(f @ w.t() / 0.1, dim=-1)
    torch.testing.assert_close(fused, direct, rtol=0, atol=1e-12)
    for a, b in zip(_grads((fused * weights).sum(), f, w), _grads((direct * weights).sum(), f, w)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_the_dino_matrix_equals_the_plain_one_with_gradients():
    b, n_s, n_t, k = 4, 3, 2, 37
    f, w = _factors(rows=n_s * b, k=k)
    p = _probs(n_t * b, k)
    fused = dino_cross_entropy_matrix(PrototypeLogits(f, w), p, n_s, n_t, student_temp=0.1)
    plain = dino_cross_entropy_matrix(f @ w.t(), p, n_s, n_t, student_temp=0.1)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-10)
    mix = torch.arange(1.0, 1.0 + fused.numel(), dtype=fused.dtype).view_as(fused)
    for a, c in zip(_grads((fused * mix).sum(), f, w), _grads((plain * mix).sum(), f, w)):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-10)


def test_dino_loss_takes_split_factored_logits():
    b, k = 4, 37
    f, w = _factors(rows=6 * b, k=k)
    p = _probs(2 * b, k)
    g_part, l_part = PrototypeLogits(f, w).split([2 * b, 4 * b])
    assert g_part.shape == (2 * b, k) and g_part.prototypes is w
    fused = dino_loss(g_part, l_part, p, n_global=2)
    z = f @ w.t()
    plain = dino_loss(z[: 2 * b], z[2 * b:], p, n_global=2)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-10)
    for a, c in zip(_grads(fused, f, w), _grads(plain, f, w)):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-10)


def test_ibot_loss_equals_the_plain_one_with_gradients():
    masks = torch.zeros(4, 9, dtype=torch.bool)
    masks[0, :5] = True
    masks[2, 4] = True
    m, k = int(masks.sum()), 37
    f, w = _factors(rows=m, k=k)
    p = _probs(m, k) * 0.9  # rows need not sum to 1
    weights = mask_token_weights(masks, dtype=torch.float64)
    fused = ibot_patch_loss(PrototypeLogits(f, w), p, weights, 4, student_temp=0.1)
    plain = ibot_patch_loss(f @ w.t(), p, weights, 4, student_temp=0.1)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-10)
    for a, c in zip(_grads(fused, f, w), _grads(plain, f, w)):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-10)


def test_bf16_autocast_computes_in_float32():
    f, w = _factors(rows=8, k=64, d=16, dtype=torch.float32)
    p = _probs(8, 64, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = dino_cross_entropy_matrix(PrototypeLogits(f.bfloat16(), w), p, 2, 2)
        grads = _grads(fused.sum(), f, w)
    plain = dino_cross_entropy_matrix(f.bfloat16().float() @ w.t(), p, 2, 2)
    assert fused.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def _saved_k_wide(run, k: int, allowed: tuple[torch.Tensor, ...]) -> list[tuple[int, ...]]:
    """Shapes of the K-wide tensors autograd keeps for backward while ``run()`` builds the graph, other than
    ``allowed`` (the inputs that are alive anyway: the teacher targets and the prototype matrix)."""
    allowed_ptrs = {t.data_ptr() for t in allowed}
    shapes = []

    def pack(t):
        if t.ndim >= 2 and k in t.shape and t.data_ptr() not in allowed_ptrs:
            shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return shapes


def test_the_rows_by_k_logits_are_never_kept_for_backward():
    rows, k, d = 12, 512, 8
    f, w = _factors(rows=rows, k=k, d=d, dtype=torch.float32)
    p = _probs(rows, k, dtype=torch.float32)
    m = mask_token_weights(torch.ones(3, 4, dtype=torch.bool))
    for loss in (lambda z: dino_cross_entropy_matrix(z, p, 3, 3), lambda z: ibot_patch_loss(z, p, m, 3)):
        plain = _saved_k_wide(lambda: loss(f @ w.t()), k, (p, w))
        assert (rows, k) in plain  # the plain path keeps the student logits (what this test guards against)
        assert _saved_k_wide(lambda: loss(PrototypeLogits(f, w)), k, (p, w)) == []


def test_teacher_projection_and_bad_shapes():
    f, w = _factors(rows=4, k=9, d=3)
    p = _probs(4, 9)
    torch.testing.assert_close(teacher_dot_logits(p, PrototypeLogits(f, w)), p @ w)
    with pytest.raises(ValueError, match="same d"):
        PrototypeLogits(f, w[:, :2])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        prototype_scaled_logsumexp(PrototypeLogits(f, w), 0.0)
    assert dataclasses.is_dataclass(PrototypeLogits)
