"""The bad-input matrix (issue 23, item 2) for the analysis verbs: sae, taskprior, grok, align, theory, flops,
ssti and ntps.

Same contract as tests/cli/test_bad_inputs.py: exit status 2, the last stderr line is ``sslkit <verb>: ...``
and names the option, file or value, no traceback, and the working directory byte-identical afterwards.
Every row is rejected before a language model loads or anything trains.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from sslkit.cli import main
from bad_input_check import assert_refused_cleanly
from tiny_overrides import tiny_dinov2

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"monitor.knn_every_n_steps": 0, "trainer.max_steps": 2})


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_causal_lm):
    """A tiny pretrained run, activations, a features file, labelled texts, a tiny causal LM and wrong files."""
    root = tmp_path_factory.mktemp("world")
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(root / "run"), *TINY]) == 0
    g = torch.Generator().manual_seed(0)
    np.save(root / "acts.npy", torch.randn(200, 8, generator=g).numpy())
    from safetensors.torch import save_file

    save_file({"features": torch.randn(60, 8, generator=g), "labels": torch.arange(60) % 3},
              str(root / "feats.safetensors"))
    rows = [(f"{'good fine' if i % 2 else 'bad poor'} film {i}", "pos" if i % 2 else "neg") for i in range(40)]
    with (root / "reviews.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    model, tokenizer = tiny_causal_lm([t for t, _ in rows], layers=2, hidden=16)
    model.save_pretrained(root / "tiny-llama")
    tokenizer.save_pretrained(root / "tiny-llama")
    with (root / "one-class.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *[(text, "pos") for text, _ in rows]])
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    (root / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (root / "notes.txt").write_text("not a model, not a dataset\n")
    (root / "text.npy").write_text("not an array\n")
    (root / "results").mkdir()
    (root / "results" / "report.json").write_text("{}")
    return root


ACTS = ["sae", "train", "--acts", "{root}/acts.npy", "--out", "{root}/new"]
COMPARE = ["sae", "compare", "--acts", "{root}/acts.npy", "--out", "{root}/new"]
SAE_LM = ["sae", "train", "--model", "smollm2", "--layer", "model.layers.3", "--out", "{root}/new"]
SAE_RUN = ["sae", "train", "--model", "{root}/run", "--layer", "blocks.0", "--out", "{root}/new"]
PRIOR = ["taskprior", "{root}/feats.safetensors", "--out", "{root}/new"]
PRIOR_RUN = ["taskprior", "{root}/run", "--data", "digits", "--out", "{root}/new"]
GROK = ["grok", "--setup", "modadd", "--prime", "7", "--max-steps", "2", "--seeds", "1", "--out", "{root}/new"]
ALIGN = ["align", "{root}/run", "timm:resnet10t", "--data", "digits", "--out", "{root}/new"]
THEORY = ["theory", "linear", "--grid", "3", "--no-probe", "--out", "{root}/new"]
FLOPS = ["flops", RECIPE, "optim.iters_per_epoch=2"]
SSTI = ["ssti", "run", "--data", "{root}/reviews.csv", "--out", "{root}/new"]
CHECK = ["ssti", "check", "{root}/reviews.csv"]
NTPS = ["ntps", "--data", "{root}/reviews.csv", "--out", "{root}/new"]
NTPS_TINY = ["ntps", "--model", "{root}/tiny-llama", "--data", "{root}/reviews.csv", "--out", "{root}/new"]

ROWS = {
    # sae: sources
    "sae missing acts": (["sae", "train", "--acts", "{root}/nope.npy", "--out", "{root}/new"], "nope.npy"),
    "sae binary acts": (["sae", "train", "--acts", "{root}/binary.yaml", "--out", "{root}/new"], "binary.yaml"),
    "sae text as npy": (["sae", "train", "--acts", "{root}/text.npy", "--out", "{root}/new"], "text.npy"),
    "sae missing model": (["sae", "train", "--model", "{root}/no-run", "--layer", "blocks.0", "--out", "{root}/new"],
                          "no-run"),
    "sae text file as model": (["sae", "train", "--model", "{root}/notes.txt", "--layer", "blocks.0", "--out",
                                "{root}/new"], "notes.txt"),
    "sae unknown timm": (["sae", "train", "--model", "timm:bogusnet", "--layer", "x", "--out", "{root}/new"],
                         "timm:bogusnet"),
    "sae model without layer": (["sae", "train", "--model", "{root}/run", "--out", "{root}/new"], "--layer"),
    "sae no source": (["sae", "train", "--out", "{root}/new"], "--acts"),
    "sae two sources": ([*ACTS, "--model", "{root}/run", "--layer", "blocks.0"], "exactly one"),
    "sae acts with layer": ([*ACTS, "--layer", "blocks.0"], "--layer"),
    "sae acts with data": ([*ACTS, "--data", "digits"], "--data"),
    "sae layer beyond depth": ([*SAE_RUN[:4], "--layer", "blocks.99", *SAE_RUN[6:], "--max-samples", "50"],
                               "blocks.99"),
    "sae missing data": ([*SAE_RUN, "--data", "{root}/no-such-folder"], "no-such-folder"),
    "sae lm missing text": ([*SAE_LM, "--data", "{root}/nope.txt"], "nope.txt"),
    "sae lm binary text": ([*SAE_LM, "--data", "{root}/binary.yaml"], "binary.yaml"),
    "sae lm max-length": ([*SAE_LM, "--max-length", "0"], "--max-length"),
    "sae lm max-samples": ([*SAE_LM, "--max-samples", "1"], "--max-samples"),
    "sae lm negative skip": ([*SAE_LM, "--skip", "-1"], "--skip"),
    "sae lm image-size": ([*SAE_LM, "--image-size", "32"], "--image-size"),
    "sae zero image-size": ([*SAE_RUN, "--image-size", "0"], "--image-size"),
    "sae zero max-samples": ([*SAE_RUN, "--max-samples", "0"], "--max-samples"),
    # sae: numbers
    "sae zero k": ([*ACTS, "--k", "0"], "k=0"),
    "sae negative k": ([*ACTS, "--k", "-3"], "k=-3"),
    "sae k above latents": ([*ACTS, "--k", "300"], "k=300"),
    "sae non-numeric k": ([*ACTS, "--k", "few"], "--k"),
    "sae zero latents": ([*ACTS, "--latents", "0"], "latents"),
    "sae negative epochs": ([*ACTS, "--epochs", "-1"], "epochs"),
    "sae zero batch": ([*ACTS, "--batch-size", "0"], "batch_size"),
    "sae non-numeric batch": ([*ACTS, "--batch-size", "big"], "--batch-size"),
    "sae zero lr": ([*ACTS, "--lr", "0"], "lr"),
    "sae negative ridge": ([*ACTS, "--ridge", "-1"], "ridge"),
    "sae negative l1": ([*ACTS, "--activation", "relu", "--l1", "-1"], "l1"),
    "sae test-fraction zero": ([*ACTS, "--test-fraction", "0"], "--test-fraction"),
    "sae test-fraction above one": ([*ACTS, "--test-fraction", "1.5"], "--test-fraction"),
    "sae pam tied": ([*ACTS, "--trainer", "pam", "--tied"], "tied"),
    "sae unknown trainer": ([*ACTS, "--trainer", "sgd"], "--trainer"),
    "sae existing out": ([*ACTS[:-2], "--out", "{root}/results"], "--overwrite"),
    "sae compare zero seeds": ([*COMPARE, "--seeds", "0"], "--seeds"),
    "sae compare negative seeds": ([*COMPARE, "--seeds", "-2"], "--seeds"),
    "sae compare bogus fractions": ([*COMPARE, "--fractions", "bogus"], "bogus"),
    "sae compare zero fraction": ([*COMPARE, "--fractions", "0,50"], "--fractions"),
    "sae compare fraction above 100": ([*COMPARE, "--fractions", "150"], "--fractions"),
    "sae compare zero k": ([*COMPARE, "--k", "0"], "k=0"),
    "sae compare existing out": ([*COMPARE[:-2], "--out", "{root}/results"], "--overwrite"),
    # taskprior
    "taskprior missing model": (["taskprior", "{root}/no-run", "--data", "digits", "--out", "{root}/new"], "no-run"),
    "taskprior binary model": (["taskprior", "{root}/binary.yaml", "--data", "digits", "--out", "{root}/new"],
                               "binary.yaml"),
    "taskprior text npy": (["taskprior", "{root}/text.npy", "--out", "{root}/new"], "text.npy"),
    "taskprior run without data": (["taskprior", "{root}/run", "--out", "{root}/new"], "--data"),
    "taskprior missing data": (["taskprior", "{root}/run", "--data", "{root}/no-such-folder", "--out", "{root}/new"],
                               "no-such-folder"),
    "taskprior negative tasks": ([*PRIOR, "--tasks", "-1"], "--tasks"),
    "taskprior non-numeric tasks": ([*PRIOR, "--tasks", "many"], "--tasks"),
    "taskprior one class": ([*PRIOR, "--classes", "1"], "--classes"),
    "taskprior zero classes": ([*PRIOR, "--classes", "0"], "--classes"),
    "taskprior zero task-T": ([*PRIOR, "--task-T", "0"], "--task-T"),
    "taskprior negative task-T": ([*PRIOR, "--task-T", "-1"], "--task-T"),
    "taskprior zero epochs": ([*PRIOR, "--epochs", "0"], "--epochs"),
    "taskprior zero T": ([*PRIOR, "--T", "0"], "--T"),
    "taskprior negative T": ([*PRIOR, "--T", "1", "-2"], "--T"),
    "taskprior non-numeric T": ([*PRIOR, "--T", "warm"], "--T"),
    "taskprior zero batch": ([*PRIOR_RUN, "--batch-size", "0"], "--batch-size"),
    "taskprior zero image-size": ([*PRIOR_RUN, "--image-size", "0"], "--image-size"),
    "taskprior missing prior": ([*PRIOR_RUN, "--prior", "{root}/nope.npy"], "nope.npy"),
    "taskprior prior wrong type": ([*PRIOR_RUN, "--prior", "{root}/notes.txt"], "notes.txt"),
    "taskprior prior text npy": ([*PRIOR, "--prior", "{root}/text.npy"], "text.npy"),
    "taskprior unknown kernel": ([*PRIOR, "--kernel", "poly"], "--kernel"),
    "taskprior existing out": ([*PRIOR[:-2], "--out", "{root}/results"], "--overwrite"),
    # grok
    "grok zero seeds": ([*GROK, "--seeds", "0"], "--seeds"),
    "grok negative seeds": ([*GROK, "--seeds", "-1"], "--seeds"),
    "grok non-numeric seeds": ([*GROK, "--seeds", "three"], "--seeds"),
    "grok zero max-steps": ([*GROK, "--max-steps", "0"], "max-steps"),
    "grok negative max-steps": ([*GROK, "--max-steps", "-5"], "max-steps"),
    "grok zero eval-every": ([*GROK, "--eval-every", "0"], "eval-every"),
    "grok negative lam": ([*GROK, "--lam", "-1"], "lam"),
    "grok zero lam": ([*GROK, "--reg", "grokalign", "--lam", "0"], "--lam"),
    "grok negative wd": ([*GROK, "--wd", "-0.1"], "--wd"),
    "grok zero lr": ([*GROK, "--lr", "0"], "--lr"),
    "grok non-numeric lr": ([*GROK, "--lr", "fast"], "--lr"),
    "grok zero threshold": ([*GROK, "--threshold", "0"], "threshold"),
    "grok threshold above one": ([*GROK, "--threshold", "1.5"], "threshold"),
    "grok prime one": ([*GROK, "--prime", "1"], "--prime"),
    "grok negative prime": ([*GROK, "--prime", "-7"], "--prime"),
    "grok zero depth": (["grok", "--setup", "digits", "--max-steps", "2", "--seeds", "1", "--depth", "0", "--out",
                         "{root}/new"], "--depth"),
    "grok unknown reg": ([*GROK, "--reg", "dropout"], "--reg"),
    "grok lam without grokalign": ([*GROK, "--reg", "wd", "--lam", "0.01"], "--lam"),
    "grok existing out": ([*GROK[:-2], "--out", "{root}/results"], "--overwrite"),
    # align
    "align missing model": (["align", "{root}/no-run", "{root}/run", "--data", "digits", "--out", "{root}/new"],
                            "no-run"),
    "align text file as model": (["align", "{root}/notes.txt", "{root}/run", "--data", "digits", "--out",
                                  "{root}/new"], "notes.txt"),
    "align missing data": (["align", "{root}/run", "timm:resnet10t", "--data", "{root}/no-such-folder", "--out",
                            "{root}/new"], "no-such-folder"),
    "align zero k": ([*ALIGN, "--k", "0"], "k must be"),
    "align negative k": ([*ALIGN, "--k", "-4"], "k must be"),
    "align non-numeric k": ([*ALIGN, "--k", "ten"], "--k"),
    "align zero samples": ([*ALIGN, "--samples", "0"], "samples"),
    "align negative samples": ([*ALIGN, "--samples", "-10"], "samples"),
    "align zero batch": ([*ALIGN, "--batch-size", "0"], "--batch-size"),
    "align zero image-size": ([*ALIGN, "--image-size", "0"], "--image-size"),
    "align negative ridge": ([*ALIGN, "--ridge", "-1"], "ridge"),
    "align unknown metric": ([*ALIGN, "--metrics", "cka_linear,bogus"], "bogus"),
    "align unknown split": ([*ALIGN, "--split", "validation"], "validation"),
    "align one model no latents": (["align", "{root}/run", "--data", "digits", "--out", "{root}/new"], "latents"),
    "align existing out": ([*ALIGN[:-2], "--out", "{root}/results"], "--overwrite"),
    # theory
    "theory unknown topic": (["theory", "quadratic"], "quadratic"),
    "theory zero gamma-s": ([*THEORY, "--gamma-s", "0"], "--gamma-s"),
    "theory negative gamma-s": ([*THEORY, "--gamma-s", "-1"], "--gamma-s"),
    "theory non-numeric gamma-s": ([*THEORY, "--gamma-s", "one"], "--gamma-s"),
    "theory negative c-s": ([*THEORY, "--c-s", "-0.1"], "--c-s"),
    "theory grid one": ([*THEORY, "--grid", "1"], "--grid"),
    "theory huge grid": ([*THEORY, "--grid", "100000"], "--grid"),
    "theory zero k": ([*THEORY, "--k", "0"], "--k"),
    "theory zero n-nuisance": ([*THEORY, "--n-nuisance", "0"], "--n-nuisance"),
    "theory too few samples": ([*THEORY, "--samples", "1"], "--samples"),
    "theory zero views": ([*THEORY, "--views", "0"], "--views"),
    "theory zero worked gamma": ([*THEORY, "--worked-gamma-n", "0"], "--worked-gamma-n"),
    "theory reversed range": ([*THEORY, "--gamma-n-range", "2", "1"], "--gamma-n-range"),
    "theory zero c-n range": ([*THEORY, "--c-n-range", "0", "1"], "--c-n-range"),
    "theory existing out": ([*THEORY[:-2], "--out", "{root}/results"], "--overwrite"),
    # flops
    "flops missing recipe": (["flops", "{root}/nope.yaml"], "nope.yaml"),
    "flops binary recipe": (["flops", "{root}/binary.yaml"], "binary.yaml"),
    "flops zero steps": ([*FLOPS, "--steps", "0"], "--steps"),
    "flops negative steps": ([*FLOPS, "--steps", "-3"], "--steps"),
    "flops non-numeric steps": ([*FLOPS, "--steps", "lots"], "--steps"),
    "flops zero in-chans": ([*FLOPS, "--in-chans", "0"], "--in-chans"),
    "flops negative in-chans": ([*FLOPS, "--in-chans", "-1"], "--in-chans"),
    "flops bogus stages": ([*FLOPS, "--stages", "bogus"], "bogus"),
    "flops stages not summing": ([*FLOPS, "--stages", "0.5:16:8"], "sum to 1"),
    "flops unknown key": ([*FLOPS, "optim.base_lrr=0.1"], "optim.base_lrr"),
    "flops json into a folder": ([*FLOPS, "--json", "{root}/results"], "results"),
    "flops existing json": ([*FLOPS, "--json", "{root}/results/report.json"], "--overwrite"),
    # ssti run
    "ssti missing data": (["ssti", "run", "--data", "{root}/nope.csv", "--out", "{root}/new"], "nope.csv"),
    "ssti binary data": (["ssti", "run", "--data", "{root}/binary.csv", "--out", "{root}/new"], "binary.csv"),
    "ssti missing model": ([*SSTI, "--model", "{root}/no-model"], "no-model"),
    "ssti text file as model": ([*SSTI, "--model", "{root}/notes.txt"], "notes.txt"),
    "ssti zero rank": ([*SSTI, "--rank", "0"], "--rank"),
    "ssti non-numeric rank": ([*SSTI, "--rank", "two"], "--rank"),
    "ssti fractional rank": ([*SSTI, "--rank", "1.5"], "--rank"),
    "ssti rho-samp above one": ([*SSTI, "--rho-samp", "0,2"], "--rho-samp"),
    "ssti non-numeric rho-samp": ([*SSTI, "--rho-samp", "half"], "--rho-samp"),
    "ssti negative rho-tok": ([*SSTI, "--rho-tok", "-0.5"], "--rho-tok"),
    "ssti unknown target class": ([*SSTI, "--target-class", "5"], "--target-class"),
    "ssti zero steps": ([*SSTI, "--steps", "0"], "--steps"),
    "ssti zero batch": ([*SSTI, "--batch-size", "0"], "--batch-size"),
    "ssti zero lr": ([*SSTI, "--lr", "0"], "--lr"),
    "ssti zero max-len": ([*SSTI, "--max-len", "0"], "--max-len"),
    "ssti test-fraction zero": ([*SSTI, "--test-fraction", "0"], "--test-fraction"),
    "ssti empty lora targets": ([*SSTI, "--lora-targets", ","], "--lora-targets"),
    "ssti unknown text key": ([*SSTI, "--text-key", "body"], "body"),
    "ssti empty custom token": ([*SSTI, "--source", "custom", "--token", " "], "--token"),
    "ssti existing out": ([*SSTI[:-2], "--out", "{root}/results"], "--overwrite"),
    # ssti check
    "ssti check missing data": (["ssti", "check", "{root}/nope.csv"], "nope.csv"),
    "ssti check binary data": (["ssti", "check", "{root}/binary.csv"], "binary.csv"),
    "ssti check zero min-count": ([*CHECK, "--min-count", "0"], "--min-count"),
    "ssti check negative top": ([*CHECK, "--top", "-1"], "--top"),
    "ssti check negative max-entropy": ([*CHECK, "--max-entropy", "-0.1"], "--max-entropy"),
    "ssti check unknown label key": ([*CHECK, "--label-key", "stars"], "stars"),
    # ntps (default model smollm2: every row must be rejected before it loads)
    "ntps missing data": (["ntps", "--data", "{root}/nope.csv", "--out", "{root}/new"], "nope.csv"),
    "ntps binary data": (["ntps", "--data", "{root}/binary.csv", "--out", "{root}/new"], "binary.csv"),
    "ntps missing model": ([*NTPS, "--model", "{root}/no-model"], "no-model"),
    "ntps text file as model": ([*NTPS, "--model", "{root}/notes.txt"], "notes.txt"),
    "ntps zero k": ([*NTPS, "--k", "0"], "--k"),
    "ntps negative k": ([*NTPS, "--k", "-2"], "--k"),
    "ntps non-numeric k": ([*NTPS, "--k", "some"], "--k"),
    "ntps fractional k above one": ([*NTPS, "--k", "1.5"], "--k"),
    "ntps max-tokens one": ([*NTPS, "--max-tokens", "1"], "--max-tokens"),
    "ntps zero batch": ([*NTPS, "--batch-size", "0"], "--batch-size"),
    "ntps test-fraction zero": ([*NTPS, "--test-fraction", "0"], "--test-fraction"),
    "ntps zero lora-steps": ([*NTPS, "--lora", "--lora-steps", "0"], "--lora-steps"),
    "ntps bogus layers": ([*NTPS, "--layers", "first,last"], "first,last"),
    "ntps layers beyond depth": ([*NTPS_TINY, "--layers", "99"], "99"),
    "ntps one-class data": (["ntps", "--data", "{root}/one-class.csv", "--out", "{root}/new"], "1 class"),
    "ntps existing out": ([*NTPS[:-2], "--out", "{root}/results"], "--overwrite"),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_is_one_sentence_and_changes_nothing(world, capsys, monkeypatch, row):
    import sslkit.llm.models

    def no_model(*args, **kwargs):
        raise AssertionError(f"{row}: a bundled language model was loaded before the bad input was refused")

    monkeypatch.setattr(sslkit.llm.models, "load_smollm2", no_model)
    monkeypatch.setattr(sslkit.llm.models, "load_minilm", no_model)
    argv, needle = ROWS[row]
    argv = [a.replace("{root}", str(world)) for a in argv]
    # ours: "sslkit <verb>: ..."; argparse's own: "sslkit <verb> [<sub-verb>]: error: ..."
    assert_refused_cleanly(world, capsys, row, argv, needle, (f"sslkit {argv[0]}: ", f"sslkit {' '.join(argv[:2])}: "))


def test_overwrite_replaces_an_existing_out_as_a_whole(tmp_path):
    """The other half of the policy: with --overwrite a verb replaces the folder (no stale file survives)."""
    out = tmp_path / "theory"
    out.mkdir()
    (out / "stale.txt").write_text("an earlier result")
    argv = ["theory", "linear", "--grid", "3", "--no-probe", "--out", str(out)]
    assert main(argv) == 2 and (out / "stale.txt").is_file()
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["phase_diagram.json", "phase_diagram.png"]


def test_taskprior_still_adds_to_an_evaluation_report(tmp_path):
    """taskprior's documented use of an existing --out (an `sslkit evaluate` folder) is not an overwrite."""
    from safetensors.torch import save_file

    save_file({"features": torch.randn(40, 6, generator=torch.Generator().manual_seed(1)),
               "labels": torch.arange(40) % 2}, str(tmp_path / "feats.safetensors"))
    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.json").write_text('{"models": [{"name": "feats"}]}')
    assert main(["taskprior", str(tmp_path / "feats.safetensors"), "--tasks", "0", "--out", str(out)]) == 0
    assert (out / "taskprior.json").is_file() and "taskprior" in (out / "report.json").read_text()
