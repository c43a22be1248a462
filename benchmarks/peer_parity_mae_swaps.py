"""Where stable-pretraining's MAE lead comes from: swap one part at a time between the two pipelines.

Every arm trains the peer-parity MAE setting (``peer_parity.py``: digits 32 px, the mae-tiny ViT, 66 steps of
batch 64, the recipe's lr/wd schedules) with the peers' 512-wide 1-block decoder, through one optimiser
(AdamW with stable-pretraining's weight-decay rule, ``peer_parity.peer_param_groups``), and is scored by the
table's evaluator (class token, kNN k = 20, T = 0.07, and the linear probe). Arms:

sp                  stable-pretraining's ``methods.MAE`` as in the table (encoder path, masks, decoder, loss)
sp_reinit           the same with its decoder initialised from another draw of the generator
sp_skmasks          the same with sslkit's collate masks instead of its ``PatchMasking``
sk_sploop           sslkit's MAE (encoder path, masks, decoder, loss) through this optimiser loop
sk_enc_sp_dec       sslkit's encoder path and masks, stable-pretraining's decoder and loss
sk_enc_sp_dec_sk_loss   the same with sslkit's loss
sp_enc_sk_dec       stable-pretraining's encoder path and masks, sslkit's decoder and loss
sk_predinit         sslkit's MAE with its output Linear at torch's default init (stable-pretraining's)
sk_predinit128      the same at the recipe's 128-wide 2-block decoder
sslkit_table        the table's sslkit arm as it is (recipe decoder, ``peer_parity.train_sslkit``): more seeds of it

Run in ``.venv-peers`` (one thread, one arm list and seed per call)::

    OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/peer_parity_mae_swaps.py sp,sk_enc_sp_dec 0

Each finished arm prints one line and appends a JSON row to ``--jsonl`` (default
``benchmarks/results/peer_parity_mae_swaps.jsonl``).
"""
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
from sslkit.engine.builders import build_method  # noqa: E402
from sslkit.functional.mae import masked_patch_mse, patchify  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("arms", help="comma-separated arm names (see the docstring)")
parser.add_argument("seed", type=int, nargs="?", default=0)
parser.add_argument("--jsonl", type=Path, default=Path(__file__).resolve().parent / "results" / "peer_parity_mae_swaps.jsonl")
args = parser.parse_args()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
arms = args.arms.split(",")
seed = args.seed
data = open_data("digits", image_size=32)
DEC = ("mae.decoder_dim=512", "mae.decoder_depth=1", "mae.decoder_num_heads=16")


def run(arm):
    if arm == "sslkit_table":
        cfg, schedules, _ = pp.load_method_config("mae", "digits", seed, 66, 64, len(data.train), ())
        t0 = time.perf_counter()
        model, losses = pp.train_sslkit(cfg, schedules, data, pp.make_loader(cfg, data, 66))
        return _record(arm, model, losses, t0)
    import stable_pretraining as spt
    cfg, schedules, _ = pp.load_method_config("mae", "digits", seed, 66, 64, len(data.train), DEC)
    loader = pp.make_loader(cfg, data, 66)
    pp.seed_all(seed)
    s = pp.SP_SETTINGS["mae"]
    o = cfg.optim
    if arm.startswith("sp") and not arm.startswith("sp_enc"):
        backbone = pp.build_backbone(cfg, data.channels).train()
        backbone.mask_token.requires_grad_(False)
        if arm == "sp_reinit":
            torch.manual_seed(seed + 1000)
        model = spt.methods.MAE(backbone, decoder_embed_dim=512, decoder_depth=1, decoder_num_heads=16)
        mods = [backbone, model.decoder]
        current = {}
        if arm == "sp_skmasks":
            from stable_pretraining.backbone.patch_masking import MaskingOutput
            def masking(x, gh, gw):
                m = current["masks"]
                n_vis = int((~m[0]).sum())
                ids_keep = torch.argsort(m.int(), dim=1, stable=True)[:, :n_vis]
                vis = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
                return MaskingOutput(visible=vis, mask=m.float(), ids_restore=None, ids_keep=ids_keep)
            class M(torch.nn.Module):
                def forward(self, x, gh, gw):
                    return masking(x, gh, gw)
            model.encoder.masking = M()
        def step_fn(b):
            current["masks"] = b["masks"]
            return model(b["global_crops"]).loss
    elif arm in ("sk_predinit", "sk_predinit128"):
        if arm == "sk_predinit128":
            cfg, schedules, _ = pp.load_method_config("mae", "digits", seed, 66, 64, len(data.train), ())
            loader = pp.make_loader(cfg, data, 66)
            pp.seed_all(seed)
        method = build_method(cfg, data.channels).train()
        backbone = method.student["backbone"]
        backbone.mask_token.requires_grad_(False)
        method.student["decoder"].predict.reset_parameters()  # torch's default Linear init, as SP's output_proj
        mods = [backbone, method.student["decoder"]]
        step_fn = lambda b: method(b)["loss"]  # noqa: E731
    elif arm in ("sk_sploop", "sk_enc_sp_dec", "sp_enc_sk_dec", "sk_enc_sp_dec_sk_loss"):
        method = build_method(cfg, data.channels).train()
        backbone = method.student["backbone"]
        backbone.mask_token.requires_grad_(False)
        if arm == "sk_sploop":
            mods = [backbone, method.student["decoder"]]
            step_fn = lambda b: method(b)["loss"]  # noqa: E731
        elif arm.startswith("sk_enc_sp_dec"):
            torch.manual_seed(seed + 1000)
            model = spt.methods.MAE(backbone, decoder_embed_dim=512, decoder_depth=1, decoder_num_heads=16)
            mods = [backbone, model.decoder]

            def step_fn(b):
                images, masks = b["global_crops"], b["masks"]
                enc = backbone.forward_visible(images, masks)
                n_vis = int((~masks[0]).sum())
                ids_keep = torch.argsort(masks.int(), dim=1, stable=True)[:, :n_vis]
                pred = model.decoder(enc["patch"], masks.float(), ids_keep=ids_keep, output_masked_only=False)
                if arm == "sk_enc_sp_dec":
                    return model.loss_fn(pred, images, masks.float())
                return masked_patch_mse(pred, patchify(images, backbone.patch_size), masks, norm_pix=True)
        else:  # sp encoder + masking, sslkit decoder and loss
            torch.manual_seed(seed + 1000)
            model = spt.methods.MAE(backbone, decoder_embed_dim=512, decoder_depth=1, decoder_num_heads=16)
            dec = method.student["decoder"]
            mods = [backbone, dec]

            def step_fn(b):
                images = b["global_crops"]
                out = model.encoder(images)
                masks = out.mask.bool()
                order = torch.argsort(out.ids_keep, dim=1)
                toks = out.encoded
                vis = toks[:, 1:].gather(1, order.unsqueeze(-1).expand(-1, -1, toks.shape[-1]))
                toks = torch.cat([toks[:, :1], vis], 1)
                pred = dec(toks, masks, (8, 8))
                return masked_patch_mse(pred, patchify(images, backbone.patch_size), masks, norm_pix=True)
    groups = pp.peer_param_groups(mods, backbone, o.layer_decay, o.patch_embed_lr_mult, set(), set())
    opt = torch.optim.AdamW(groups, lr=0.0, betas=tuple(o.betas), foreach=True)
    t0 = time.perf_counter()
    losses = []
    for step, b in enumerate(loader):
        pp.apply_peer_values(opt, schedules.at(step))
        loss = step_fn(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return _record(arm, backbone, losses, t0)


def _record(arm, backbone, losses, t0):
    train_s = time.perf_counter() - t0
    sc = pp.evaluate(backbone.eval(), data, 32)
    print(f"{arm} seed {seed}: kNN {100*sc['knn']:.1f} linear {100*sc['linear']:.1f} loss {losses[0]:.3f}->{losses[-1]:.3f} "
          f"{train_s:.0f}s", flush=True)
    row = {"arm": arm, "seed": seed, "knn": sc["knn"], "linear": sc["linear"], "first_loss": losses[0],
           "final_loss": losses[-1], "train_s": train_s, "load": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}
    with open(args.jsonl, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


for a in arms:
    run(a)
