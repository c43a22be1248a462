import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.functional.dino import (
    dino_cross_entropy_matrix,
    dino_loss,
    softmax_center_teacher,
    update_center,
)

TAU_S = 0.1


def logits_with_cross_entropy(target_ce: float, rows: int, k: int, tau: float = TAU_S):
    """Student logits and one-hot teacher rows whose cross-entropy is exactly ``target_ce``.

    With s / tau = x at the target class and 0 elsewhere,
    -log softmax(s / tau)_target = log(1 + (K - 1) e^{-x}), so x = ln((K - 1) / (e^ce - 1)).
    """
    x = math.log((k - 1) / math.expm1(target_ce))
    target = torch.arange(rows) % k
    logits = torch.zeros(rows, k, dtype=torch.float64)
    logits[torch.arange(rows), target] = x * tau
    teacher = F.one_hot(target, k).to(torch.float64)
    return logits, teacher


def random_probs(rows, k, generator, dtype=torch.float64):
    return F.softmax(torch.randn(rows, k, generator=generator, dtype=dtype) * 3, dim=-1)


def test_cross_entropy_matrix_matches_pairwise_loop():
    g = torch.Generator().manual_seed(0)
    n_s, n_t, b, k = 3, 2, 5, 11
    student = torch.randn(n_s * b, k, generator=g, dtype=torch.float64)
    teacher = random_probs(n_t * b, k, g)
    matrix = dino_cross_entropy_matrix(student, teacher, n_s, n_t, TAU_S)
    assert matrix.shape == (n_t, n_s)
    for t in range(n_t):
        for s in range(n_s):
            expected = F.cross_entropy(
                student[s * b : (s + 1) * b] / TAU_S, teacher[t * b : (t + 1) * b]
            )
            assert matrix[t, s].item() == pytest.approx(expected.item(), rel=1e-12)


def test_cross_entropy_matrix_gradient_equals_log_softmax_route():
    """The lse/dot form (no K-wide log-probabilities) has the gradient of the textbook formula."""
    g = torch.Generator().manual_seed(1)
    n_s, n_t, b, k = 4, 2, 3, 13
    student = torch.randn(n_s * b, k, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = random_probs(n_t * b, k, g)
    weights = torch.randn(n_t, n_s, generator=g, dtype=torch.float64)
    (ours,) = torch.autograd.grad((dino_cross_entropy_matrix(student, teacher, n_s, n_t, TAU_S) * weights).sum(), student)
    log_p = F.log_softmax(student / TAU_S, dim=-1).view(n_s, b, k)
    textbook = -torch.einsum("tbk,sbk->ts", teacher.view(n_t, b, k), log_p) / b
    (expected,) = torch.autograd.grad((textbook * weights).sum(), student)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-13)


def test_uniform_student_gives_ln_k_exactly():
    g = torch.Generator().manual_seed(1)
    b, k = 4, 1024
    student_global = torch.zeros(2 * b, k, dtype=torch.float64)
    student_local = torch.zeros(8 * b, k, dtype=torch.float64)
    teacher = random_probs(2 * b, k, g)
    loss = dino_loss(student_global, student_local, teacher, n_global=2)
    assert loss.item() == pytest.approx(math.log(k), abs=1e-12)


def test_all_cross_entropies_one_gives_one_with_18_terms():
    """Spec item 4: every per-term CE = 1 gives L_DINO = 1 (2 global + 8 local: 18 terms)."""
    b, k = 3, 64
    logits, teacher = logits_with_cross_entropy(1.0, b, k)  # per image; same for every crop
    loss = dino_loss(logits.repeat(2, 1), logits.repeat(8, 1), teacher.repeat(2, 1), n_global=2)
    assert loss.item() == pytest.approx(1.0, abs=1e-12)


def test_global_and_local_terms_are_counted_separately():
    # Global pairs have CE 1 (2 terms), local pairs CE 2 (16 terms): (2 + 32) / 18.
    b, k = 2, 32
    student_global, teacher = logits_with_cross_entropy(1.0, b, k)
    student_global = student_global.repeat(2, 1)
    teacher = teacher.repeat(2, 1)
    student_local, _ = logits_with_cross_entropy(2.0, b, k)
    student_local = student_local.repeat(8, 1)
    loss = dino_loss(student_global, student_local, teacher, n_global=2)
    assert loss.item() == pytest.approx(34.0 / 18.0, abs=1e-12)


@pytest.mark.parametrize("n_global,n_local", [(2, 0), (2, 8), (3, 2), (1, 4)])
def test_loss_equals_explicit_pair_sum(n_global, n_local):
    g = torch.Generator().manual_seed(2)
    b, k = 4, 17
    sg = torch.randn(n_global * b, k, generator=g, dtype=torch.float64)
    sl = torch.randn(n_local * b, k, generator=g, dtype=torch.float64) if n_local else None
    teacher = random_probs(n_global * b, k, g)
    chunk = lambda x, i: x[i * b : (i + 1) * b]  # noqa: E731
    total, terms = 0.0, 0
    for gs in range(n_global):
        for gt in range(n_global):
            if gs != gt:  # same-crop pairs are excluded (the swap, for two crops)
                total += F.cross_entropy(chunk(sg, gs) / TAU_S, chunk(teacher, gt)).item()
                terms += 1
    for ls in range(n_local):
        for gt in range(n_global):
            total += F.cross_entropy(chunk(sl, ls) / TAU_S, chunk(teacher, gt)).item()
            terms += 1
    assert terms == n_global * (n_global - 1) + n_global * n_local
    loss = dino_loss(sg, sl, teacher, n_global=n_global)
    assert loss.item() == pytest.approx(total / terms, rel=1e-12)


def test_two_global_crops_use_the_swapped_teacher():
    g = torch.Generator().manual_seed(3)
    b, k = 5, 9
    sg = torch.randn(2 * b, k, generator=g, dtype=torch.float64)
    teacher = random_probs(2 * b, k, g)
    swapped = torch.cat([teacher[b:], teacher[:b]])
    # Row-wise mean over 2B rows against the swapped teacher (the reference's formulation).
    expected = F.cross_entropy(sg / TAU_S, swapped)
    assert dino_loss(sg, None, teacher, 2).item() == pytest.approx(expected.item(), rel=1e-12)


def test_random_init_head_is_close_to_ln_k():
    """Spec item 1: a randomly initialised DINO head gives L_DINO within 10% of ln K."""
    torch.manual_seed(0)
    b, d, k = 16, 64, 2048
    mlp = torch.nn.Sequential(
        torch.nn.Linear(d, 256), torch.nn.GELU(), torch.nn.Linear(256, 256), torch.nn.GELU(),
        torch.nn.Linear(256, 64),
    )
    for layer in mlp:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.trunc_normal_(layer.weight, std=0.02)
            torch.nn.init.zeros_(layer.bias)
    last = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(64, k, bias=False))

    def head(x):
        return last(F.normalize(mlp(x), dim=-1))

    images = torch.randn(b, d)
    crops = lambda n: torch.cat([images + 0.5 * torch.randn(b, d) for _ in range(n)])  # noqa: E731
    with torch.no_grad():
        teacher = softmax_center_teacher(head(crops(2)), torch.zeros(1, k), teacher_temp=0.04)
        loss = dino_loss(head(crops(2)), head(crops(8)), teacher, n_global=2)
    assert abs(loss.item() - math.log(k)) < 0.1 * math.log(k)


def test_gradient_reaches_student_only():
    g = torch.Generator().manual_seed(4)
    sg = torch.randn(4, 6, generator=g, requires_grad=True)
    sl = torch.randn(6, 6, generator=g, requires_grad=True)
    teacher = random_probs(4, 6, g, dtype=torch.float32)
    dino_loss(sg, sl, teacher, 2).backward()
    assert sg.grad is not None and sl.grad is not None
    assert sg.grad.abs().sum() > 0 and sl.grad.abs().sum() > 0


def test_no_terms_raises():
    with pytest.raises(ValueError, match="no terms"):
        dino_loss(torch.zeros(3, 4), None, torch.full((3, 4), 0.25), n_global=1)


def test_bad_crop_split_raises():
    with pytest.raises(ValueError, match="crop-major"):
        dino_cross_entropy_matrix(torch.zeros(5, 4), torch.zeros(4, 4), 2, 2)


def test_softmax_center_teacher():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 10, generator=g, dtype=torch.float64)
    c = torch.randn(1, 10, generator=g, dtype=torch.float64)
    p = softmax_center_teacher(z, c, 0.04)
    expected = torch.exp((z - c) / 0.04)
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(p, expected, rtol=1e-12, atol=1e-15)
    # A centre that equals the logits gives uniform targets.
    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    assert torch.allclose(softmax_center_teacher(z, z[:1], 0.04)[0], uniform)


def test_update_center_hand_computed_and_pure():
    center = torch.tensor([[1.0, 2.0]])
    logits = torch.tensor([[0.0, 4.0], [2.0, 8.0]])  # mean (1, 6)
    new = update_center(center, logits, momentum=0.9)
    torch.testing.assert_close(new, torch.tensor([[1.0, 2.4]]))
    torch.testing.assert_close(center, torch.tensor([[1.0, 2.0]]))  # input untouched
    torch.testing.assert_close(update_center(center, logits, momentum=0.0), torch.tensor([[1.0, 6.0]]))
