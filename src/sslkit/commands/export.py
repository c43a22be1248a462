"""`sslkit export`: a pretrained run's backbone in another library's format (transformers Dinov2Model, timm, ONNX)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sslkit.commands.run_dir import add_output_arguments, check_output_free, output_dir, write_results

NAME = "export"

EXPORT_EPILOG = """formats:
  hf    a transformers Dinov2Model folder (config.json + model.safetensors, and sslkit.json with the run's
        mean/std): transformers.Dinov2Model.from_pretrained(OUT) gives the same tokens as the sslkit ViT
        (sslkit ViTs without register tokens)
  timm  model.safetensors + timm.json: timm.create_model(model_name, pretrained=False, **kwargs) then
        load_state_dict gives the same tokens (any sslkit ViT)
  onnx  model.onnx + onnx.json: the features `sslkit evaluate` pools by default (a ViT's class token, a CNN's
        pooled output) for normalised images (B, C, S, S), dynamic batch, S fixed (--image-size, default the
        run's resolution); checked against PyTorch with onnxruntime to 1e-4 before it is written (ViTs and
        timm/sslkit CNN backbones; needs pip install 'sslkit[onnx]')
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("export", help="write a run's backbone for another library (transformers)",
                         description="Write a pretrained run's backbone in another library's format.",
                         epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN", help="an sslkit run directory (backbone.safetensors + backbone.json)")
    p.add_argument("--format", default="hf", choices=["hf", "timm", "onnx"], help="output format (default hf)")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="onnx: the S x S input size the graph is traced at (default: the run's resolution)")
    add_output_arguments(p, "runs/export-<run>-<format>-<time>")
    p.set_defaults(run=run)


def run(args) -> int:
    from sslkit.config import ConfigError
    from sslkit.nn.export import load_backbone
    from sslkit.nn.export_formats import write_hf_dinov2, write_timm
    from sslkit.nn.vit import ViT

    out = output_dir(args.out, "export", Path(args.run_dir).name, args.format)
    check_output_free(out, args.overwrite)
    try:
        model = load_backbone(args.run_dir)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"Cannot export '{args.run_dir}': {err}") from None
    meta = getattr(model, "meta", {}) or {}
    extra = {"source_run": str(Path(args.run_dir).resolve()), "mean": meta.get("mean"), "std": meta.get("std"),
             "sslkit_extra": meta.get("extra")}
    if args.format == "onnx":
        return _export_onnx(args, model, out, extra)
    if not isinstance(model, ViT):
        raise ConfigError(f"Run '{args.run_dir}' has a timm backbone; its backbone.safetensors already loads in plain "
                          f"timm (see backbone.json), so there is nothing to convert (or export --format onnx).")
    try:
        writer = write_hf_dinov2 if args.format == "hf" else write_timm
        paths = write_results(out, lambda folder: {"weights": writer(model, folder, extra) / "model.safetensors"},
                              args.overwrite)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    what = "a transformers Dinov2Model" if args.format == "hf" else "a timm checkpoint (timm.json)"
    print(f"exported {args.run_dir} as {what}: {paths['weights'].parent}")
    return 0


def _export_onnx(args, model, out: Path, extra: dict) -> int:
    from sslkit.config import ConfigError
    from sslkit.nn.export_onnx import require_onnx, write_onnx

    try:
        require_onnx()
    except ImportError as err:
        raise ConfigError(str(err)) from None
    size = onnx_image_size(args.run_dir, model, args.image_size)
    try:
        paths = write_results(out, lambda folder: {"graph": write_onnx(model, folder, size, extra)}, args.overwrite)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    print(f"exported {args.run_dir} as ONNX ({size}x{size} px, dynamic batch; see onnx.json): {paths['graph']}")
    return 0


def onnx_image_size(run_dir: str, model, requested: int | None) -> int:
    """The side the ONNX graph is traced at: ``--image-size``, else the run's recorded resolution (a ViT's
    native size for older runs); a ViT needs a multiple of its patch size."""
    from sslkit.config import ConfigError

    recorded = (getattr(model, "meta", {}) or {}).get("extra", {}).get("image_size")
    is_vit = getattr(model, "is_vit", True) is not False
    size = requested if requested is not None else recorded or (model.config.img_size if is_vit else None)
    if size is None:
        raise ConfigError(f"Run '{run_dir}' does not record its image size; pass --image-size S (the side in pixels "
                          f"the images will have).")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
        raise ConfigError(f"--image-size must be a whole number of pixels from 8 to 4096, got {size!r}.")
    patch = model.config.patch_size if is_vit else 1
    if size % patch:
        raise ConfigError(f"--image-size {size} is not a multiple of the ViT's patch size {patch}; pass "
                          f"{size // patch * patch or patch} or {(size // patch + 1) * patch}.")
    return size
