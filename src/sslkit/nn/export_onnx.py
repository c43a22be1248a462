"""An exported backbone's feature function as ONNX (issue 21, item 6), checked with onnxruntime.

The graph is ``model(images)``: images (B, C, H, W), already normalised with the run's mean/std, to the
(B, D) features ``sslkit evaluate`` pools with its default ``cls`` pooling — an sslkit ViT's class token
after the final norm, a timm/sslkit CNN backbone's own pooled output. The batch axis is dynamic; the spatial
size is fixed at export (a ViT's position table is resampled for that grid while tracing). ``onnx.json``
next to ``model.onnx`` says what the graph expects: input/output names, channels, size, mean/std and the
feature width, plus the largest difference onnxruntime showed against PyTorch when it was written.

``onnx`` and ``onnxruntime`` are optional (``pip install 'sslkit[onnx]'``) and imported only here, inside
the functions that need them.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from sslkit.atomic_files import write_bytes_atomic, write_json_atomic
from sslkit.json_values import json_ready

__all__ = ["ONNX_NAME", "ONNX_JSON_NAME", "OPSET", "require_onnx", "onnx_bytes", "onnx_features",
           "check_onnx", "write_onnx"]

ONNX_NAME = "model.onnx"
ONNX_JSON_NAME = "onnx.json"
INPUT_NAME, OUTPUT_NAME = "images", "features"
# Opset 17 has LayerNormalization as one op and is read by every onnxruntime since 1.14.
OPSET = 17
TOLERANCE = 1e-4


def require_onnx() -> None:
    """Raise ImportError naming the missing package(s) and the install line when onnx/onnxruntime are absent."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"ONNX export needs the package{'s' if len(missing) > 1 else ''} {' and '.join(missing)}: "
                          f"pip install 'sslkit[onnx]' (or pip install {' '.join(missing)}).")


def onnx_bytes(model: torch.nn.Module, in_chans: int, image_size: int) -> bytes:
    """The serialised ONNX graph of ``model`` (eval mode) at ``image_size`` px with a dynamic batch axis."""
    example = torch.zeros(2, in_chans, image_size, image_size)
    model = _positions_pinned(model, image_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) is chosen on purpose: torch >= 2.9's default torch.export-based
        # exporter needs onnxscript (and its onnx-ir stack) on top of onnx, which sslkit would have to pin too; the
        # TorchScript one writes the same graph for these backbones with torch alone, offline. Its deprecation
        # notice and the tracer's "converting a tensor to a Python bool" notes (shape checks that are constant
        # for a fixed image size) are silenced here; the onnxruntime check below is what vouches for the graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return buffer.getvalue()


def onnx_features(path_or_bytes: str | Path | bytes, images: torch.Tensor) -> torch.Tensor:
    """onnxruntime's (B, D) features of ``images`` (B, C, H, W) through the graph at ``path_or_bytes``."""
    import onnxruntime

    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.detach().cpu().float().numpy()})
    return torch.from_numpy(out)


def check_onnx(graph: bytes, model: torch.nn.Module, in_chans: int, image_size: int,
               batch_sizes: Sequence[int] = (1, 3), seed: int = 0) -> float:
    """The largest |onnxruntime − PyTorch| feature difference on random images at each batch size; ValueError
    when it exceeds 1e-4 (the graph would not compute the run's features)."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in batch_sizes:
        images = torch.randn(batch, in_chans, image_size, image_size, generator=generator)
        with torch.no_grad():
            want = model(images)
        got = onnx_features(graph, images)
        if got.shape != want.shape:
            raise ValueError(f"The ONNX graph returns features of shape {tuple(got.shape)} for a batch of {batch}, "
                             f"PyTorch {tuple(want.shape)}; the export is broken, please report it.")
        worst = max(worst, float((got - want).abs().max()))
    if worst > TOLERANCE:
        raise ValueError(f"onnxruntime's features differ from PyTorch's by up to {worst:.2e} (> {TOLERANCE:g}); "
                         f"the export is not written, please report it.")
    return worst


def write_onnx(model: torch.nn.Module, out: str | Path, image_size: int, extra: dict[str, Any]) -> Path:
    """Check then write ``out/model.onnx`` and ``out/onnx.json`` (``extra``: mean, std, source run, ...);
    returns the graph's path."""
    require_onnx()
    in_chans = int(model.config.in_chans)
    graph = onnx_bytes(model, in_chans, image_size)
    worst = check_onnx(graph, model, in_chans, image_size)
    with torch.no_grad():
        feature_dim = int(model(torch.zeros(1, in_chans, image_size, image_size)).shape[1])
    out = Path(out)
    path = write_bytes_atomic(out / ONNX_NAME, graph)
    write_json_atomic(out / ONNX_JSON_NAME, json_ready({
        "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
        "input_shape": ["batch", in_chans, image_size, image_size], "channels": in_chans,
        "image_size": image_size, "feature_dim": feature_dim, "feature": _feature_kind(model), "opset": OPSET,
        "normalisation": "images are scaled to [0, 1], then (x - mean) / std per channel",
        **extra, "onnxruntime_max_abs_diff": worst}))
    return path


def _positions_pinned(model: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """``model``, or for a ViT away from its native grid a copy whose resampled position table is computed once
    here: the tracer cannot follow the table's bicubic resampling (its scale factor is read from the input's
    shape), and at a fixed input size the table is a constant anyway."""
    native = getattr(model, "native_grid", None)
    grid = image_size // model.config.patch_size if native is not None else None
    if native is None or native == (grid, grid):
        return model
    with torch.no_grad():
        table = model.interpolate_pos_embed(grid, grid).detach().clone()
    pinned = copy.deepcopy(model)
    pinned.interpolate_pos_embed = lambda h, w: table  # an instance attribute shadows the method
    return pinned


def _feature_kind(model: torch.nn.Module) -> str:
    if getattr(model, "is_vit", True) is False:
        return "the backbone's pooled output (B, feature_dim)"
    return "the class token after the final norm (B, feature_dim)"
