"""The ``sslkit`` command line. The only layer that prints; each verb calls one Python API."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """sslkit: self-supervised learning research, usable.

Pretrain a DINOv2-style ViT (or MAE, SimCLR, VICReg) on a built-in offline dataset ('shapes',
'digits') or on your own images, on a CPU or many GPUs; evaluate it; and analyse models with the
2025 SSL toolbox. Every verb has its own --help. Examples:

  sslkit pretrain --data shapes --recipe recipes/dinov2-tiny.yaml
  sslkit evaluate runs/RUN timm:resnet18 --data shapes
  sslkit taskprior runs/RUN --data digits
  sslkit sae train --model smollm2 --layer model.layers.15
"""


def _parser() -> argparse.ArgumentParser:
    import importlib

    from sslkit import __version__
    from sslkit.commands import VERBS
    from sslkit.commands.verb_config import add_config_options

    parser = argparse.ArgumentParser(prog="sslkit", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sslkit {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for module in VERBS:
        importlib.import_module(module).add_parser(verbs)
    add_config_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # Overrides may stand anywhere, also after options (`--out DIR a.b=1 --resume c.d=2`):
    # argparse only takes one run of positionals, so collect the rest by hand.
    args, extra = parser.parse_known_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    from sslkit.config import ConfigError
    from sslkit.data.errors import DataError

    from sslkit.engine.run_interrupted import RunInterrupted

    try:
        if hasattr(args, "overrides"):  # pretrain, flops: recipe overrides
            stray = [e for e in extra if e.startswith("-") or "=" not in e]
            if stray:
                parser.error(f"unrecognized arguments: {' '.join(stray)}")
            args.overrides = list(args.overrides) + extra
        else:  # every other verb: --config FILE.yaml and key=value over its options
            from sslkit.commands.verb_config import resolve

            args = resolve(parser, argv, args, extra)
        return args.run(args)
    except (ConfigError, DataError, FileNotFoundError, FileExistsError, FloatingPointError) as err:
        print(f"sslkit {args.verb}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        from sslkit.commands.write_failure import WRITE_ERRNOS, write_failure_message

        if err.errno not in WRITE_ERRNOS:
            raise
        print(f"sslkit {args.verb}: {write_failure_message(err, args.verb)}", file=sys.stderr)
        return 2
    except RunInterrupted as stop:
        print(f"sslkit {args.verb}: {stop}", file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
