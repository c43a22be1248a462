"""Soft-target cross-entropy without K-wide log-probabilities: values, gradients, memory."""

import pytest
import torch
import torch.nn.functional as F

from sslkit.functional.soft_cross_entropy import scaled_logsumexp, soft_cross_entropy


def _reference(logits, targets, tau):
    return -(targets * F.log_softmax(logits / tau, dim=-1)).sum(-1)


def _inputs(rows=7, k=11, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(rows, k, generator=g, dtype=dtype)).requires_grad_()
    targets = torch.softmax(torch.randn(rows, k, generator=g, dtype=dtype), -1)
    targets[2] *= 0.3  # a row whose mass is not 1 (several teacher crops summed, or weighted)
    return logits, targets


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64])
def test_value_and_gradient_equal_log_softmax_formula(chunk_rows):
    logits, targets = _inputs()
    weights = torch.linspace(0.5, 2.0, 7, dtype=torch.float64)
    ours = soft_cross_entropy(logits, targets, 0.1, chunk_rows=chunk_rows)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    ref = _reference(logits, targets, 0.1)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), logits)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-12, atol=1e-12)


def test_gradcheck_and_no_gradient_to_targets():
    logits, targets = _inputs(rows=4, k=5)
    targets.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: soft_cross_entropy(z, targets, 0.3, chunk_rows=3), (logits,))
    soft_cross_entropy(logits, targets, 0.3).sum().backward()
    assert targets.grad is None and logits.grad is not None


def test_uniform_logits_give_ln_k_times_mass():
    targets = torch.rand(3, 2048, dtype=torch.float64)
    out = soft_cross_entropy(torch.zeros(3, 2048, dtype=torch.float64), targets, 0.07)
    torch.testing.assert_close(out, targets.sum(-1) * torch.log(torch.tensor(2048.0, dtype=torch.float64)))


def test_half_precision_logits_compute_in_float32():
    logits, targets = _inputs(rows=5, k=300, dtype=torch.float32)
    half = logits.detach().to(torch.bfloat16).requires_grad_()
    out = soft_cross_entropy(half, targets, 0.1, chunk_rows=2)
    assert out.dtype == torch.float32
    ref = _reference(half.detach().double(), targets.double(), 0.1)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
    out.sum().backward()
    assert half.grad.dtype == torch.bfloat16
    ref_grad = torch.softmax(half.detach().double() / 0.1, -1) * targets.double().sum(-1, keepdim=True) - targets.double()
    torch.testing.assert_close(half.grad.double(), ref_grad / 0.1, rtol=2e-2, atol=2e-2)


def test_losses_stay_in_float32_under_bf16_autocast():
    from sslkit.functional.dino import dino_cross_entropy_matrix

    logits, targets = _inputs(rows=6, k=4096, dtype=torch.float32)
    plain = soft_cross_entropy(logits, targets, 0.1)
    matrix = dino_cross_entropy_matrix(logits, targets, 3, 3, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(soft_cross_entropy(logits, targets, 0.1), plain, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(dino_cross_entropy_matrix(logits, targets, 3, 3, 0.1), matrix,
                                   rtol=1e-6, atol=1e-5)


def test_scaled_logsumexp_value_and_softmax_gradient():
    logits, _ = _inputs()
    weights = torch.arange(1.0, 8.0, dtype=torch.float64)
    out = scaled_logsumexp(logits, 0.2, chunk_rows=3)
    torch.testing.assert_close(out, torch.logsumexp(logits / 0.2, -1), rtol=1e-13, atol=1e-13)
    (grad,) = torch.autograd.grad((out * weights).sum(), logits)
    torch.testing.assert_close(grad, torch.softmax(logits / 0.2, -1) * weights[:, None] / 0.2)


def _saved_wide_tensors(fn, logits, targets):
    """(bytes, is_an_input) of every tensor autograd keeps for backward with at least K elements."""
    saved = []

    def pack(t):
        if t.numel() >= logits.shape[1]:
            saved.append((t.numel() * t.element_size(),
                          t.data_ptr() in (logits.data_ptr(), targets.data_ptr())))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(logits, targets).sum()
    return saved


def test_nothing_k_wide_is_kept_but_the_inputs():
    """The point of the function: backward keeps the inputs, not a (rows, K) log-softmax copy."""
    logits, targets = _inputs(rows=6, k=4096, dtype=torch.float32)
    ours = _saved_wide_tensors(lambda z, p: soft_cross_entropy(z, p, 0.1), logits, targets)
    assert ours and all(is_input for _, is_input in ours)
    naive = _saved_wide_tensors(lambda z, p: _reference(z, p, 0.1), logits, targets)
    assert any(not is_input for _, is_input in naive)  # the naive path keeps its own log-probabilities


def test_bad_arguments_raise():
    logits, targets = _inputs()
    with pytest.raises(ValueError, match="same"):
        soft_cross_entropy(logits, targets[:3], 0.1)
    with pytest.raises(ValueError, match="temperature"):
        soft_cross_entropy(logits, targets, 0.0)
    with pytest.raises(ValueError, match="chunk_rows"):
        soft_cross_entropy(logits, targets, 0.1, chunk_rows=0)
    with pytest.raises(ValueError, match="rows, K"):
        scaled_logsumexp(logits[0], 0.1)
