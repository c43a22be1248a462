"""`sslkit evaluate`: kNN, linear probe, few-shot, segmentation and representation metrics, side by side."""

from __future__ import annotations

import argparse

from sslkit.commands.feature_options import add_feature_arguments
from sslkit.commands.run_dir import add_output_arguments, report_on_models

NAME = "evaluate"

EVALUATE_EPILOG = """models:
  RUN_DIR                          an sslkit run (backbone.safetensors + backbone.json from `sslkit pretrain`)
  timm:NAME                        any timm architecture, random init (seed 0); nothing is downloaded
  timm:NAME@/path/w.safetensors    a timm architecture with weights from a local safetensors file
  vit:/path/weights                public ViT weights: a timm checkpoint, the facebookresearch/dinov2 hub .pth or
                                   a transformers Dinov2Model folder (shape read from the file; 224 px, ImageNet stats)
  FILE.safetensors                 precomputed features: 'features' [+ 'labels'], or train.features/test.features ...

protocols (--protocols, comma-separated; default knn,linear,rankme):
  knn            weighted kNN (cosine, softmax(s/T) votes), k in --knn-k, T = --knn-temperature
  linear         linear probe: every (lr, wd) of the grid is one head of one layer, best on a validation split
  fewshot        n-shot nearest-centroid episodes, mean ± std
  segmentation   linear head on patch tokens, mIoU on the 'shapes' foreground masks
  rankme         RankMe of the test features (+ singular-value spectrum plot)
  alpha_req      α-ReQ spectral decay of the test features
  similarity     CKA (linear, RBF, unbiased), mutual kNN and CKNNA between the models
  robustness     (or --robustness) kNN accuracy on ImageNet-C-style corrupted test images: 17 corruptions x
                 severities 1-5, mean corruption accuracy, mCE and relative mCE vs a reference model
                 (the first model, or --reference), heat map robustness_heatmap.png

examples:
  sslkit evaluate runs/tiny-shapes timm:resnet18 --data shapes
  sslkit evaluate runs/tiny-digits --data digits --protocols knn,linear,fewshot,rankme --pooling cls+mean
  sslkit evaluate runs/fast runs/baseline --data digits --robustness --reference runs/baseline

output (--out, default runs/evaluate-<data>-<time>):
  report.json  report.html  knn_accuracy_vs_k.png  linear_probe_sweep.png  singular_value_spectrum.png
  robustness_heatmap.png (with --robustness)
Features are cached (safetensors, keyed by model + data + transform + pooling) in --cache-dir, so running the
same evaluation again skips the networks.
"""


def _ints(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(verbs) -> None:
    from sslkit.eval.encoders import POOLINGS

    p = verbs.add_parser("evaluate", help="evaluate frozen features: kNN, linear probe, few-shot, metrics",
                         description="Evaluate one or more frozen models side by side and write report.json + "
                                     "report.html.",
                         epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL", help="run directory, timm:NAME[@weights], vit:PATH, or features file")
    p.add_argument("--data", help="'shapes', 'digits', an image folder, a .csv/.txt path list or tar shards "
                                  "'DIR/shard-{000000..000099}.tar'")
    p.add_argument("--protocols", default="knn,linear,rankme", help="comma-separated protocols (see below)")
    add_output_arguments(p, "runs/evaluate-<data>-<time>")
    p.add_argument("--pooling", default="cls", choices=[x for x in POOLINGS if x != "patch"],
                   help="features for the image-level protocols (default cls; 'cls+mean' = DINOv2 linear eval)")
    p.add_argument("--n-last-blocks", type=int, default=1, help="ViTs: concatenate the CLS of the last n blocks")
    p.add_argument("--image-size", type=int, help="input side (default: the model's training size, else 32 for "
                                                  "built-in data and 224 for folders)")
    p.add_argument("--num-samples", type=int, help="training images of the built-in 'shapes' (default 4000)")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="replace unreadable images by the next readable one and list them in OUT/bad_files.txt "
                        "(default: stop at the first, naming it)")
    p.add_argument("--knn-k", type=_ints, default=(10, 20, 100, 200), help="neighbour counts (default 10,20,100,200)")
    p.add_argument("--knn-temperature", type=float, default=0.07, help="T of the softmax voting (default 0.07)")
    p.add_argument("--linear-lrs", type=_floats, help="learning-rate grid (default the 13 DINOv2 values 1e-5..0.1)")
    p.add_argument("--linear-wds", type=_floats, help="weight-decay grid (default 0,1e-4,1e-3)")
    p.add_argument("--linear-epochs", type=int, default=10, help="probe epochs (default 10; at least 1000 steps)")
    p.add_argument("--fewshot-shots", type=_ints, default=(1, 5, 10), help="shots per class (default 1,5,10)")
    p.add_argument("--fewshot-episodes", type=int, default=100, help="episodes per shot count (default 100)")
    p.add_argument("--robustness", action="store_true",
                   help="also run the corruption-robustness protocol (same as adding 'robustness' to --protocols)")
    p.add_argument("--corruptions", help="comma-separated corruptions or groups (noise, blur, weather, digital); "
                                         "default all 17")
    p.add_argument("--severities", type=_ints, default=(1, 2, 3, 4, 5), help="severities (default 1,2,3,4,5)")
    p.add_argument("--robustness-k", type=int, default=20, help="k of the robustness kNN (default 20)")
    p.add_argument("--robustness-samples", type=int,
                   help="corrupt at most this many test images (seeded subsample; default all)")
    p.add_argument("--robustness-linear", action="store_true",
                   help="also classify corrupted images with a linear probe trained once on clean features "
                        "(the --linear-* grid)")
    p.add_argument("--reference", help="reference model of mCE: one of MODEL as given, or its 0-based index "
                                       "(default the first)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation split, episodes and heads")
    add_feature_arguments(p)
    p.set_defaults(run=run)


def settings_from_args(args):
    """EvaluationSettings from parsed arguments (kept separate so tests can check the mapping)."""
    from sslkit.eval.fewshot import FewShotConfig
    from sslkit.eval.knn import KNNConfig
    from sslkit.eval.linear import LinearProbeConfig
    from sslkit.eval.report import EvaluationSettings

    from sslkit.config import ConfigError

    protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    if getattr(args, "robustness", False) and "robustness" not in protocols:
        protocols += ("robustness",)
    linear = {"epochs": args.linear_epochs}
    if args.linear_lrs:
        linear["lrs"] = args.linear_lrs
    if args.linear_wds:
        linear["weight_decays"] = args.linear_wds
    data_options = {"num_samples": args.num_samples} if args.num_samples else {}
    if getattr(args, "skip_bad_files", False):
        data_options["skip_bad_files"] = True  # the report step adds OUT/bad_files.txt as the log
    try:
        robustness = _robustness_config(args)
        return EvaluationSettings(
            protocols=protocols, pooling=args.pooling, n_last_blocks=args.n_last_blocks, image_size=args.image_size,
            data_options=data_options, batch_size=args.batch_size, device=args.device, seed=args.seed,
            cache_dir=False if args.no_cache else (args.cache_dir or True),
            knn=KNNConfig(ks=args.knn_k, temperature=args.knn_temperature),
            linear=LinearProbeConfig(**linear),
            fewshot=FewShotConfig(shots=args.fewshot_shots, episodes=args.fewshot_episodes),
            robustness=robustness)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err)) from None


def _robustness_config(args):
    """RobustnessConfig from the --corruptions/--severities/... arguments (group names expand)."""
    from sslkit.data.corruptions import CORRUPTION_GROUPS, CORRUPTIONS
    from sslkit.eval.robustness import RobustnessConfig

    names: tuple = tuple(CORRUPTIONS)
    if getattr(args, "corruptions", None):
        names = ()
        for item in (c.strip() for c in args.corruptions.split(",") if c.strip()):
            names += CORRUPTION_GROUPS.get(item, (item,))
    return RobustnessConfig(corruptions=names, severities=getattr(args, "severities", (1, 2, 3, 4, 5)),
                            k=getattr(args, "robustness_k", 20), max_test_samples=getattr(args, "robustness_samples", None),
                            reference=getattr(args, "reference", None), seed=args.seed,
                            linear=getattr(args, "robustness_linear", False))


def print_table(console, report: dict) -> None:
    from rich.table import Table

    table = Table(title=f"sslkit evaluate · {report['data'].get('source')}")
    table.add_column("metric")
    for name in report["table"]["columns"]:
        table.add_column(name, justify="right")
    for row in report["table"]["rows"]:
        table.add_row(row["metric"], *row["values"])
    console.print(table)


def run(args) -> int:
    from sslkit.eval.report import evaluate, write_report

    settings = settings_from_args(args)
    console, report, paths = report_on_models(
        args, "evaluate", f" ({', '.join(settings.protocols)})",
        lambda log: evaluate(args.models, args.data, settings, progress=True, log=log), write_report)
    print_table(console, report)
    console.print(f"report: {paths['html']} and {paths['json']}")
    return 0
