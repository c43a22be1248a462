"""``trainer.compile``: ``torch.compile`` on the pieces of a step where fusion pays, compiled in place.

What is compiled: every transformer block (attention + MLP: LayerNorm, GELU, softmax and the residual adds
become fused kernels around the matmuls) and every head MLP, of the student, the EMA teacher and any other
copy a method keeps. Compiled in place with ``nn.Module.compile``: parameter names, ``state_dict``, the EMA's
parameter pairing and checkpoints are those of the eager model, so a run can be resumed with or without it.
Not compiled: the losses (custom autograd functions with chunked loops) and the optimiser/EMA (already single
``_foreach`` kernels). Each crop size is its own graph (``dynamic=False``): two per block for a multi-crop step.

The first steps pay the compilation (minutes on a CPU); ``benchmarks/RESULTS.md`` measures what it buys.
"""

from __future__ import annotations

from torch import nn

__all__ = ["compile_step_modules", "compiled_targets"]


def compiled_targets(method: nn.Module) -> list[nn.Module]:
    """The modules :func:`compile_step_modules` compiles: transformer blocks and head MLPs, outermost first."""
    from timm.models.vision_transformer import Block

    from sslkit.nn.heads import DINOHead, ProjectionMLP

    targets = []
    for module in method.modules():
        if isinstance(module, Block):
            targets.append(module)
        elif isinstance(module, DINOHead):
            targets.append(module.mlp)
        elif isinstance(module, ProjectionMLP):
            targets.append(module)
    return targets


def compile_step_modules(method: nn.Module, mode: str | None = None) -> int:
    """Compile :func:`compiled_targets` in place; returns how many modules were compiled."""
    targets = compiled_targets(method)
    for module in targets:
        module.compile(dynamic=False, mode=mode)
    return len(targets)
