"""`sslkit export`: a pretrained run's backbone in another library's format (transformers Dinov2Model)."""

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
        load_state_dict gives the same tokens (any sslkit ViT; ONNX export is not written yet)
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("export", help="write a run's backbone for another library (transformers)",
                         description="Write a pretrained run's backbone in another library's format.",
                         epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN", help="an sslkit run directory (backbone.safetensors + backbone.json)")
    p.add_argument("--format", default="hf", choices=["hf", "timm"], help="output format (default hf)")
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
    if not isinstance(model, ViT):
        raise ConfigError(f"Run '{args.run_dir}' has a timm backbone; its backbone.safetensors already loads in plain "
                          f"timm (see backbone.json), so there is nothing to convert.")
    meta = getattr(model, "meta", {}) or {}
    extra = {"source_run": str(Path(args.run_dir).resolve()), "mean": meta.get("mean"), "std": meta.get("std"),
             "sslkit_extra": meta.get("extra")}
    try:
        writer = write_hf_dinov2 if args.format == "hf" else write_timm
        paths = write_results(out, lambda folder: {"weights": writer(model, folder, extra) / "model.safetensors"},
                              args.overwrite)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    what = "a transformers Dinov2Model" if args.format == "hf" else "a timm checkpoint (timm.json)"
    print(f"exported {args.run_dir} as {what}: {paths['weights'].parent}")
    return 0
