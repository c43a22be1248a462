"""Input–output Jacobian diagnostics and the GrokAlign regulariser.

GrokAlign (Walker, Humayun, Balestriero, Baraniuk, arXiv 2506.12284) penalises the norm of a
network's input–output Jacobian to make it generalise ("grok") sooner than weight decay alone. The
norm is estimated with random projections of the outputs (Hoffman, Roberts, Yaida, "Robust
learning with Jacobian regularization", arXiv 1908.02729): for ``v`` uniform on the unit sphere
of R^C, ``E ||J^T v||^2 = ||J||_F^2 / C``.

The diagnostics are the *centroid* ``c(x) = J(x)^T 1`` (the sum of the Jacobian rows, i.e. the
input gradient of the summed outputs) and its cosine with the input, the *centroid alignment*.
For a bias-free ReLU network ``f(x) = J(x) x`` (positive homogeneity), so ``<c(x), x> = sum_c f_c(x)``.

Every function takes ``model``: any callable mapping a batch ``x`` of shape ``(B, *S)`` to outputs
``(B, *T)``; outputs are flattened to ``(B, C)`` with ``C = prod(T)`` and inputs to ``(B, D)``
with ``D = prod(S)`` wherever norms and inner products are taken. The model must be per-sample
(no cross-sample operation such as train-mode BatchNorm) unless ``per_sample="vmap"`` is used.

Names follow the spec ``shared/specs/grokalign.md``; where it is silent the choices follow the
authors' ``utils.py`` (ThomasWalker1/grokalign), said so at the place.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, NamedTuple

import torch

__all__ = [
    "CentroidStats",
    "alignment_from_centroids",
    "centroid_alignment",
    "centroid_stats",
    "centroid_summary",
    "centroids",
    "differentiable_forward",
    "grokalign_objective",
    "jacobian_norm_estimate",
    "jacobian_norm_from_outputs",
    "jacobian_pc1",
    "jacobian_penalty",
    "per_sample_jacobian",
    "random_unit_projections",
]

Model = Callable[[torch.Tensor], torch.Tensor]

SQRT_FLOOR = 1e-8       # R(x) = sqrt(max(.., SQRT_FLOOR)): keeps the gradient of sqrt finite at J = 0
ALIGNMENT_FLOOR = 1e-8  # denominator floor of the cosine
PC1_SAMPLES = 64


def _twice_differentiable_attention(enabled: bool):
    """Route ``scaled_dot_product_attention`` to its plain-math kernel while ``enabled``.

    The fused CPU/GPU attention kernels (used by timm's and sslkit's ViT) have a backward with no
    derivative of its own, so the penalty's double backward through them fails; the math kernel is
    built from ordinary differentiable ops.
    """
    if not enabled:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _leaf_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if it already carries a graph (e.g. embeddings, so the penalty reaches the
    embedding table through it, as the reference), else a detached copy that requires grad."""
    if x.requires_grad:
        return x
    return x.detach().requires_grad_(True)


def random_unit_projections(n_projections: int, batch_size: int, out_dim: int, *,
                            dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian vectors normalised to unit length: ``(n_projections, batch_size, out_dim)``.

    One independent set per sample (arXiv 1908.02729, Alg. 1). The norm is floored at 1e-8 as in
    the reference ``GrokAlign._get_random_projections``.
    """
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}.")
    v = torch.randn(n_projections, batch_size, out_dim, dtype=dtype, device=device, generator=generator)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def _squared_vjp_norms_batched(out_flat: torch.Tensor, x: torch.Tensor, projections: torch.Tensor,
                               create_graph: bool) -> torch.Tensor:
    """``sum_j ||J(x_i)^T v_ij||^2`` for each i with one batched VJP per projection: (B,)."""
    total = out_flat.new_zeros(out_flat.shape[0])
    for j in range(projections.shape[0]):
        (jtv,) = torch.autograd.grad(out_flat, x, grad_outputs=projections[j], create_graph=create_graph,
                                     retain_graph=True)
        total = total + jtv.reshape(jtv.shape[0], -1).pow(2).sum(dim=1)
    return total


def jacobian_norm_from_outputs(outputs: torch.Tensor, inputs: torch.Tensor, n_projections: int = 1, *,
                               projections: torch.Tensor | None = None,
                               generator: torch.Generator | None = None, create_graph: bool = True,
                               floor: float = SQRT_FLOOR) -> torch.Tensor:
    """:func:`jacobian_norm_estimate` from a forward pass already made: (B,).

    Lets a training step share one forward between the task loss and the penalty. ``inputs``
    (B, *S) must have required grad *before* ``outputs`` (B, *T) were computed from it. A model
    with attention must have run that forward under
    ``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``: fused attention kernels cannot be
    differentiated twice (:func:`jacobian_norm_estimate` does this itself).
    """
    if not inputs.requires_grad:
        raise ValueError("inputs must require grad before the forward pass that produced outputs; "
                         "call inputs.requires_grad_(True) first, or use jacobian_norm_estimate.")
    batch = outputs.shape[0]
    out_flat = outputs.reshape(batch, -1)
    if projections is None:
        projections = random_unit_projections(n_projections, batch, out_flat.shape[1], dtype=out_flat.dtype,
                                              device=out_flat.device, generator=generator)
    if projections.ndim != 3 or projections.shape[1] != batch:
        raise ValueError(f"projections must have shape (n_p, B={batch}, C), got {tuple(projections.shape)}.")
    n_p, _, out_dim = projections.shape
    with torch.enable_grad():
        squared = _squared_vjp_norms_batched(out_flat, inputs, projections.to(out_flat.dtype), create_graph)
    return (squared * (out_dim / n_p)).clamp_min(floor).sqrt()


def _squared_vjp_norms_vmap(model: Model, x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Same as the batched version but each sample runs through ``model`` alone (``torch.func``),
    so cross-sample operations cannot mix samples' Jacobians. Differentiable w.r.t. parameters."""
    from torch.func import vjp, vmap

    def one_sample(xi: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        _, pullback = vjp(lambda z: model(z.unsqueeze(0)).reshape(-1), xi)
        jtv = vmap(lambda v: pullback(v)[0])(vi)  # (n_p, *S)
        return jtv.pow(2).sum()

    return vmap(one_sample)(x, projections.transpose(0, 1))


def jacobian_norm_estimate(model: Model, x: torch.Tensor, n_projections: int = 1, *,
                           projections: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, create_graph: bool = True,
                           floor: float = SQRT_FLOOR, per_sample: str = "batched") -> torch.Tensor:
    """Per-sample random-projection estimate of the Jacobian Frobenius norm, ``R(x)``: (B,).

    ``R(x) = sqrt(max((C / n_p) * sum_j ||J(x)^T v_j||^2, floor))`` with ``v_j`` uniform on the
    unit sphere (spec step 1; arXiv 2506.12284 with the estimator of arXiv 1908.02729), so
    ``R(x)^2`` is unbiased for ``||J(x)||_F^2``.

    Args:
        model: ``(B, *S) -> (B, *T)``, C = prod(T).
        x: ``(B, *S)``. If it already requires grad (e.g. it is the output of an embedding layer)
            it is used as is and the penalty's gradient also flows through it.
        n_projections: n_p, ignored when ``projections`` is given.
        projections: optional fixed ``(n_p, B, C)`` vectors (unit length for an unbiased estimate).
        generator: RNG for the projections.
        create_graph: keep the second-order graph so the result can be back-propagated to the
            parameters (needed for training; off for pure measurement).
        floor: clamp under the square root.
        per_sample: ``"batched"`` (one VJP for the whole batch; exact when the model treats samples
            independently) or ``"vmap"`` (``torch.func.vmap`` of ``vjp``, one sample at a time).
    """
    if per_sample not in ("batched", "vmap"):
        raise ValueError(f"per_sample must be 'batched' or 'vmap', got {per_sample!r}.")
    x_in = _leaf_input(x)
    if per_sample == "batched":
        x_in, outputs = differentiable_forward(model, x_in, create_graph)
        return jacobian_norm_from_outputs(outputs, x_in, n_projections, projections=projections,
                                          generator=generator, create_graph=create_graph, floor=floor)
    batch = x_in.shape[0]
    with torch.enable_grad():
        if projections is None:
            with torch.no_grad():  # only the output width is needed here
                out_dim = math.prod(model(x_in[:1]).shape[1:])
            projections = random_unit_projections(n_projections, batch, out_dim, dtype=x_in.dtype,
                                                  device=x_in.device, generator=generator)
        if projections.ndim != 3 or projections.shape[1] != batch:
            raise ValueError(f"projections must have shape (n_p, B={batch}, C), got {tuple(projections.shape)}.")
        n_p, _, out_dim = projections.shape
        with _twice_differentiable_attention(create_graph):
            squared = _squared_vjp_norms_vmap(model, x_in, projections.to(x_in.dtype))
    if not create_graph:
        squared = squared.detach()
    return (squared * (out_dim / n_p)).clamp_min(floor).sqrt()


def differentiable_forward(model: Model, x: torch.Tensor, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, outputs)``: ``model`` run on ``x`` so that the outputs can be differentiated w.r.t. the inputs
    (twice when ``create_graph``). ``inputs`` is ``x`` itself if it already carries a graph, else a detached copy
    that requires grad; attention runs on its twice-differentiable kernel."""
    x_in = _leaf_input(x)
    with torch.enable_grad(), _twice_differentiable_attention(create_graph):
        return x_in, model(x_in)


def jacobian_penalty(model: Model, x: torch.Tensor, n_projections: int = 1, **kwargs) -> torch.Tensor:
    """GrokAlign penalty ``P = mean_i R(x_i)``: the batch mean of the estimated Jacobian *norms*
    (not squared norms), scalar, differentiable w.r.t. the parameters of ``model``.

    Train with ``loss = task_loss + lam * jacobian_penalty(model, x)`` (arXiv 2506.12284; the
    spec's reference lambda is 1e-4 with MSE, 1e-3 with cross-entropy). Keyword arguments are
    those of :func:`jacobian_norm_estimate`.
    """
    return jacobian_norm_estimate(model, x, n_projections, **kwargs).mean()


def grokalign_objective(task_loss: torch.Tensor | float, outputs: torch.Tensor, inputs: torch.Tensor, lam: float,
                        n_projections: int = 1, *,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """GrokAlign's training objective ``task_loss + lam * P``, ``P = mean_i R(x_i)`` (arXiv 2506.12284), from
    the forward pass that produced ``outputs`` (B, *T) from ``inputs`` (B, *S), which required grad before it
    (:func:`differentiable_forward`). Returns ``(objective, P)``.

    The one definition of the objective: the training loop of ``sslkit grok`` adds it to its task loss
    from one shared forward, :class:`sslkit.engine.grokalign_callbacks.JacobianPenaltyCallback` back-propagates
    it with ``task_loss = 0`` after a Lightning module's own backward (gradients add, so both train on the same sum).
    """
    penalty = jacobian_norm_from_outputs(outputs, inputs, n_projections, generator=generator).mean()
    return task_loss + lam * penalty, penalty


# ----------------------------------------------------------------------------------- centroids

class CentroidStats(NamedTuple):
    """Centroid diagnostics of a batch; every field but ``centroid`` is (B,)."""

    centroid: torch.Tensor       # (B, *S), c(x) = J(x)^T 1
    norm: torch.Tensor           # ||c(x)||
    inner_product: torch.Tensor  # <c(x), x>
    alignment: torch.Tensor      # <c(x), x> / max(||c(x)|| ||x||, 1e-8)


def centroids(model: Model, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """``c(x) = J(x)^T 1 = grad_x sum_c f_c(x)``: one VJP with a ones vector, ``(B, *S)``.

    The sum of the rows of the per-sample Jacobian (spec step 2), exact for per-sample models.
    Works under ``torch.no_grad()`` (it enables grad locally) and never touches ``.grad`` of the
    parameters. Detached unless ``create_graph``.
    """
    x_in = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x_in)
        (c,) = torch.autograd.grad(out, x_in, grad_outputs=torch.ones_like(out), create_graph=create_graph)
    return c if create_graph else c.detach()


def alignment_from_centroids(centroid: torch.Tensor, x: torch.Tensor,
                             floor: float = ALIGNMENT_FLOOR) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(alignment, norm, inner_product)``, each (B,), from centroids and inputs of shape (B, *S)."""
    c_flat = centroid.reshape(centroid.shape[0], -1)
    x_flat = x.reshape(x.shape[0], -1).to(c_flat.dtype)
    inner = (c_flat * x_flat).sum(dim=1)
    c_norm = c_flat.norm(dim=1)
    alignment = inner / (c_norm * x_flat.norm(dim=1)).clamp_min(floor)
    return alignment, c_norm, inner


def centroid_stats(model: Model, x: torch.Tensor, floor: float = ALIGNMENT_FLOOR) -> CentroidStats:
    """Centroids with their norm, inner product with the input, and alignment (spec step 3)."""
    c = centroids(model, x)
    alignment, norm, inner = alignment_from_centroids(c, x.detach(), floor)
    return CentroidStats(centroid=c, norm=norm, inner_product=inner, alignment=alignment)


def centroid_summary(model: Model, x: torch.Tensor, floor: float = ALIGNMENT_FLOOR) -> dict[str, float]:
    """The batch means GrokAlign tracks during training: ``alignment`` (mean cos(c(x), x)), ``norm`` (mean
    ||c(x)||) and ``inner_product`` (mean <c(x), x>), as floats. The caller decides the mode of ``model``
    (eval mode: no dropout or drop-path in c(x))."""
    stats = centroid_stats(model, x, floor)
    return {"alignment": float(stats.alignment.mean()), "norm": float(stats.norm.mean()),
            "inner_product": float(stats.inner_product.mean())}


def centroid_alignment(model: Model, x: torch.Tensor, floor: float = ALIGNMENT_FLOOR) -> torch.Tensor:
    """``a(x) = <c(x), x> / max(||c(x)|| ||x||, 1e-8)`` on flattened tensors: (B,)."""
    return centroid_stats(model, x, floor).alignment


# --------------------------------------------------------------------------------- PC1 diagnostic

def per_sample_jacobian(model: Model, x: torch.Tensor) -> torch.Tensor:
    """The full Jacobian of each sample, ``(B, C, D)``, one sample at a time (dense; small models)."""
    rows = []
    with torch.enable_grad():
        for i in range(x.shape[0]):
            xi = x[i].detach()
            jac = torch.autograd.functional.jacobian(lambda z: model(z.unsqueeze(0)).reshape(-1), xi,
                                                     vectorize=True)
            rows.append(jac.reshape(jac.shape[0], -1))
    return torch.stack(rows)


def jacobian_pc1(model: Model, x: torch.Tensor, max_samples: int = PC1_SAMPLES) -> torch.Tensor:
    """Share of the Jacobian's energy in its first principal direction, ``s_1^2 / sum_i s_i^2``,
    for each of the first ``max_samples`` samples: (min(B, max_samples),) in (0, 1].

    Spec step 4 (the reference ``PC1`` averages it over 64 samples: take ``.mean()``). Near 1 means
    the Jacobian is close to rank one, i.e. every output responds to the same input direction.
    """
    jac = per_sample_jacobian(model, x[:max_samples])
    s2 = torch.linalg.svdvals(jac).pow(2)
    return s2[:, 0] / s2.sum(dim=1).clamp_min(torch.finfo(s2.dtype).tiny)
