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

vicreg-projector
    sslkit's VICReg with stable-pretraining's projector shape (3 × 2048, the reference layout and sslkit's own
    ``VICRegConfig`` default) instead of the ``vicreg-tiny`` recipe's 3 × 512.

mae-mean-pool
    The table's three MAE arms, each backbone scored on the class token and on the mean of its patch tokens.

mae-cls-out
    sslkit with the class token kept out of the decoder (``mae.decoder_prefix_tokens=false``, what
    stable-pretraining's ``MAE.forward`` does), at the recipe decoder and at the peers' 512 × 1 decoder.
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
    "mae-cls-out": {
        "key": "mae_cls_out_of_decoder",
        "method": "mae",
        "description": ("MAE, same seeds/crops/schedules/steps as the table; sslkit with the class token kept out "
                        "of the decoder (mae.decoder_prefix_tokens=false, as stable-pretraining's methods.MAE), "
                        "at its recipe decoder and at the peers' 512 x 1 decoder; "
                        "benchmarks/peer_parity_ablate.py mae-cls-out"),
        "arms": [
            ("sslkit, class token out of the decoder, recipe decoder 128 × 2", "sslkit",
             ("mae.decoder_prefix_tokens=false",), None),
            ("sslkit, class token out of the decoder, the peers' decoder 512 × 1", "sslkit",
             ("mae.decoder_prefix_tokens=false", "mae.decoder_dim=512", "mae.decoder_depth=1",
              "mae.decoder_num_heads=16"), None),
        ],
    },
    "mae-mean-pool": {
        "key": "mae_mean_pooled_features",
        "method": "mae",
        "pooling": ("cls", "mean"),
        "description": ("MAE, the three sides exactly as in the table (each at its defaults), each backbone scored "
                        "twice by the same evaluator: on the class token (the table's features) and on the mean "
                        "of the patch tokens (what MAE's loss trains; the learning-outcome tests' MAE readout); "
                        "benchmarks/peer_parity_ablate.py mae-mean-pool"),
        "arms": [
            ("sslkit (recipe)", "sslkit", (), None),
            ("lightly (its MAE example)", "lightly", (), None),
            ("stable-pretraining (methods.MAE, 512 x 1 decoder)", "sp", (), None),
        ],
    },
    "vicreg-projector": {
        "key": "vicreg_projector_3x2048",
        "method": "vicreg",
        "description": ("VICReg, same seeds/crops/schedules/steps as the table; sslkit with stable-pretraining's "
                        "projector shape (3 layers, 2048-2048-2048: the VICReg reference's layout, and sslkit's "
                        "own VICRegConfig default) instead of the vicreg-tiny recipe's 3 x 512; "
                        "benchmarks/peer_parity_ablate.py vicreg-projector"),
        "arms": [
            ("sslkit, projector 2048-2048-2048, 3 layers", "sslkit",
             ("vicreg.projector_hidden_dim=2048", "vicreg.projector_out_dim=2048", "vicreg.projector_layers=3"),
             None),
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
            cfg, schedules, ipe = pp.load_method_config(method, args.data, seed, args.steps, args.batch_size,
                                                      len(data.train), tuple(overrides))
            loader = pp.make_loader(cfg, data, args.steps)
            t0 = time.perf_counter()
            if side == "sslkit":
                model, losses = pp.train_sslkit(cfg, schedules, data, loader)
            elif side == "lightly":
                model, losses = pp.train_lightly(cfg, ipe, args.steps, data, loader)
            else:
                model, losses = pp.train_sp(cfg, schedules, data, loader, settings=settings)
            train_s = time.perf_counter() - t0
            for pooling in spec.get("pooling", ("cls",)):
                scores = pp.evaluate(model, data, cfg.crops.global_size, pooling=pooling)
                entry["runs"].append({"side": label, "seed": seed, "train_s": train_s, "first_loss": losses[0],
                                      "final_loss": losses[-1], "pooling": pooling, **scores})
                print(f"{label}: seed {seed}: {pooling} kNN {pp.pct(scores['knn'])} %, linear "
                      f"{pp.pct(scores['linear'])} %, train {train_s:.0f} s", flush=True)
            entry["load_after"] = os.getloadavg()[0]
            pp.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
