"""`sslkit data pack`: write a dataset as WebDataset-style tar shards with an index, for data at any size."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "data"

PACK_EPILOG = """output (--out DIR, built in a temporary folder and renamed at the end):
  DIR/shard-000000.tar ...   N samples each: KEY.EXT (the file as it is; built-in sets as 8-bit PNG), KEY.cls (label)
  DIR/shards.json            member names, byte offsets and sizes, labels, class names (random access)

train on the shards with
  sslkit pretrain --recipe R.yaml --data 'DIR/shard-{000000..000099}.tar'   (or --data DIR: every shard)
Batches stay a pure function of (seed, step): --resume is exact and ranks/workers split samples without
duplicates. See docs/data-at-scale.md.
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("data", help="prepare data: pack images into tar shards",
                         description="Prepare data for pretraining at scale.")
    actions = p.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    pack = actions.add_parser("pack", help="write tar shards and their index from any --data source",
                              description="Write SOURCE (a built-in set, an image folder or a .csv/.txt list) as tar "
                                          "shards of --shard-size samples plus shards.json, keeping labels.",
                              epilog=PACK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pack.add_argument("source", metavar="SOURCE", help="'digits', 'shapes', 'glyphs', an image folder or a .csv/.txt list")
    pack.add_argument("--out", required=True, help="output folder for the shards (refused if non-empty unless --overwrite)")
    pack.add_argument("--shard-size", type=int, default=10000, help="samples per shard (default 10000)")
    pack.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    pack.add_argument("--split", default="train", choices=["train", "test"], help="built-in sets: which split")
    pack.add_argument("--size", type=int, default=32, help="built-in sets: image size (default 32)")
    pack.add_argument("--num-samples", type=int, help="'shapes'/'glyphs': number of images")
    pack.add_argument("--channels", default="auto", choices=["auto", "1", "3"],
                      help="'digits': 1 or 3 channels (folders and lists are stored as the files are)")
    pack.add_argument("--no-progress", action="store_true", help="no progress bar")
    pack.set_defaults(run=run_pack)


def run_pack(args) -> int:
    from rich.console import Console

    from sslkit.commands.run_dir import check_output_free
    from sslkit.data.errors import DataError
    from sslkit.data.noise import open_image_source
    from sslkit.data.shard_pack import describe, pack_shards

    if args.shard_size < 1:
        raise DataError(f"--shard-size must be at least 1, got {args.shard_size}.")
    out = Path(args.out)
    check_output_free(out, args.overwrite)
    channels = args.channels if args.channels == "auto" else int(args.channels)
    dataset = open_image_source(args.source, args.split, args.size, args.num_samples, channels)
    result = pack_shards(dataset, out, args.shard_size, source=args.source, overwrite=args.overwrite or out.exists(),
                         progress=not args.no_progress)
    Console().print(describe(result), soft_wrap=True)  # the pattern stays one copyable line
    return 0
