"""Ablations for the peer-parity table (``peer_parity.py``): swap one component between sslkit and a peer.

Each arm trains on exactly what ``peer_parity.py`` uses (same seeds, crops, schedules, steps, evaluator) with one
component changed, and its per-seed values go into ``--json`` under ``ablations.<name>`` (the rest of the file is
kept). Run it in ``.venv-peers`` after (never beside) the main benchmark::

    OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/peer_parity_ablate.py mae-decoder \\
        --json benchmarks/results/peer_parity.json

Ablations:

mae-decoder
    The MAE decoder's shape swapped: sslkit with the peers' decoder (1 block, width 512, 16 heads: lightly's
    example and the stable-pretraining arm) through ``mae.decoder_dim=512 mae.decoder_depth=1
    mae.decoder_num_heads=16``; stable-pretraining's ``methods.MAE`` with sslkit's recipe decoder (2 blocks,
    width 128, 4 heads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_parity as pp  # noqa: E402

from sslkit.data.sources import open_data  # noqa: E402

ABLATIONS = {
    "mae-decoder": {
        "key": "mae_decoder_swap",
        "method": "mae",
        "description": ("MAE, same seeds/crops/schedules/steps as the table; the decoder shape swapped between "
                        "sslkit and stable-pretraining (sslkit via mae.decoder_dim=512 mae.decoder_depth=1 "
                        "mae.decoder_num_heads=16; stable-pretraining's methods.MAE with decoder_embed_dim=128, "
                        "decoder_depth=2, decoder_num_heads=4); benchmarks/peer_parity_ablate.py mae-decoder"),
        "arms": [
            ("sslkit, the peers' decoder 512 × 1 block, 16 heads", "sslkit",
             ("mae.decoder_dim=512", "mae.decoder_depth=1", "mae.decoder_num_heads=16"), None),
            ("stable-pretraining, sslkit's decoder 128 × 2 blocks, 4 heads", "sp", (),
             {**pp.SP_SETTINGS["mae"], "decoder_embed_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4}),
        ],
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ablation", choices=sorted(ABLATIONS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=66)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--json", type=Path, required=True, help="the peer-parity JSON to add the ablation to")
    args = parser.parse_args(argv)

    spec = ABLATIONS[args.ablation]
    libs = {side: pp.import_peer(side) for _, side, _, _ in spec["arms"] if side != "sslkit"}
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    seeds = [int(s) for s in args.seeds.split(",")]
    data = open_data(args.data, image_size=32)
    res = json.loads(args.json.read_text()) if args.json.is_file() else {}
    entry = {"description": spec["description"], "steps": args.steps, "seeds": seeds,
             "load_before": os.getloadavg()[0], "versions": {p: str(lib.__version__) for p, lib in libs.items()},
             "runs": []}
    res.setdefault("ablations", {})[spec["key"]] = entry
    method = spec["method"]
    for seed in seeds:
        for label, side, overrides, settings in spec["arms"]:
            cfg, schedules, _ = pp.load_method_config(method, args.data, seed, args.steps, args.batch_size,
                                                      len(data.train), tuple(overrides))
            loader = pp.make_loader(cfg, data, args.steps)
            t0 = time.perf_counter()
            if side == "sslkit":
                model, losses = pp.train_sslkit(cfg, schedules, data, loader)
            else:
                model, losses = pp.train_sp(cfg, schedules, data, loader, settings=settings)
            train_s = time.perf_counter() - t0
            scores = pp.evaluate(model, data, cfg.crops.global_size)
            entry["runs"].append({"side": label, "seed": seed, "train_s": train_s, "first_loss": losses[0],
                                  "final_loss": losses[-1], **scores})
            print(f"{label}: seed {seed}: kNN {pp.pct(scores['knn'])} %, linear {pp.pct(scores['linear'])} %, "
                  f"train {train_s:.0f} s", flush=True)
            entry["load_after"] = os.getloadavg()[0]
            pp.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
